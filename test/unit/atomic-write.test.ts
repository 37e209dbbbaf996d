import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { messageFor } from '../../src/cli/exit-codes.js';
import { writeFileAtomic } from '../../src/state/atomic-write.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('writeFileAtomic', () => {
  it('replaces the content and leaves no temp file', () => {
    const dir = tempDir('atomic');
    const file = join(dir, 'state.json');
    writeFileSync(file, 'old');
    writeFileAtomic(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it.runIf(existsSync('/dev/full'))('on a full disk keeps the old content, removes its temp file and names it', () => {
    const dir = tempDir('atomic');
    const file = join(dir, 'state.json');
    writeFileSync(file, 'old');
    // The temp file this process will write, pointed at /dev/full: every write to it fails with ENOSPC.
    const tmp = `${file}.${process.pid}.tmp`;
    symlinkSync('/dev/full', tmp);
    let err: unknown;
    try {
      writeFileAtomic(file, 'new');
    } catch (e) {
      err = e;
    }
    expect(messageFor(err)).toBe(`could not write ${tmp}: no space left on the device (ENOSPC). Fix that and run the command again: what was recorded as delivered stays recorded.`);
    expect(readFileSync(file, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });
});
