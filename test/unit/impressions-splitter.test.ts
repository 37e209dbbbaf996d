import { describe, expect, it } from 'vitest';
import { RecordSplitter } from '../../src/impressions/splitter.js';
import type { RecordSink } from '../../src/workers/record-batch.js';

interface RawRecord {
  text: string;
  line: number;
  index: number | undefined;
  broken?: string;
}

/** A sink that keeps each record as text. */
function collect(out: RawRecord[]): RecordSink {
  return {
    record(bytes, start, end, line, index, broken) {
      const r: RawRecord = { text: bytes.toString('utf8', start, end), line, index };
      if (broken !== undefined) r.broken = broken;
      out.push(r);
    },
  };
}

/** Splits `text`, feeding it in chunks of `size` bytes (1 = byte by byte, the harshest boundaries). */
function split(text: string | Buffer, size = 1 << 20): RawRecord[] {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const s = new RecordSplitter();
  const out: RawRecord[] = [];
  const sink = collect(out);
  for (let i = 0; i < buf.length; i += size) s.push(buf.subarray(i, i + size), sink);
  s.end(sink);
  return out;
}

const values = (recs: RawRecord[]): unknown[] => recs.map((r) => JSON.parse(r.text) as unknown);

describe('RecordSplitter', () => {
  it('cuts a JSON array into its elements with their index and line', () => {
    const text = '[\n  {"a":1},\n  {"a":2,"s":"x]},{"},\n  {"a":[3,{"b":4}]}\n]\n';
    for (const size of [1, 3, 7, 1 << 20]) {
      const recs = split(text, size);
      expect(values(recs)).toEqual([{ a: 1 }, { a: 2, s: 'x]},{' }, { a: [3, { b: 4 }] }]);
      expect(recs.map((r) => [r.index, r.line])).toEqual([[0, 2], [1, 3], [2, 4]]);
    }
  });

  it('finds where strings end whatever they hold (escaped quotes, backslashes, brackets), at any chunk size', () => {
    const elements = [
      { s: 'plain text, then [brackets] and {braces}' },
      { s: 'quote \\" inside', t: 'ends in a backslash \\\\' },
      { s: '\\\\"', n: [1, { m: 'x}' }] },
      { s: 'ünï ✓ 日本 🎉 "' },
    ];
    const text = `[\n${elements.map((e) => JSON.stringify(e)).join(',\n')}\n]\n`;
    for (const size of [1, 2, 5, 13, 1 << 20]) {
      const recs = split(text, size);
      expect(values(recs)).toEqual(elements);
      expect(recs.map((r) => r.line)).toEqual([2, 3, 4, 5]);
    }
    // NDJSON: a string with a raw newline is still a cut-off line, however long the text before it.
    const cut = split(`{"a":"${'x'.repeat(100)}\n{"a":2}\n`, 7);
    expect(cut.map((r) => r.broken !== undefined)).toEqual([true, false]);
  });

  it('reads NDJSON line by line, skipping blank lines, with 1-based line numbers', () => {
    const recs = split('{"a":1}\n\n{"a":"q\\"uote\\\\"}\r\n{"a":3}');
    expect(values(recs)).toEqual([{ a: 1 }, { a: 'q"uote\\' }, { a: 3 }]);
    expect(recs.map((r) => r.line)).toEqual([1, 3, 4]);
    expect(recs.every((r) => r.index === undefined)).toBe(true);
  });

  it('reads NDJSON whose lines are arrays (one webhook body per line) element by element', () => {
    const recs = split('[{"a":1},{"a":2}]\n[{"a":3}]\n', 5);
    expect(values(recs)).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(recs.map((r) => [r.line, r.index])).toEqual([[1, 0], [1, 1], [2, 0]]);
  });

  it('keeps multi-byte characters intact across chunk boundaries and skips a BOM', () => {
    const text = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"k":"ünïcødé ✓ 日本"}\n{"k":"é"}\n')]);
    expect(values(split(text, 1))).toEqual([{ k: 'ünïcødé ✓ 日本' }, { k: 'é' }]);
  });

  it('reads pretty-printed objects one after another', () => {
    const text = '{\n  "impressions": [\n    {"testName": "f"}\n  ]\n}\n{\n  "x": 1\n}\n';
    expect(values(split(text, 4))).toEqual([{ impressions: [{ testName: 'f' }] }, { x: 1 }]);
  });

  it('a cut-off NDJSON line costs one broken record, not the rest of the file', () => {
    const recs = split('{"a":1}\n{"a":2,"b":\n{"a":3}\n{"a":"open string\n{"a":4}\n', 2);
    expect(recs.map((r) => [r.line, r.broken !== undefined])).toEqual([
      [1, false],
      [2, true],
      [3, false],
      [4, true],
      [5, false],
    ]);
    expect(values(recs.filter((r) => !r.broken))).toEqual([{ a: 1 }, { a: 3 }, { a: 4 }]);
  });

  it('reports a truncated file: an open record, or an array never closed', () => {
    const open = split('{"a":1}\n{"a":2,');
    expect(open[1]?.broken).toMatch(/truncated/);
    const arr = split('[{"a":1},{"a":2}');
    expect(values(arr.slice(0, 2))).toEqual([{ a: 1 }, { a: 2 }]);
    expect(arr[2]?.broken).toMatch(/array is closed/);
  });

  it('passes scalar garbage lines through as records (the parser then rejects them)', () => {
    const recs = split('garbage here\n{"a":1}\n42');
    expect(recs.map((r) => r.text.trim())).toEqual(['garbage here', '{"a":1}', '42']);
  });

  it('refuses to buffer a record larger than its limit', () => {
    const s = new RecordSplitter(1000);
    const sink = collect([]);
    expect(() => {
      for (let i = 0; i < 10; i++) s.push(Buffer.from(`{"a":"${'x'.repeat(300)}`), sink);
    }).toThrow(/larger than/);
  });
});

