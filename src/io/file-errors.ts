/**
 * Gives a file system error the path it concerns when Node left it out: writes and fsyncs on an open file
 * (and a write stream's errors) carry no path, so "could not write: no space left" would not say which file.
 * Errors that already name a path, or are not system errors, are left as they are. Returns the error.
 */
export function withPath<T>(err: T, path: string): T {
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.syscall === 'string' && e.path === undefined) e.path = path;
  }
  return err;
}
