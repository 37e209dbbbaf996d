import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-stop-stdin';
const bed = ingestionTestBed('push-stop-stdin', { apiKey: API_KEY });
const { emulator } = bed;

const lines = (n: number): string =>
  Array.from({ length: n }, (_, i) => `${JSON.stringify({ key: `user-${String(i).padStart(5, '0')}`, split: 'f', treatment: 'on', time: 1700000000000 + i })}\n`).join('');

describe('a stop while stdin waits for more input (a stalled producer)', () => {
  // The stream is flushed so far, its end not written yet (a gzip's last 8 bytes held back). One short record is fewer
  // bytes than a tar header's magic reaches (265): the format check held them back, and a stop lost them.
  for (const [layout, n, bytes] of [
    ['NDJSON', 50, Buffer.from(lines(50))],
    ['gzip', 50, gzipSync(lines(50)).subarray(0, -8)],
    ['NDJSON, one short record', 1, Buffer.from(lines(1))],
    ['gzip, one short record', 1, gzipSync(lines(1)).subarray(0, -8)],
  ] as const) {
    it(`${layout}: ends the read at once and sends what was read`, async () => {
      const stdin = new PassThrough();
      stdin.write(bytes); // and no end: the producer stalls
      const stop = new AbortController();
      const r = startPush(bed, ['-'], { config: pushConfig(API_KEY, bed.url, 20), stdin: () => stdin, signal: stop.signal });
      setTimeout(() => stop.abort('SIGINT received'), 300);
      const started = Date.now();
      await expect(r.done).rejects.toThrow(new RegExp(`^stopped after ${n} impressions \\(${n} delivered\\); running the same command again is safe`));
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(emulator.count).toBe(n);
      expect(r.letters()).toEqual([]);
    });
  }
});
