import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';

// A file size limit (`ulimit -f`, in KB) makes the kernel write only part of what is asked, then refuse with
// EFBIG: a real short write. The code runs in a child node with that limit, from the compiled dist (`npm test` builds first).
const DIST = new URL('../../dist/', import.meta.url).href;

/** Runs `body` (an ES module's code, with `dist` bound to dist's URL) in a node whose files may grow to `kb` KB; its stdout. */
function underFileSizeLimit(kb: number, body: string): string {
  const script = join(tempDir('short-write'), 'run.mjs');
  writeFileSync(script, `const dist = ${JSON.stringify(DIST)};\n${body}\n`);
  const r = spawnSync('bash', ['-c', `ulimit -f ${kb} && exec "$0" "$1"`, process.execPath, script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.trim();
}

describe.runIf(process.platform === 'linux')('a write cut short by the disk or a size limit', () => {
  it('fails the state write and leaves the state file as it was, with no temp file', () => {
    const dir = tempDir('short-write');
    const file = join(dir, 'state.json');
    writeFileSync(file, 'old');
    const out = underFileSizeLimit(
      4,
      `const { writeFileAtomic } = await import(dist + 'state/atomic-write.js');
       try { writeFileAtomic(${JSON.stringify(file)}, 'x'.repeat(10_000)); console.log('written'); } catch (e) { console.log(e.code, e.path); }`,
    );
    // The error names the temp file (`state.json.<pid>.tmp`), which is gone.
    expect(out.startsWith(`EFBIG ${file}.`) && out.endsWith('.tmp')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('fails the state write when the target cannot be replaced (a folder of that name), with no temp file left', async () => {
    const { writeFileAtomic } = await import('../../src/state/atomic-write.js');
    const dir = tempDir('short-write');
    const target = join(dir, 'state.json');
    mkdirSync(target);
    expect(() => writeFileAtomic(target, '{}')).toThrow(expect.objectContaining({ code: 'EISDIR' }));
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('fails the dead-letter sync, naming the file, instead of counting records the file does not hold', () => {
    const dir = tempDir('short-write');
    const file = join(dir, 'dead.ndjson');
    const out = underFileSizeLimit(
      4,
      `const { DeadLetterWriter } = await import(dist + 'pipeline/dead-letters.js');
       const dl = new DeadLetterWriter(${JSON.stringify(file)}, 'test');
       for (let i = 0; i < 10; i++) dl.write({ reason: 'fme_rejected', retriable: true, payload: { i, pad: 'p'.repeat(100) } });
       dl.sync();
       for (let i = 10; i < 100; i++) dl.write({ reason: 'fme_rejected', retriable: true, payload: { i, pad: 'p'.repeat(100) } });
       try { dl.sync(); console.log('synced', dl.count); } catch (e) { console.log(e.code, e.path, dl.inFile); }`,
    );
    expect(out).toBe(`EFBIG ${file} 10`);
    // The write that failed part-way is cut back: the file holds the 10 records written before, whole, and nothing after.
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((l) => (JSON.parse(l) as { payload: { i: number } }).payload.i)).toEqual([...Array(10).keys()]);
  });
});
