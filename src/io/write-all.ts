import { writeSync } from 'node:fs';

/**
 * Writes all of `data` to an open file, however many calls that takes. One `writeSync` may write only part
 * of it (a disk filling up, a file size limit such as `ulimit -f`) and say so only in its return value; the
 * next call then fails with the reason (ENOSPC, EFBIG). A write that was cut short must never pass for a whole one.
 */
export function writeAllSync(fd: number, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let at = 0;
  while (at < bytes.length) {
    const written = writeSync(fd, bytes, at, bytes.length - at);
    if (written <= 0) throw Object.assign(new Error('the file system took none of the bytes written'), { code: 'EIO', syscall: 'write' });
    at += written;
  }
}
