import { setTimeout as sleep } from 'node:timers/promises';
import { InterruptedError, RetriableRemoteError } from '../errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** First backoff delay; doubles each attempt. */
  baseDelayMs: number;
  /** Cap for one delay (also caps Retry-After). */
  maxDelayMs: number;
}

export interface RetryHooks {
  onRetry?: (error: RetriableRemoteError, attempt: number, delayMs: number) => void;
  /** A stop (SIGINT, SIGTERM, --max-runtime) ends a wait between attempts, never an attempt. */
  signal?: AbortSignal;
}

/**
 * Waits `ms` before `what` is tried again. A stop ends the wait at once with an InterruptedError: what was
 * waiting is not delivered, and the caller has not recorded it as delivered.
 */
export async function pause(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  try {
    await sleep(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if (signal?.aborted) throw new InterruptedError(`stopped (${String(signal.reason)}) while waiting to try ${what} again; it was not delivered`);
    throw err;
  }
}

/** Exponential backoff with jitter: base * 2^attempt, scaled by a random factor in [0.5, 1]. */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  const jittered = exp * (0.5 + Math.random() * 0.5);
  const wanted = retryAfterMs !== undefined ? Math.max(retryAfterMs, jittered) : jittered;
  return Math.min(policy.maxDelayMs, Math.round(wanted));
}

/**
 * Runs `fn` until it succeeds, throws something that is not a RetriableRemoteError, or the retries run out
 * (then the last RetriableRemoteError is thrown, its message saying how many attempts were made).
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, policy: RetryPolicy, hooks: RetryHooks = {}): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!(err instanceof RetriableRemoteError)) throw err;
      if (attempt >= policy.retries) {
        throw new RetriableRemoteError(err.code, `${err.message} (gave up after ${attempt + 1} attempts)`, {
          ...(err.status !== undefined ? { status: err.status } : {}),
          cause: err,
        });
      }
      const delay = backoffDelay(policy, attempt, err.retryAfterMs);
      hooks.onRetry?.(err, attempt + 1, delay);
      await pause(delay, hooks.signal, err.message);
    }
  }
}

/** asctime, the one HTTP date form without a zone: `Sun Nov  6 08:49:37 1994` (day of month space-padded). */
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]?\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * An HTTP date (`Date`, `Retry-After`) to epoch ms, or undefined. Every form is GMT (RFC 9110 5.6.7), and recipients
 * must take the obsolete ones too; but the asctime form names no zone, and `Date.parse` reads such text as local time:
 * under TZ=Asia/Kolkata a right clock would look 5.5 hours ahead of the server's.
 */
export function parseHttpDate(value: string | undefined): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  const at = Date.parse(ASCTIME.test(v) ? `${v} GMT` : v);
  return Number.isFinite(at) ? at : undefined;
}

/** Parses a Retry-After header (seconds or an HTTP date) into ms. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = parseHttpDate(v);
  return at === undefined ? undefined : Math.max(0, at - now);
}
