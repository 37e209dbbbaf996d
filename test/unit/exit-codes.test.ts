import { closeSync, existsSync, mkdirSync, openSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitCodeFor, messageFor } from '../../src/cli/exit-codes.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The error Node throws for a write to a full disk: /dev/full answers every write with ENOSPC. */
function fullDiskError(): unknown {
  const fd = openSync('/dev/full', 'w');
  try {
    writeSync(fd, 'dead letter\n');
  } catch (err) {
    return err;
  } finally {
    closeSync(fd);
  }
  throw new Error('/dev/full accepted a write');
}

describe('messageFor and exitCodeFor', () => {
  it.runIf(existsSync('/dev/full'))('say a full disk plainly, as a failed run, without calling it a bug or printing a stack', () => {
    const err = fullDiskError();
    const message = messageFor(err);
    expect(message).toBe('could not write: no space left on the device (ENOSPC). Fix that and run the command again: what was recorded as delivered stays recorded.');
    expect(exitCodeFor(err)).toBe(1);
  });

  it('name the file when the error has one', () => {
    const err = Object.assign(new Error("EROFS: read-only file system, open '/state/dead-letters/x.ndjson'"), { code: 'EROFS', syscall: 'open', path: '/state/dead-letters/x.ndjson' });
    expect(messageFor(err)).toMatch(/^could not open \/state\/dead-letters\/x\.ndjson: the file system is read-only \(EROFS\)/);
  });

  it('say so when a folder such as state.dir is a file, or under one', () => {
    const file = join(tempDir('exit-codes'), 'state');
    writeFileSync(file, '');
    const errorOf = (f: () => unknown): unknown => {
      try {
        f();
      } catch (err) {
        return err;
      }
      throw new Error('no error');
    };
    expect(messageFor(errorOf(() => mkdirSync(file, { recursive: true })))).toMatch(new RegExp(`^could not mkdir ${file}: a file is there where a folder is needed \\(EEXIST\\)`));
    expect(messageFor(errorOf(() => mkdirSync(join(file, 'sub'), { recursive: true })))).toMatch(/: part of the path is a file, not a folder \(ENOTDIR\)/);
    // A mistyped --output, --config or state.dir: a name too long, a loop of symbolic links.
    expect(messageFor(errorOf(() => writeFileSync(join(dirname(file), 'x'.repeat(300)), '')))).toMatch(/: the name is too long for the file system \(ENAMETOOLONG\)/);
    const loop = join(dirname(file), 'loop');
    symlinkSync(loop, loop);
    expect(messageFor(errorOf(() => writeFileSync(join(loop, 'x'), '')))).toMatch(/: the path goes round a loop of symbolic links \(ELOOP\)/);
  });

  it('still report anything else as a bug, with its stack', () => {
    const err = Object.assign(new Error('ERR_SOMETHING: went wrong'), { code: 'ERR_SOMETHING' });
    expect(messageFor(err)).toMatch(/^Unexpected error \(a bug in amp-fme; please report it\): Error: ERR_SOMETHING[\s\S]*\n\s+at /);
  });
});
