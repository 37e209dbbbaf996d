import { AmpFmeError, ConfigError, InterruptedError, LockedError, UsageError } from '../errors.js';
import { redact } from '../http/redact.js';

/** The exit codes, documented in the README and `--help`. */
export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  DEAD_LETTERS: 3,
  LOCKED: 75,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0   done: everything was delivered
  1   the run failed (remote refused, retries exhausted, interrupted, a bug); see the last log line
  2   usage or configuration error
  3   the run finished, but some records are in the dead-letter file (its path is printed)
  75  another run holds the lock for the same state; try again later`;

/** The one place that turns an error into an exit code and a message for the user. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT.USAGE;
  if (err instanceof LockedError) return EXIT.LOCKED;
  return EXIT.FAILED;
}

/**
 * Errors of the machine, not of amp-fme: a full disk, a read-only or forbidden folder, too many open files.
 * They are said plainly, with the file, instead of as a bug with a stack trace.
 */
const SYSTEM_PROBLEMS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is used up',
  EFBIG: 'the file would be larger than this file system or the process file size limit (ulimit -f) allows',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EMFILE: 'too many open files in this process',
  ENFILE: 'too many open files on this machine',
  EIO: 'an input/output error from the disk',
  // A path meant as a folder (state.dir, TMPDIR) that is a file, or goes through one.
  EEXIST: 'a file is there where a folder is needed',
  ENOTDIR: 'part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  ENAMETOOLONG: 'the name is too long for the file system',
  ELOOP: 'the path goes round a loop of symbolic links',
  // A TMPDIR or state.dir that does not exist (files amp-fme reads, such as dumps, are checked with their own message).
  ENOENT: 'no such file or folder',
};

function systemProblem(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const e = err as Error & { code?: unknown; syscall?: unknown; path?: unknown };
  const what = typeof e.code === 'string' ? SYSTEM_PROBLEMS[e.code] : undefined;
  if (what === undefined) return undefined;
  const where = typeof e.path === 'string' ? ` ${e.path}` : '';
  const op = typeof e.syscall === 'string' ? e.syscall : 'use';
  return `could not ${op}${where}: ${what} (${e.code as string}). Fix that and run the command again: what was recorded as delivered stays recorded.`;
}

/** A user-facing message: no stack trace for known errors; unknown errors keep their stack (a bug). */
export function messageFor(err: unknown): string {
  if (err instanceof InterruptedError) return redact(err.message);
  if (err instanceof AmpFmeError) return redact(err.message);
  const system = systemProblem(err);
  if (system !== undefined) return redact(system);
  if (err instanceof Error) return redact(`Unexpected error (a bug in amp-fme; please report it): ${err.stack ?? err.message}`);
  return redact(`Unexpected error: ${String(err)}`);
}
