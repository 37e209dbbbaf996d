import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { tempDir } from '../helpers/temp-dir.js';
import { FAST_HTTP, KEYS, runCli, startWorld, type World } from '../helpers/world.js';

/** Preload that throws an error nothing catches (carrying got-like request options with the credentials) once the run holds its lock. */
const THROW_WHILE_LOCKED = join(__dirname, '../helpers/throw-while-locked.cjs');

/**
 * Secrets never leave the process, even when a server (a proxy, a debugging endpoint) echoes the request back in
 * its error answer, and even when that answer is cut short for a message: a key cut in two must not show its
 * first half either.
 */

const BASIC = Buffer.from(`${KEYS.amplitudeApiKey}:${KEYS.amplitudeSecretKey}`).toString('base64');
/** What must never be seen: each secret, the Export API's Basic credentials, and the first characters of each. */
const FORBIDDEN = [...Object.values(KEYS), BASIC].flatMap((s) => [s, s.slice(0, 10)]);

/** Answers every request with `status` and a JSON body echoing its authorization header and body, padded so that `straddle` crosses character 300 (where messages cut bodies). */
function echoServer(status: number, straddle: string): Promise<{ url: string; close(): Promise<void>; requests: number }> {
  const state = { requests: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.requests++;
      const text = `{"pad":"","authorization":${JSON.stringify(req.headers.authorization ?? '')},"body":${JSON.stringify(Buffer.concat(chunks).toString('utf8'))}}`;
      const at = text.indexOf(straddle);
      const pad = 'x'.repeat(Math.max(0, 288 - at)); // its first 12 characters before the cut
      res.writeHead(status, { 'content-type': 'application/json' }).end(text.replace('"pad":""', `"pad":"${pad}"`));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: `http://127.0.0.1:${port}`,
        get requests() {
          return state.requests;
        },
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

/** Every file under `dir`, as text. */
function filesUnder(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    out += statSync(p).isDirectory() ? filesUnder(p) : `${readFileSync(p, 'utf8')}\n`;
  }
  return out;
}

function expectNoSecret(text: string): void {
  for (const s of FORBIDDEN) expect(text).not.toContain(s);
}

let world: World | undefined;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await world?.close();
  world = undefined;
  for (const c of closers.splice(0)) await c();
});

describe('a server that echoes the request in its error answer', () => {
  it('export-events: the Export API credentials (Basic, both keys in base64) are not shown', async () => {
    const echo = await echoServer(500, BASIC);
    closers.push(echo.close);
    const dir = tempDir('secrets-export');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { exportBaseUrl: echo.url }, fme: { eventsBaseUrl: `${echo.url}/api` }, http: { ...FAST_HTTP, retries: 1 } }));
    const r = await runCli(['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--json', '--log-format', 'json'], dir);
    expect(r.code).toBe(1);
    expect(echo.requests).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/answered 500/); // the answer's text is there, its secrets are not
    expectNoSecret(r.stdout + r.stderr + filesUnder(dir));
  });

  it('export-events: an FME 400 that echoes the SDK key leaves no part of it in the dead letters', async () => {
    const echo = await echoServer(400, KEYS.fmeSdkKey);
    closers.push(echo.close);
    world = await startWorld();
    const hour = parseHourArg('2024-03-01T00', 'start');
    world.store.add([...generateExportRows(hour, 2, { users: 5 })].map((row) => ({ ...row, user_id: 'user-secret-1', event_type: 'Clicked' })));
    world.writeConfig({ fme: { eventsBaseUrl: `${echo.url}/api` } });
    const r = await runCli(['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--json', '--log-format', 'json'], world.dir);
    const letters = filesUnder(join(world.dir, '.amp-fme'));
    expect(letters).toMatch(/FME answered 400/);
    // The run finishes with its two events in the dead-letter file: exit 3, as documented.
    expect(r.code, r.stderr).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ deadLetters: 2, fmeEventsSent: 0 });
    expectNoSecret(r.stdout + r.stderr + letters);
  });

  it('push-impressions: an ingestion 500 that echoes the request body (its api_key) shows no part of the key', async () => {
    const echo = await echoServer(500, KEYS.amplitudeApiKey);
    closers.push(echo.close);
    const dir = tempDir('secrets-push');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { ingestionBaseUrl: echo.url }, http: { ...FAST_HTTP, retries: 1 } }));
    writeFileSync(join(dir, 'dump.ndjson'), `${JSON.stringify({ key: 'user-secret-2', split: 'f', treatment: 'on', time: Date.now() - 60_000 })}\n`);
    const r = await runCli(['push-impressions', 'dump.ndjson', '--json', '--log-format', 'json'], dir);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/HTTP 500/);
    expectNoSecret(r.stdout + r.stderr + filesUnder(dir));
  });
});

describe('an error nothing caught during a run (a bug, or thrown in a library callback)', () => {
  it.each([
    ['an uncaught exception', 'exception', 'uncaughtException'],
    ['an unhandled promise rejection', 'rejection', 'unhandledRejection'],
  ])('%s: one redacted JSON error line, exit 1, the lock released for the next run', async (_title, kind, event) => {
    world = await startWorld();
    const hour = parseHourArg('2024-03-01T00', 'start');
    world.store.add([...generateExportRows(hour, 20, { users: 5 })].map((row, i) => ({ ...row, user_id: `user-${i}` })));
    world.writeConfig();
    const args = ['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--json', '--log-format', 'json'];
    const r = await runCli(args, world.dir, { NODE_OPTIONS: `--require ${THROW_WHILE_LOCKED}`, AMP_FME_TEST_THROW: kind });
    expect(r.code, r.stderr).toBe(1);
    // Node's report (the stack, then util.inspect of the error and its request options) is not there: every line is a log line.
    const lines = r.stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        try {
          return JSON.parse(l) as { level: string; message: string; [k: string]: unknown };
        } catch {
          return expect.fail(`a stderr line that is not JSON: ${l}`);
        }
      });
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ message: expect.stringMatching(/^stopped at once by an error nothing caught .*Unexpected error \(a bug in amp-fme; please report it\): Error: boom/), event, exitCode: 1 });
    expectNoSecret(r.stdout + r.stderr + filesUnder(world.dir));
    expect(r.stdout + r.stderr).not.toMatch(/authorization|api_key/i);
    // The run had taken its lock; it is not left behind for cron's next run to find.
    expect(readdirSync(join(world.dir, '.amp-fme')).filter((f) => f.endsWith('.lock'))).toEqual([]);
    const next = await runCli(args, world.dir);
    expect(next.code, next.stderr).toBe(0);
    expect(world.fme.count).toBe(20);
  });
});
