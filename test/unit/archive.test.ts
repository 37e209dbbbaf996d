import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { DamagedEntryError, readArchiveLines, readArchiveRecords, type LineChunk } from '../../src/amplitude/archive.js';
import { BadDataError } from '../../src/errors.js';
import { crc32, zipToBuffer, type ZipWriterOptions } from '../../src/sandbox/zip-writer.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let seq = 0;
beforeAll(() => {
  dir = tempDir('archive-test');
});

async function writeZip(entries: { name: string; data: Buffer }[], options: ZipWriterOptions = {}): Promise<string> {
  const file = path.join(dir, `a${seq++}.zip`);
  await writeFile(file, await zipToBuffer(entries, options));
  return file;
}

async function readAll(file: string, options?: { chunkLines?: number; chunkChars?: number }): Promise<LineChunk[]> {
  const out: LineChunk[] = [];
  for await (const c of readArchiveLines(file, options)) out.push(c);
  return out;
}

/** entry -> its lines, checking that chunk numbering is contiguous. */
function byEntry(chunks: LineChunk[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const c of chunks) {
    const lines = map.get(c.entry) ?? [];
    expect(c.firstLine).toBe(lines.length + 1);
    lines.push(...c.lines);
    map.set(c.entry, lines);
  }
  return map;
}

const gz = (text: string): Buffer => gzipSync(Buffer.from(text, 'utf8'));

