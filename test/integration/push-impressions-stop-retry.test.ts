import { describe, expect, it } from 'vitest';
import type { PushMode } from '../../src/config/types.js';
import { ingestionTestBed, pushConfig, startPush, stopOnFirstRequest, usersDump } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-stop-retry';
const bed = ingestionTestBed('push-stop-retry', { apiKey: API_KEY });
const { emulator } = bed;

describe('a stop while a request waits to be tried again after a 5xx', () => {
  for (const mode of ['event', 'identify'] as PushMode[]) {
    it(`${mode} mode: ends the wait at once and says the run stopped, not failed`, async () => {
      emulator.faults.push({ status: 503, body: 'Service Unavailable' }, 1000);
      const config = pushConfig(API_KEY, bed.url, 20, (c) => {
        // Waits of seconds between attempts, as in production (1 s doubling up to 60 s).
        c.http.retries = 6;
        c.http.retryBaseDelayMs = 5_000;
        c.http.retryMaxDelayMs = 60_000;
        c.pushImpressions.concurrency = 1;
      });
      const stop = new AbortController();
      const r = startPush(bed, [usersDump(bed, `503-${mode}.ndjson`, 10)], { config, mode, signal: stop.signal });
      const cancelStop = stopOnFirstRequest(emulator, stop);
      const started = Date.now();
      await expect(r.done).rejects.toThrow(/^stopped after (10 impressions \(0 delivered\)|0 of 10 users' identifications were sent); running the same command again is safe/);
      cancelStop();
      expect(Date.now() - started).toBeLessThan(2_000);
      // No attempt after the stop.
      expect(emulator.requests.length).toBe(1);
      expect(r.letters()).toEqual([]);
    });
  }
});
