import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';
import { runCli } from '../helpers/world.js';

/**
 * Under cron (stderr not a terminal) every stderr line is one JSON object (README, "Running from cron"), Node's
 * own warnings included: `(node:123) MaxListenersExceededWarning: ...` breaks whatever reads the log as JSON lines.
 */

const EMIT_DEPRECATION = join(__dirname, '../helpers/emit-deprecation.cjs');

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A server on 127.0.0.1 that answers every request 500 after `delayMs` (Amplitude or FME having a bad minute). */
function failingServer(delayMs: number): Promise<string> {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(500).end('upstream unavailable'), delayMs));
  });
  return new Promise((resolve) => server?.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server?.address() as AddressInfo).port}`)));
}

/** Every non-empty stderr line, parsed; a line that is not a JSON log object fails the test with it. */
function expectJsonLines(stderr: string): { level: string; message: string }[] {
  return stderr
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      let o: unknown;
      try {
        o = JSON.parse(l);
      } catch {
        expect.fail(`a stderr line that is not JSON: ${l}`);
      }
      expect(o).toMatchObject({ time: expect.any(String), level: expect.any(String), message: expect.any(String) });
      return o as { level: string; message: string };
    });
}

function writeDump(dir: string, n: number): void {
  const now = Date.now() - 60_000;
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ key: `user-${i}`, split: 'f', treatment: 'on', time: now }));
  writeFileSync(join(dir, 'dump.ndjson'), `${lines.join('\n')}\n`);
}

describe('Node warnings under cron', () => {
  it('push-impressions with a concurrency above 10 waiting to retry: no MaxListenersExceededWarning, every line JSON', async () => {
    const url = await failingServer(50);
    const dir = tempDir('cron-warnings-push');
    writeFileSync(
      join(dir, 'amp-fme.config.json'),
      JSON.stringify({
        amplitude: { ingestionBaseUrl: url },
        // 16 requests in flight at once, each waiting to be tried again at the same time.
        pushImpressions: { concurrency: 16, batchSize: 1, workers: 0 },
        http: { retries: 2, retryBaseDelayMs: 500, retryMaxDelayMs: 1000, timeoutMs: 5000 },
      }),
    );
    writeDump(dir, 40);
    const r = await runCli(['push-impressions', 'dump.ndjson'], dir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).not.toContain('MaxListenersExceededWarning');
    const lines = expectJsonLines(r.stderr);
    expect(lines.filter((l) => l.message.startsWith('retrying Amplitude batch upload')).length).toBeGreaterThan(10);
  });

  it('a deprecation warning Node emits during a run is a JSON log line (warn), not Node\'s text', async () => {
    const dir = tempDir('cron-warnings-deprecation');
    writeFileSync(join(dir, 'amp-fme.config.json'), '{}');
    writeDump(dir, 5);
    const r = await runCli(['push-impressions', 'dump.ndjson', '--dry-run'], dir, { NODE_OPTIONS: `--require ${EMIT_DEPRECATION}` });
    expect(r.code, r.stderr).toBe(0);
    const lines = expectJsonLines(r.stderr);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', message: expect.stringMatching(/^Node\.js DeprecationWarning: Buffer\(\) is deprecated/), warningCode: 'DEP0005' }));
  });
});

describe('export-events with no config file found', () => {
  it('warns, naming the folder and where the state goes, for an explicit range that sends (not only for --since-last-run)', async () => {
    // A subfolder of the config's, say: keys in the environment, no config here, so the defaults (the production
    // hosts) and a state file next to nothing. The range is the current hour, refused as not settled before any
    // request: the warning comes first.
    const dir = tempDir('no-config');
    const hour = new Date().toISOString().slice(0, 13);
    const r = await runCli(['export-events', '--start', hour, '--end', hour, '--log-format', 'json'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('has not settled yet');
    const warning = r.stderr.split('\n').find((l) => l.includes('no config file found'));
    expect(warning, r.stderr).toBeDefined();
    expect(JSON.parse(warning as string).message).toBe(
      `no config file found in ${dir}: running on defaults, with the state in ${join(dir, '.amp-fme')}. From cron, give --config <file> (or cd to its folder).`,
    );
  });
});
