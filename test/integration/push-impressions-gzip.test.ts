import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-gzip-1';
const bed = ingestionTestBed('push-gzip', { apiKey: API_KEY });
const { emulator } = bed;

const user = (i: number): string => `user-${String(i).padStart(5, '0')}`;

/** `n` impressions, one per user, as NDJSON, gzip'd. */
function gzDump(n: number): Buffer {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ key: user(i), split: 'f', treatment: 'on', time: 1700000000000 + i, label: `rule ${i % 97}` }));
  return gzipSync(`${lines.join('\n')}\n`);
}

describe('a gzip dump that cannot be read to its end', () => {
  it('damaged (its checksum does not match): says the records read may be wrong, and the line from which nothing was read', async () => {
    const gz = gzDump(5000);
    gz[gz.length - 6] = (gz[gz.length - 6] as number) ^ 0xff; // the CRC32 of the trailer
    writeFileSync(join(bed.dir, 'damaged.ndjson.gz'), gz);
    const r = startPush(bed, ['damaged.ndjson.gz'], { config: pushConfig(API_KEY, bed.url, 20) });
    const s = await r.done;
    const letters = r.letters();
    expect(letters.map((l) => l.reason)).toEqual(['invalid_gzip']);
    const line = letters[0]?.source?.['line'] as number;
    expect(letters[0]?.detail).toBe(
      `damaged.ndjson.gz: incorrect data check: the gzip data is damaged, which gzip finds only where it breaks decoding or at the end of the file, so the records read from this file before line ${line} (sent already) may be wrong too; nothing from line ${line} on was read`,
    );
    // What was sent is exactly the lines before that one.
    expect(s.eventsSent).toBe(line - 1);
    expect(emulator.events.map((e) => e.user_id).sort()).toEqual(Array.from({ length: line - 1 }, (_, i) => user(i)));
    expect(r.logger.lines.some((l) => l.level === 'warn' && l.message.includes('may be wrong too'))).toBe(true);
  });

  it('cut short: the records before the cut were read and sent, the cut one is a dead letter', async () => {
    const gz = gzDump(5000);
    writeFileSync(join(bed.dir, 'cut.ndjson.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
    const r = startPush(bed, ['cut.ndjson.gz'], { config: pushConfig(API_KEY, bed.url, 20) });
    const s = await r.done;
    const letters = r.letters();
    expect(letters.map((l) => l.reason)).toEqual(['invalid_gzip', 'invalid_json']);
    const line = letters[0]?.source?.['line'] as number;
    expect(letters[0]?.detail).toBe(`cut.ndjson.gz: unexpected end of file (file truncated); the records before line ${line} were read`);
    expect(letters[1]?.source).toEqual({ file: 'cut.ndjson.gz', line });
    expect(s.eventsSent).toBe(line - 1);
    expect(emulator.count).toBe(line - 1);
  });

  it('cut short after a record or two (under 265 bytes decoded): those records are still read and sent', async () => {
    // Its trailer missing: the two records decode whole, then gzip finds the end early.
    writeFileSync(join(bed.dir, 'short.ndjson.gz'), gzDump(2).subarray(0, -8));
    const r = startPush(bed, ['short.ndjson.gz'], { config: pushConfig(API_KEY, bed.url, 20) });
    const s = await r.done;
    expect(r.letters().map((l) => l.reason)).toEqual(['invalid_gzip']);
    expect(r.letters()[0]?.detail).toBe('short.ndjson.gz: unexpected end of file (file truncated); the records before line 3 were read');
    expect(s.eventsSent).toBe(2);
    expect(emulator.events.map((e) => e.user_id).sort()).toEqual([user(0), user(1)]);
  });
});