describe('RecordSplitter on strings full of escapes', () => {
  // Quotes, backslash runs of every parity, escaped newlines and non-ASCII text, at every chunk boundary.
  const tricky = ['plain', 'a"b', 'a\\', 'a\\\\', '\\"', '\\\\"}{][,', 'x\\\\\\"y', 'line\nbreak', 'tab\tend\\', 'é ü 日本 🎉', '{"nested":"json"}', ''];
  // Each also padded past the splitter's short-string loop (32 bytes), so its native search runs too.
  const pad = 'p'.repeat(40);
  const CHUNK_SIZES = [...Array.from({ length: 17 }, (_, i) => i + 1), 41, 64, 97, 256, 1 << 20];
  const objects = tricky.map((s, i) => ({ i, s, t: `${s}${s}`, long: `${pad}${s}${pad}`, n: [s, { s }] }));

  it('finds the same records in a JSON array whatever the chunk size', () => {
    const text = `[\n${objects.map((o) => JSON.stringify(o)).join(',\n')}\n]\n`;
    for (const size of CHUNK_SIZES) {
      const recs = split(text, size);
      expect(values(recs)).toEqual(objects);
      expect(recs.map((r) => r.index)).toEqual(objects.map((_, i) => i));
      expect(recs.map((r) => r.line)).toEqual(objects.map((_, i) => i + 2));
    }
  });

  it('finds the same records in NDJSON and in pretty-printed objects whatever the chunk size', () => {
    const ndjson = objects.map((o) => JSON.stringify(o)).join('\n');
    const pretty = objects.map((o) => JSON.stringify(o, null, 2)).join('\n');
    for (const size of CHUNK_SIZES) {
      expect(values(split(ndjson, size))).toEqual(objects);
      expect(values(split(pretty, size))).toEqual(objects);
    }
  });
});
