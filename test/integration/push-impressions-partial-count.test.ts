import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summaryOf } from '../../src/errors.js';
import { silentLogger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runRetry } from '../../src/pipeline/retry.js';
import { ingestionTestBed, pushConfig, startPush, usersDump } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-partial-count';
const bed = ingestionTestBed('push-partial-count', { apiKey: API_KEY });
const { emulator } = bed;

/** Amplitude refuses the first request as too large, takes its first half, then stays unavailable past the retries. */
function tooLargeThenHalfThenDown(): void {
  emulator.faults.push({ status: 413, body: '{"code":413,"error":"Payload too large"}' });
  emulator.faults.push({ status: 200, afterProcessing: true });
  emulator.faults.push({ status: 503, body: 'Service Unavailable' }, 10);
}

const config = () =>
  pushConfig(API_KEY, bed.url, 5, (c) => {
    c.pushImpressions.concurrency = 1;
    c.http.retries = 2;
  });

describe('a request split after a 413 whose second half then fails: the summary counts the half Amplitude stored', () => {
  it.each([
    ['identify', { mode: 'identify', api: 'batch' }],
    ['events over HTTP V2', { mode: 'event', api: 'httpapi' }],
    ['events over Batch', { mode: 'event', api: 'batch' }],
  ] as const)('%s', async (_name, over) => {
    tooLargeThenHalfThenDown();
    const r = startPush(bed, [usersDump(bed, 'ten.ndjson', 10)], { config: config(), ...over });
    const err = await r.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error | undefined)?.message).toMatch(/HTTP 503/);
    const stored = over.mode === 'identify' ? emulator.identifications : emulator.count;
    expect(stored).toBe(5);
    const s = summaryOf(err) as { eventsSent: number; identificationsSent: number };
    expect(over.mode === 'identify' ? s.identificationsSent : s.eventsSent).toBe(stored);
  });

  it('amp-fme retry of identifications counts them too', async () => {
    const file = join(bed.dir, 'identify-dead-letters.ndjson');
    const lines = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify({ command: 'push-impressions', reason: 'amplitude_throttled', retriable: true, payload: { user_id: `user-r${String(i).padStart(4, '0')}`, user_properties: { f: 'on' } } }),
    );
    writeFileSync(file, `${lines.join('\n')}\n`);
    tooLargeThenHalfThenDown();
    const deadLetters = new DeadLetterWriter(join(bed.dir, 'retry-new.ndjson'), 'retry');
    const err = await runRetry({ config: config(), file, logger: silentLogger, deadLetters, force: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await deadLetters.close();
    expect((err as Error | undefined)?.message).toMatch(/HTTP 503/);
    expect(emulator.identifications).toBe(5);
    expect((summaryOf(err) as { resent: { amplitudeIdentifications: number } }).resent.amplitudeIdentifications).toBe(5);
  });
});
