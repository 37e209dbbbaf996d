import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { decodedChunks, resolveInputs } from '../../src/impressions/input.js';
import { tempDir } from '../helpers/temp-dir.js';

async function text(raw: Readable): Promise<{ text: string; rawBytes: number }> {
  let rawBytes = 0;
  const parts: Buffer[] = [];
  for await (const c of decodedChunks(raw, (n) => (rawBytes += n))) parts.push(c);
  return { text: Buffer.concat(parts).toString('utf8'), rawBytes };
}

describe('dump inputs', () => {
  const dir = tempDir('input');
  const body = '{"key":"user-1"}\n{"key":"user-2"}\n';
  // Names lie on purpose: detection is by magic bytes, not by extension.
  writeFileSync(join(dir, 'gzipped.json'), gzipSync(body));
  writeFileSync(join(dir, 'plain.json.gz'), body);
  mkdirSync(join(dir, 'day', 'h01'), { recursive: true });
  writeFileSync(join(dir, 'day', 'h01', 'a.ndjson'), body);
  writeFileSync(join(dir, 'day', 'b.ndjson'), body);
  writeFileSync(join(dir, 'day', 'skip.txt'), body);

  it('gunzips by magic bytes whatever the name, and passes plain text through', async () => {
    const [gz, plain] = await resolveInputs(['gzipped.json', 'plain.json.gz'], dir);
    const a = await text(gz!.open());
    expect(a.text).toBe(body);
    expect(a.rawBytes).toBe(gz!.size);
    expect(a.rawBytes).toBeLessThan(Buffer.byteLength(body) + 30);
    expect((await text(plain!.open())).text).toBe(body);
  });

  it('reads gzip from a stream delivered one byte at a time (stdin), and concatenated gzip members', async () => {
    const gz = Buffer.concat([gzipSync('{"a":1}\n'), gzipSync('{"a":2}\n')]);
    const bytes = [...gz].map((b) => Buffer.from([b]));
    expect((await text(Readable.from(bytes))).text).toBe('{"a":1}\n{"a":2}\n');
    const [stdin] = await resolveInputs(['-'], dir, () => Readable.from([Buffer.from(body)]));
    expect(stdin!.name).toBe('stdin');
    expect((await text(stdin!.open())).text).toBe(body);
  });

  it('empty input yields nothing', async () => {
    expect((await text(Readable.from([]))).text).toBe('');
  });

  it('expands globs recursively, sorted, each file once', async () => {
    const inputs = await resolveInputs(['day/**/*.ndjson', 'day/b.ndjson'], dir);
    expect(inputs.map((i) => i.name)).toEqual([join('day', 'b.ndjson'), join('day', 'h01', 'a.ndjson')]);
  });

  it('fails before reading when a file is missing, a glob matches nothing, or a folder is given', async () => {
    await expect(resolveInputs(['nope.json'], dir)).rejects.toThrow(UsageError);
    await expect(resolveInputs(['day/*.csv'], dir)).rejects.toThrow(/no files match/);
    await expect(resolveInputs(['day'], dir)).rejects.toThrow(/is a directory/);
    await expect(resolveInputs(['-', '-'], dir)).rejects.toThrow(/only once/);
  });

  it('names a glob match that cannot be read, such as a link to a file that is gone', async () => {
    const links = tempDir('links');
    writeFileSync(join(links, 'a.ndjson'), '');
    symlinkSync(join(links, 'gone.ndjson'), join(links, 'b.ndjson'));
    await expect(resolveInputs(['*.ndjson'], links)).rejects.toThrow('b.ndjson (matched by *.ndjson) cannot be read: a symbolic link to a file that is gone? Remove it, or give a narrower glob');
  });
});
