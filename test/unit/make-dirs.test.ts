import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageFor } from '../../src/cli/exit-codes.js';
import { makeDirs } from '../../src/io/make-dirs.js';
import { tempDir } from '../helpers/temp-dir.js';

/** A read-only file system to make folders on: a tmpfs mounted read-only, where this machine allows it (root, Linux). */
let readOnly: string | undefined;
beforeAll(() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return;
  const dir = tempDir('ro-mount');
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', dir]).status === 0) readOnly = dir;
});
afterAll(() => {
  if (readOnly) spawnSync('umount', [readOnly]);
});

describe('makeDirs', () => {
  it('makes every missing folder', () => {
    const dir = join(tempDir('make-dirs'), 'a', 'b', 'c');
    makeDirs(dir);
    expect(existsSync(dir)).toBe(true);
    makeDirs(dir);
  });

  it('says a read-only file system is read-only (Node says ENOENT: no such file or folder)', (ctx) => {
    if (!readOnly) return ctx.skip();
    const dir = join(readOnly, 'state', 'dead-letters');
    expect(() => mkdirSync(dir, { recursive: true })).toThrow(/ENOENT/);
    let err: unknown;
    try {
      makeDirs(dir);
    } catch (e) {
      err = e;
    }
    expect((err as NodeJS.ErrnoException).code).toBe('EROFS');
    expect(messageFor(err)).toContain(join(readOnly, 'state'));
  });
});