describe('crc32', () => {
  it('matches the standard check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });
});

describe('readArchiveLines: zip variants', () => {
  const variants: ZipWriterOptions[] = [];
  for (const method of ['stored', 'deflate'] as const) {
    for (const dataDescriptor of [false, true]) {
      for (const zip64 of [false, true]) variants.push({ method, dataDescriptor, zip64 });
    }
  }

  it.each(variants)('reads %j entries sorted by name, line by line', async (variant) => {
    const file = await writeZip(
      [
        { name: '187520/187520_2021-02-22_3#12.json.gz', data: gz('{"e":3}\n{"e":4}\n') },
        { name: '187520/', data: Buffer.alloc(0) },
        { name: '187520/187520_2021-02-22_21#627.json.gz', data: gz('{"e":1}\n\n{"e":2}') },
        { name: '187520/187520_2021-02-22_21#1000.json.gz', data: gz('{"e":0}\r\n') },
      ],
      variant,
    );
    const chunks = await readAll(file);
    // Code-unit order: "#1000" < "#627" and "_21" < "_3".
    expect([...new Set(chunks.map((c) => c.entry))]).toEqual([
      '187520/187520_2021-02-22_21#1000.json.gz',
      '187520/187520_2021-02-22_21#627.json.gz',
      '187520/187520_2021-02-22_3#12.json.gz',
    ]);
    expect(Object.fromEntries(byEntry(chunks))).toEqual({
      '187520/187520_2021-02-22_21#1000.json.gz': ['{"e":0}'],
      '187520/187520_2021-02-22_21#627.json.gz': ['{"e":1}', '', '{"e":2}'],
      '187520/187520_2021-02-22_3#12.json.gz': ['{"e":3}', '{"e":4}'],
    });
  });
});

describe('readArchiveLines: line splitting', () => {
  it('handles CRLF, blank lines, a missing final newline and a CR split from its LF', async () => {
    const file = await writeZip([{ name: 'a.json.gz', data: gz('one\r\n\r\ntwo\n\nthree\r\nfour') }, { name: 'b.json.gz', data: gz('x\r') }]);
    const map = byEntry(await readAll(file));
    expect(map.get('a.json.gz')).toEqual(['one', '', 'two', '', 'three', 'four']);
    expect(map.get('b.json.gz')).toEqual(['x']);
  });

  it('keeps multi-byte UTF-8 characters that straddle decompressed chunk boundaries', async () => {
    // 'a' + 2-byte chars: every 64 KiB boundary of the gunzip output falls inside a character.
    const two = `a${'é'.repeat(100_000)}`;
    // 4-byte characters, offset so that boundaries land on every position within them.
    const four = ['b', 'bb', 'bbb'].map((p) => `${p}${'😀'.repeat(40_000)}`);
    const text = [two, ...four, '{"event_type":"Kauf – 買い物"}'].join('\n');
    const file = await writeZip([{ name: 'u.json.gz', data: gz(text) }], { method: 'deflate' });
    expect(byEntry(await readAll(file)).get('u.json.gz')).toEqual(text.split('\n'));
  });

  it('numbers lines across chunks and bounds each chunk', async () => {
    const lines = Array.from({ length: 25 }, (_, i) => (i % 7 === 3 ? '' : `{"i":${i}}`));
    const file = await writeZip([{ name: 'n.json.gz', data: gz(`${lines.join('\n')}\n`) }]);
    const chunks = await readAll(file, { chunkLines: 4 });
    expect(chunks.every((c) => c.lines.length <= 4)).toBe(true);
    expect(chunks.map((c) => c.firstLine)).toEqual([1, 5, 9, 13, 17, 21, 25]);
    expect(byEntry(chunks).get('n.json.gz')).toEqual(lines);
  });

  it('closes a chunk once it holds chunkChars characters', async () => {
    const line = 'x'.repeat(1000);
    const file = await writeZip([{ name: 'c.json.gz', data: gz(Array(10).fill(line).join('\n')) }]);
    const chunks = await readAll(file, { chunkLines: 1000, chunkChars: 2500 });
    expect(chunks.map((c) => c.lines.length)).toEqual([3, 3, 3, 1]);
  });

  it('streams a large entry (200k lines) in bounded chunks', async () => {
    const n = 200_000;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(`{"uuid":"u-${i}","event_type":"Purchase","event_properties":{"i":${i}}}`);
    const file = await writeZip([{ name: 'big.json.gz', data: gz(`${parts.join('\n')}\n`) }], { method: 'stored', dataDescriptor: true, zip64: true });
    let count = 0;
    let maxChunk = 0;
    let expectNext = 1;
    for await (const c of readArchiveLines(file)) {
      expect(c.firstLine).toBe(expectNext);
      expectNext += c.lines.length;
      maxChunk = Math.max(maxChunk, c.lines.length);
      if (count === 0) expect(c.lines[0]).toBe(parts[0]);
      count += c.lines.length;
      if (count === n) expect(c.lines.at(-1)).toBe(parts[n - 1]);
    }
    expect(count).toBe(n);
    expect(maxChunk).toBeLessThanOrEqual(2000);
  });

  it('yields nothing for an empty entry or an empty archive', async () => {
    const file = await writeZip([{ name: 'e.json.gz', data: gz('') }]);
    expect(await readAll(file)).toEqual([]);
    const empty = await writeZip([]);
    expect(await readAll(empty)).toEqual([]);
  });
});

describe('readArchiveLines: bad data', () => {
  it('throws BadDataError naming an entry that is not gzip, after the entries before it', async () => {
    const file = await writeZip([
      { name: 'a-good.json.gz', data: gz('{"ok":1}\n') },
      { name: 'b-bad.json.gz', data: Buffer.from('{"not":"gzip"}\n') },
    ]);
    const seen: string[] = [];
    let caught: unknown;
    try {
      for await (const c of readArchiveLines(file)) seen.push(...c.lines);
    } catch (err) {
      caught = err;
    }
    expect(seen).toEqual(['{"ok":1}']);
    expect(caught).toBeInstanceOf(BadDataError);
    expect((caught as Error).message).toContain('b-bad.json.gz');
  });

  it('with a sink that takes damaged entries, reports each (entry, first unread line) and reads on', async () => {
    const file = await writeZip([
      { name: 'a.json.gz', data: gz('{"a":1}\n{"a":2}\n') },
      { name: 'b-bad.json.gz', data: Buffer.from('{"not":"gzip"}\n') },
      { name: 'c.json.gz', data: gz('{"c":1}\n') },
    ]);
    const lines: string[] = [];
    const damaged: DamagedEntryError[] = [];
    let entry = '';
    const sink = {
      entry: (name: string) => (entry = name),
      record: (bytes: Buffer, start: number, end: number, line: number) => lines.push(`${entry}:${line}:${bytes.toString('utf8', start, end)}`),
      damaged: (err: DamagedEntryError) => damaged.push(err),
    };
    for await (const _ of readArchiveRecords(file, sink)) void _;
    expect(lines).toEqual(['a.json.gz:1:{"a":1}', 'a.json.gz:2:{"a":2}', 'c.json.gz:1:{"c":1}']);
    expect(damaged.map((d) => [d.entry, d.line])).toEqual([['b-bad.json.gz', 1]]);
    expect(damaged[0]?.message).toMatch(/b-bad\.json\.gz.*not valid gzip or is damaged \(found at line 1.*may be damaged too/);
  });

  it('an error of the sink itself is not damaged data: it goes up as it is, even with a damaged handler', async () => {
    const file = await writeZip([{ name: 'a.json.gz', data: gz('{"a":1}\n{"a":2}\n') }]);
    const damaged: DamagedEntryError[] = [];
    const sink = {
      entry: () => undefined,
      record: (_b: Buffer, _s: number, _e: number, line: number) => {
        if (line === 2) throw new RangeError('Array buffer allocation failed');
      },
      damaged: (err: DamagedEntryError) => damaged.push(err),
    };
    const read = async (): Promise<void> => {
      for await (const _ of readArchiveRecords(file, sink)) void _;
    };
    await expect(read()).rejects.toThrow(RangeError);
    expect(damaged).toEqual([]);
  });

  it('throws BadDataError for a gzip stream cut short', async () => {
    const full = gz(`${'{"x":1}\n'.repeat(1000)}`);
    const file = await writeZip([{ name: 'cut.json.gz', data: full.subarray(0, full.length - 12) }], { method: 'deflate' });
    await expect(readAll(file)).rejects.toThrow(/cut\.json\.gz/);
  });

  it('throws BadDataError for a file that is not a zip', async () => {
    const file = path.join(dir, 'not-a-zip.zip');
    await writeFile(file, '<html>Bad gateway</html>');
    await expect(readAll(file)).rejects.toBeInstanceOf(BadDataError);
  });
});

describe('readArchiveLines: resources', () => {
  const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

  it('closes the zip when the consumer stops early, and after errors', async () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `{"i":${i}}`).join('\n');
    const file = await writeZip([
      { name: 'a.json.gz', data: gz(lines) },
      { name: 'b.json.gz', data: gz(lines) },
    ]);
    const bad = await writeZip([{ name: 'bad.json.gz', data: Buffer.from('plain text') }]);
    const before = await openFds();
    for (let i = 0; i < 5; i++) {
      for await (const c of readArchiveLines(file, { chunkLines: 100 })) {
        expect(c.lines.length).toBe(100);
        break;
      }
      await expect(readAll(bad)).rejects.toBeInstanceOf(BadDataError);
    }
    // Closing the fd is asynchronous in yauzl: wait for the count to come back down, for at most 5 s.
    const deadline = Date.now() + 5_000;
    while ((await openFds()) > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await openFds()).toBeLessThanOrEqual(before);
  });
});
