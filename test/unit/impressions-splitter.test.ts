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
function split(text: string | Buffer, size = 1 << 20, maxRecordBytes?: number): RawRecord[] {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const s = new RecordSplitter(maxRecordBytes);
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

  it('a cut-off NDJSON line that is an array costs one broken record, and every later line is read', () => {
    const body = (a: number): string => JSON.stringify([{ a, s: `${'x'.repeat(40)}` }, { a: a + 0.5, n: [1, { m: 'y' }] }]);
    const lines = [body(1), `[{"a":2,"s":"${'x'.repeat(20)}`, body(3), body(4)];
    for (const size of [1, 2, 3, 7, 64, 1 << 20]) {
      const recs = split(`${lines.join('\n')}\n`, size);
      expect(recs.map((r) => [r.line, r.index, r.broken !== undefined])).toEqual([
        [1, 0, false],
        [1, 1, false],
        [2, 0, true],
        [3, 0, false],
        [3, 1, false],
        [4, 0, false],
        [4, 1, false],
      ]);
      expect(recs[2]?.text.trim()).toBe(`{"a":2,"s":"${'x'.repeat(20)}`);
      expect(values(recs.filter((r) => !r.broken))).toEqual([1, 3, 4].flatMap((a) => JSON.parse(body(a)) as unknown[]));
    }
  });

  it('ends a broken array line wherever it is cut, whether the input began with an object or an array line', () => {
    const cuts = [
      '[{"a":2,"b":', // inside an element, outside a string
      '[{"a":2,"b":[1,', // nested
      '[{"a":2},', // between elements
      '[{"a":2}', // after an element
      '[2,', // scalar elements
    ];
    for (const first of ['{"a":1}', '[{"a":1}]']) {
      for (const cut of cuts) {
        for (const next of ['[{"a":3}]', '{"a":3}']) {
          for (const size of [1, 5, 1 << 20]) {
            const recs = split(`${first}\n${cut}\n${next}\n[{"a":4},{"a":5}]\n`, size);
            const broken = recs.filter((r) => r.broken !== undefined);
            expect(broken.map((r) => r.line), `${cut} then ${next}`).toEqual([2]);
            expect(values(recs.filter((r) => !r.broken && r.line !== 2))).toEqual([{ a: 1 }, { a: 3 }, { a: 4 }, { a: 5 }]);
            expect(recs.filter((r) => r.line === 4).map((r) => r.index)).toEqual([0, 1]);
          }
        }
      }
    }
    // An object line cut before an array line.
    const recs = split('{"a":1}\n{"a":2,"b":\n[{"a":3}]\n', 2);
    expect(recs.map((r) => [r.line, r.index, r.broken !== undefined])).toEqual([
      [1, undefined, false],
      [2, undefined, true],
      [3, 0, false],
    ]);
  });

  it('after a cut-off array line, resumes even when more than a record\'s size limit follows', () => {
    const good = Array.from({ length: 60 }, (_, i) => JSON.stringify([{ a: i, s: 'x'.repeat(30) }]));
    const text = `${good[0]}\n[{"a":"cut here\n${good.slice(1).join('\n')}\n`;
    expect(text.length).toBeGreaterThan(10 * 256);
    for (const size of [7, 100, 1 << 20]) {
      const recs = split(text, size, 256);
      expect(recs.filter((r) => r.broken !== undefined).map((r) => r.line)).toEqual([2]);
      expect(values(recs.filter((r) => !r.broken))).toEqual(good.map((g) => (JSON.parse(g) as unknown[])[0]));
    }
  });

  it('still reads a top-level array file spread over lines as one array, whatever starts its lines', () => {
    const elements = [{ a: 1, n: [{ b: [1, 2] }, [3]] }, [{ c: 2 }], { d: 'x' }];
    const pretty = JSON.stringify(elements, null, 2);
    const perLine = `[\n${elements.map((e) => JSON.stringify(e)).join(',\n')}\n]\n`; // scripts/bench.mjs writes these
    const firstOnOpenLine = `[${elements.map((e) => JSON.stringify(e)).join(',\n')}]`;
    const unindented = '[\n{\n"a": 1,\n"n": [\n{\n"b": [\n1,\n2\n]\n},\n[\n3\n]\n]\n},\n[\n{\n"c": 2\n}\n],\n{\n"d": "x"\n}\n]';
    for (const text of [pretty, perLine, firstOnOpenLine, unindented, `${perLine}${perLine}`, `{"z":0}\n${perLine}`]) {
      for (const size of [1, 3, 1 << 20]) {
        const recs = split(text, size);
        expect(recs.every((r) => r.broken === undefined)).toBe(true);
        expect(values(recs.filter((r) => r.index !== undefined))).toEqual(text === `${perLine}${perLine}` ? [...elements, ...elements] : elements);
      }
    }
    // A raw newline inside a string of the array's element is not a cut line there: the element stays whole.
    const recs = split('[\n{"a":"two\nlines","b":1},\n{"a":2}\n]\n', 3);
    expect(recs.map((r) => [r.text, r.line, r.index])).toEqual([
      ['{"a":"two\nlines","b":1}', 2, 0],
      ['{"a":2}', 4, 1],
    ]);
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
