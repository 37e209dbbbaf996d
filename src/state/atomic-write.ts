import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { withPath } from '../io/file-errors.js';
import { writeAllSync } from '../io/write-all.js';

/**
 * Writes a file so that a crash, `kill -9` or power cut leaves either the old or the new content, never a
 * mix: write a temp file beside it, fsync it, rename it over the target, fsync the folder. When the temp file
 * cannot be written (a full disk) or renamed, it is removed and the error names it; the target keeps its old content.
 */
export function writeFileAtomic(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeAllSync(fd, content);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw withPath(err, tmp);
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    // The target cannot be replaced (a folder of that name, a read-only mount...): no temp file is left beside it.
    rmSync(tmp, { force: true });
    throw err; // Node's message names both paths
  }
  try {
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // Some file systems do not allow fsync on a folder; the rename itself is still atomic.
  }
}

/**
 * Removes the temp files writeFileAtomic left beside `path` in runs killed while writing it (`<name>.<pid>.tmp`; a
 * kill -9 or power cut gives them no chance to go). Only for the holder of the lock that guards `path`: no other
 * process is writing it then, whatever its pid or host. Returns how many were removed; never fails the run.
 */
export function removeStaleTemps(path: string): number {
  const prefix = `${basename(path)}.`;
  const own = `${prefix}${process.pid}.tmp`;
  let removed = 0;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return 0;
  }
  for (const name of names) {
    if (name === own || !name.startsWith(prefix) || !/^\d+\.tmp$/.test(name.slice(prefix.length))) continue;
    try {
      rmSync(join(dirname(path), name), { force: true });
      removed++;
    } catch {
      // Left for the next run: it holds nothing anyone reads.
    }
  }
  return removed;
}
