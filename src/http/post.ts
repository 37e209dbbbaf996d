import type { Got, Response } from 'got';
import { RetriableRemoteError } from '../errors.js';
import type { LogFields, Logger } from '../log/logger.js';
import { asTransportError, bodySnippet } from './client.js';
import { parseRetryAfter, withRetry, type RetryPolicy } from './retry.js';

export interface PostWithRetryOptions {
  /** The shared got instance from `createHttp` (HTTP errors do not throw). */
  http: Got;
  url: string;
  body: Buffer;
  /** Content type and any other request headers (credentials included: they are never logged here). */
  headers: Record<string, string>;
  /** Names the request in error messages and log lines, e.g. `Amplitude batch upload of 1000 events`. */
  what: string;
  /** `code` of the RetriableRemoteError thrown for a retriable status. */
  errorCode: string;
  retry: RetryPolicy;
  /** Statuses worth another attempt; network errors and timeouts always are. */
  retriable(status: number): boolean;
  logger: Logger;
  /** Extra fields of the warn line logged before each retry. */
  logFields?: LogFields;
  /** Ends a wait between attempts (see withRetry); a request already sent is let finish. */
  signal?: AbortSignal | undefined;
}

/**
 * One POST, retried with backoff (Retry-After honoured) on network errors, timeouts and the statuses the
 * caller calls retriable; when the retries run out, the last RetriableRemoteError is thrown. Any other
 * answer is returned as it is, for the caller to read (its body as text).
 */
export function postWithRetry(o: PostWithRetryOptions): Promise<Response<string>> {
  const attempt = async (): Promise<Response<string>> => {
    let res: Response<string>;
    try {
      // Not cancelled on a stop: whether it was stored would be unknown, and FME does not deduplicate.
      res = await o.http.post(o.url, { body: o.body, headers: o.headers, responseType: 'text' });
    } catch (err) {
      throw asTransportError(err, o.what, o.url);
    }
    if (o.retriable(res.statusCode)) {
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      throw new RetriableRemoteError(o.errorCode, `${o.what}: HTTP ${res.statusCode} ${bodySnippet(res.body)}`, {
        status: res.statusCode,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    return res;
  };
  return withRetry(attempt, o.retry, {
    onRetry: (err, n, delayMs) =>
      o.logger.warn(`retrying ${o.what}`, { ...o.logFields, status: err.status, code: err.code, error: err.message, attempt: n, delayMs }),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}
