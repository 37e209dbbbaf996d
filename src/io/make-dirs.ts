import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * `mkdirSync(dir, { recursive: true })`, failing with the real reason. Node's recursive mkdir says ENOENT ("no
 * such file or folder") for a folder it cannot make on a read-only file system, where the reason is EROFS: the
 * outermost missing folder is then made on its own, which fails with the reason (EROFS, EACCES, ENOSPC).
 */
export function makeDirs(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    let missing = dir;
    while (dirname(missing) !== missing && !existsSync(dirname(missing))) missing = dirname(missing);
    // Throws the reason; if it works after all (made meanwhile), the whole path is tried once more.
    mkdirSync(missing);
    mkdirSync(dir, { recursive: true });
  }
}
