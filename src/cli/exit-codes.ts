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
  1   the run failed (remote refused, retries exhausted, interrupted); see the last log line
  2   usage or configuration error
  3   the run finished, but some records are in the dead-letter file (its path is printed)
  75  another run holds the lock for the same state; try again later`;

/** The one place that turns an error into an exit code and a message for the user. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT.USAGE;
  if (err instanceof LockedError) return EXIT.LOCKED;
  return EXIT.FAILED;
}

/** A user-facing message: no stack trace for known errors; unknown errors keep their stack (a bug). */
export function messageFor(err: unknown): string {
  if (err instanceof InterruptedError) return redact(err.message);
  if (err instanceof AmpFmeError) return redact(err.message);
  if (err instanceof Error) return redact(`Unexpected error (a bug in amp-fme; please report it): ${err.stack ?? err.message}`);
  return redact(`Unexpected error: ${String(err)}`);
}
