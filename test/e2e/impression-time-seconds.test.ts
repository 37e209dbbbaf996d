import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { FAST_HTTP, KEYS, runCli } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

const emulator = createAmplitudeIngestionEmulator({ apiKey: KEYS.amplitudeApiKey });
let server: RunningServer;
let dir: string;

beforeAll(async () => {
  server = await startServer([emulator.route]);
  dir = tempDir('e2e-time-seconds');
  writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { ingestionBaseUrl: server.url }, http: FAST_HTTP }));
});
afterAll(async () => server.close());

describe('push-impressions with impression times in seconds', () => {
  it('names seconds with a fraction (Python time.time()) as seconds, as whole seconds are, and sends the good record', async () => {
    const rec = (key: string, time: number): string => JSON.stringify({ key, split: 'f1', environmentName: 'prod', treatment: 'on', time });
    // A JSON number with a fraction is written as such: 1709251199.523 stays a fraction after JSON.parse.
    writeFileSync(join(dir, 'dump.ndjson'), `${rec('user-0001', 1709251199999)}\n${rec('user-0002', 1709251199)}\n${rec('user-0003', 1709251199.523)}\n`);
    const r = await runCli(['push-impressions', 'dump.ndjson', '--json'], dir, { TZ: 'Pacific/Kiritimati' });
    expect(r.code, r.stderr).toBe(3);
    const s = JSON.parse(r.stdout) as { eventsSent: number; deadLetterFile: string; oldestImpression: string };
    expect(s.eventsSent).toBe(1);
    expect(emulator.events.map((e) => e.time)).toEqual([1709251199999]);
    expect(s.oldestImpression).toBe('2024-02-29T23:59:59.999Z');
    const letters = readFileSync(s.deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; detail: string });
    expect(letters.map((l) => [l.reason, l.detail])).toEqual([
      ['invalid_field', 'webhook impression: time looks like epoch seconds: FME impression times are milliseconds (1709251199)'],
      ['invalid_field', 'webhook impression: time looks like epoch seconds: FME impression times are milliseconds (1709251199.523)'],
    ]);
  });
});
