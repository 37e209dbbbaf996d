import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { FAST_HTTP, KEYS, logLines, runCli } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

// Spawns the built CLI (`npm test` builds dist/ first).
const FIXTURES = new URL('../fixtures/impressions/', import.meta.url).pathname;
const emulator = createAmplitudeIngestionEmulator({ apiKey: KEYS.amplitudeApiKey });
let server: RunningServer;
let dir: string;

beforeAll(async () => {
  server = await startServer([emulator.route]);
  dir = tempDir('e2e-push');
  for (const f of ['webhook.json', 'bulk.json', 'grouped.ndjson', 'mixed-bad.ndjson']) copyFileSync(join(FIXTURES, f), join(dir, f));
  writeFileSync(join(dir, 'bulk.json.gz'), gzipSync(readFileSync(join(dir, 'bulk.json'))));
  writeFileSync(
    join(dir, 'amp-fme.config.json'),
    JSON.stringify({ amplitude: { ingestionBaseUrl: server.url }, http: FAST_HTTP, pushImpressions: { throttleDelayMs: { httpapi: 10, batch: 10, identify: 10 } } }),
  );
});
afterAll(async () => server.close());
afterEach(() => emulator.reset());

interface Summary {
  command: string;
  impressionsRead: number;
  byShape: Record<string, number>;
  eventsSent: number;
  identificationsSent: number;
  deadLetters: number;
  deadLettersByReason: Record<string, number>;
  deadLetterFile?: string;
}

describe('amp-fme push-impressions (spawned)', () => {
  it('exit 0: every impression delivered once, JSON summary on stdout, no secrets anywhere', async () => {
    const r = await runCli(['push-impressions', 'webhook.json', 'bulk.json.gz', 'grouped.ndjson', '--json', '--log-format', 'json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s).toMatchObject({ command: 'push-impressions', impressionsRead: 9, eventsSent: 9, deadLetters: 0, byShape: { webhook: 3, bulk: 3, grouped: 3, listener: 0 } });
    expect(emulator.count).toBe(9);
    expect(r.stdout + r.stderr).not.toContain(KEYS.amplitudeApiKey);
    // The fixtures are from 2023: their age says nothing of Amplitude's dedupe, which runs from when it received them.
    expect(logLines(r.stderr).filter((l) => l.level === 'warn')).toEqual([]);
    // A replay is harmless: Amplitude keeps one copy of each.
    const again = await runCli(['push-impressions', 'webhook.json', '--json'], dir);
    expect(again.code).toBe(0);
    expect(emulator.count).toBe(9);
  });

  it('exit 3 with dead letters for bad records; the rest is sent', async () => {
    const r = await runCli(['push-impressions', 'mixed-bad.ndjson', '--json', '--log-format', 'json'], dir);
    expect(r.code, r.stderr).toBe(3);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s.eventsSent).toBe(2);
    expect(s.deadLetters).toBe(7);
    expect(s.deadLettersByReason).toMatchObject({ invalid_json: 1, missing_field: 2, placeholder_id: 1, id_too_short: 1 });
    expect(s.deadLetterFile && existsSync(s.deadLetterFile)).toBe(true);
    expect(readFileSync(s.deadLetterFile as string, 'utf8')).not.toContain(KEYS.amplitudeApiKey);
  });

  it('identify mode: one user property per flag', async () => {
    const r = await runCli(['push-impressions', 'bulk.json', '--mode', 'identify', '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as Summary).identificationsSent).toBe(2);
    expect(emulator.userProperties.get('user-00030')).toEqual({ new_checkout: 'on', search_v2: 'v2' });
    // Coalescing would keep an older treatment than the latest: refused as a flag.
    const coalesce = await runCli(['push-impressions', 'bulk.json', '--mode', 'identify', '--coalesce', 'first', '--log-format', 'text'], dir);
    expect(coalesce.code).toBe(2);
    expect(coalesce.stderr).toContain('--coalesce applies to event mode');
  });

  it('identify mode: a userPropertyPrefix starting with "$" is refused (exit 2, nothing sent), as Amplitude would read every property as an operation', async () => {
    const config = join(dir, 'dollar-prefix.config.json');
    writeFileSync(config, JSON.stringify({ amplitude: { ingestionBaseUrl: server.url }, http: FAST_HTTP, pushImpressions: { userPropertyPrefix: '$fme.' } }));
    const r = await runCli(['push-impressions', 'bulk.json', '--mode', 'identify', '--config', config, '--log-format', 'text'], dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('pushImpressions.userPropertyPrefix: must not start with "$"');
    expect(emulator.requests).toHaveLength(0);
  });

  it('exit 1 on an invalid API key, exit 2 on a missing file or a missing key', async () => {
    const bad = await runCli(['push-impressions', 'webhook.json'], dir, { AMPLITUDE_API_KEY: 'not-the-right-key-42' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Invalid API key/);
    expect(bad.stderr).not.toContain('not-the-right-key-42');
    const missing = await runCli(['push-impressions', 'nope.json'], dir);
    expect(missing.code).toBe(2);
    const noKey = await runCli(['push-impressions', 'webhook.json'], dir, { AMPLITUDE_API_KEY: undefined });
    expect(noKey.code).toBe(2);
    const noDir = await runCli(['push-impressions', 'webhook.json', '--output', join(dir, 'missing', 'out.ndjson'), '--log-format', 'text'], dir);
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toContain('cannot write the --output file');
    const dash = await runCli(['push-impressions', 'webhook.json', '--output', '-', '--log-format', 'text'], dir);
    expect(dash.code).toBe(2);
    expect(dash.stderr).toContain('--output needs a file path');
    expect(existsSync(join(dir, '-'))).toBe(false);
    expect(noDir.stderr).not.toContain('Unexpected error');
    // --dry-run needs no key and sends nothing.
    emulator.reset();
    const dry = await runCli(['push-impressions', 'webhook.json', '--dry-run', '--json'], dir, { AMPLITUDE_API_KEY: undefined });
    expect(dry.code, dry.stderr).toBe(0);
    expect(emulator.requests).toHaveLength(0);
  });
});
