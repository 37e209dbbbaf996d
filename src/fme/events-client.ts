/**
 * Client of FME's events API: `POST {eventsBaseUrl}/events/bulk` with a JSON array of track events
 * (specs/fme.md, "Events API"). Events arrive already serialised (the mapper serialises each one once);
 * this client only joins them into a body.
 *
 * Outcomes (the error responses are undocumented; this follows specs/fme.md):
 * - any 2xx: delivered (FME answers 202; customers' proxies answer 200);
 * - 401/403: FatalRemoteError at once: the SDK key is wrong or of the wrong kind;
 * - 3xx, 404, 405: FatalRemoteError at once: the base URL is wrong, every batch would fail the same way;
 * - 408/429/5xx, network errors, timeouts: retried with backoff (Retry-After honoured); when the retries
 *   run out, the last RetriableRemoteError is thrown and the caller decides;
 * - other 4xx (400, 413, ...): `{ delivered: false }` with the status and a body snippet, so the caller
 *   dead-letters exactly that batch.
 * FME does not deduplicate: a retry after an ambiguous failure (5xx, timeout after sending) may store a
 * batch twice. That is accepted here; the pipeline makes sure acknowledged batches are never re-sent.
 */
import type { Got } from 'got';
import { FatalRemoteError, RetriableRemoteError } from '../errors.js';
import { asNetworkError, bodySnippet } from '../http/client.js';
import { parseRetryAfter, withRetry, type RetryPolicy } from '../http/retry.js';
import type { Logger } from '../log/logger.js';

export interface FmeEventsClientOptions {
  /** Server-side SDK key of the target environment. Never logged. */
  sdkKey: string;
  /** `https://events.split.io/api` by default (config `fme.eventsBaseUrl`). */
  eventsBaseUrl: string;
  /** The shared got instance from `createHttp`. */
  http: Got;
  retry: RetryPolicy;
  logger: Logger;
  signal?: AbortSignal;
}

export type SendOutcome =
  | { delivered: true; status: number; events: number }
  | { delivered: false; status: number; body: string };

export interface FmeEventsClient {
  /** Sends one batch of pre-serialised events as one request. */
  send(batch: { jsons: string[] }): Promise<SendOutcome>;
}

const AUTH_MESSAGE =
  'FME rejected the SDK key: use a server-side SDK key of the target environment from FME_SDK_KEY or fme.sdkKey ' +
  '(admin API keys do not work for the events API)';

export function buildBulkBody(jsons: string[]): Buffer {
  return Buffer.from(`[${jsons.join(',')}]`, 'utf8');
}

export function createFmeEventsClient(options: FmeEventsClientOptions): FmeEventsClient {
  const url = `${options.eventsBaseUrl.replace(/\/+$/, '')}/events/bulk`;
  const headers = {
    authorization: `Bearer ${options.sdkKey}`,
    'content-type': 'application/json',
  };
  const { logger, http } = options;

  const attempt = async (body: Buffer, events: number): Promise<SendOutcome> => {
    let res;
    try {
      res = await http.post(url, {
        body,
        headers,
        responseType: 'text',
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      const net = asNetworkError(err, 'FME events API');
      if (net) throw net;
      throw err;
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300) return { delivered: true, status, events };
    if (status === 401 || status === 403) {
      throw new FatalRemoteError('FME_AUTH', `${AUTH_MESSAGE} (HTTP ${status})`, status);
    }
    if ((status >= 300 && status < 400) || status === 404 || status === 405) {
      throw new FatalRemoteError(
        'FME_URL',
        `FME events API answered HTTP ${status} at ${url}: check fme.eventsBaseUrl (default https://events.split.io/api)`,
        status,
      );
    }
    if (status === 408 || status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      throw new RetriableRemoteError('FME_HTTP', `FME events API answered HTTP ${status}: ${bodySnippet(res.body, 200)}`, {
        status,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    return { delivered: false, status, body: bodySnippet(res.body) };
  };

  return {
    async send(batch) {
      const body = buildBulkBody(batch.jsons);
      const events = batch.jsons.length;
      return withRetry(() => attempt(body, events), options.retry, {
        onRetry: (err, n, delayMs) =>
          logger.warn('FME events request failed, retrying', {
            status: err.status,
            code: err.code,
            attempt: n,
            delayMs,
            events,
          }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    },
  };
}
