/**
 * One error hierarchy for the whole tool. Every error carries a stable `code`; the subclass says what the
 * caller should do about it. `src/cli/exit-codes.ts` is the only place that turns these into exit codes.
 * Messages say what failed, why, and what to do. They never carry secrets.
 */
export class AmpFmeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The user asked for something impossible (bad flag, bad date). Exit 2. */
export class UsageError extends AmpFmeError {
  constructor(message: string, code = 'USAGE') {
    super(code, message);
  }
}

/** One problem in the configuration, with its dot path (`fme.sdkKey`, `exportEvents.identities[1].from`). */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** The configuration is invalid; lists every problem at once. Exit 2. */
export class ConfigError extends AmpFmeError {
  readonly problems: ConfigProblem[];
  readonly source: string | undefined;
  constructor(problems: ConfigProblem[], source?: string) {
    const where = source ? ` in ${source}` : '';
    const lines = problems.map((p) => `  - ${p.path}: ${p.message}`);
    super('CONFIG', `Invalid configuration${where} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`);
    this.problems = problems;
    this.source = source;
  }
}

/** A remote service refused in a way that retrying cannot fix (bad credentials, wrong region). Exit 1. */
export class FatalRemoteError extends AmpFmeError {
  readonly status: number | undefined;
  constructor(code: string, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

/** A remote failure that may pass if tried again (429, 5xx, reset, timeout). Retried by `http/retry.ts`. */
export class RetriableRemoteError extends AmpFmeError {
  readonly status: number | undefined;
  /** Delay the server asked for (Retry-After), in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(code: string, message: string, opts: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** Input data the tool cannot use (unreadable file, corrupt archive). Exit 1 unless handled as a dead letter. */
export class BadDataError extends AmpFmeError {
  constructor(message: string, code = 'BAD_DATA', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Another run holds the lock for the same state. Exit 75 (EX_TEMPFAIL). */
export class LockedError extends AmpFmeError {
  constructor(message: string) {
    super('LOCKED', message);
  }
}

/** The run was stopped on purpose (SIGINT/SIGTERM, --max-runtime) at a clean point. Exit 1 (or 130/143). */
export class InterruptedError extends AmpFmeError {
  readonly signal: string | undefined;
  constructor(message: string, signal?: string) {
    super('INTERRUPTED', message);
    this.signal = signal;
  }
}

/**
 * Attaches what a run did so far to the error that ends it, so that the CLI prints the run's summary before
 * the error (cli/context.ts `runCommand`). Returns the error; anything that is not an Error is left alone.
 */
export function withSummary<E>(err: E, summary: object): E {
  if (err instanceof Error) Object.assign(err, { summary });
  return err;
}

/** The summary `withSummary` attached to an error, if any. */
export function summaryOf(err: unknown): Record<string, unknown> | undefined {
  return err instanceof Error ? (err as Error & { summary?: Record<string, unknown> }).summary : undefined;
}
