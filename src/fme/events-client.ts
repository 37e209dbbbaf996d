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
  /** Base of the events API (config `fme.eventsBaseUrl`, `https://events.split.io/api` by default). */
  baseUrl: string;
  /** The shared got instance from `createHttp`. */
  http: Got;
  retry: RetryPolicy;
  logger: Logger;
  signal?: AbortSignal;
}

export type SendOutcome =
  | { delivered: true; status: number; events: number }
  | { delivered: false; status: number; body: string };

const AUTH_MESSAGE =
  'FME rejected the SDK key: use a server-side SDK key of the target environment from FME_SDK_KEY or fme.sdkKey ' +
  '(admin API keys do not work for the events API)';

/**
 * `[json,json,...]` as UTF-8. With the body's size known (the Batcher counts it), each event is written
 * straight into one buffer: joining thousands of strings first and encoding the result cost several
 * times more (and twice the memory) in the benchmark's profile.
 */
export function buildBulkBody(jsons: string[], bytes?: number): Buffer {
  if (bytes !== undefined) {
    const body = Buffer.allocUnsafe(bytes);
    let at = 0;
    body[at++] = 0x5b; // [
    for (let i = 0; i < jsons.length; i++) {
      if (i > 0) body[at++] = 0x2c; // ,
      at += body.write(jsons[i] as string, at, 'utf8');
    }
    body[at++] = 0x5d; // ]
    if (at === bytes) return body;
    // A wrong size would cut an event short: never send that, build the body the plain way instead.
  }
  return Buffer.from(`[${jsons.join(',')}]`, 'utf8');
}

export class FmeEventsClient {
  private readonly url: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly options: FmeEventsClientOptions) {
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/events/bulk`;
    this.headers = { authorization: `Bearer ${options.sdkKey}`, 'content-type': 'application/json' };
  }

  /**
   * Sends one batch of pre-serialised events as one request (see the module comment for outcomes).
   * `bytes`, when given, is the body's UTF-8 size (as the Batcher counts it).
   */
  async send(batch: { jsons: string[]; bytes?: number }): Promise<SendOutcome> {
    const body = buildBulkBody(batch.jsons, batch.bytes);
    const events = batch.jsons.length;
    const { logger, signal } = this.options;
    return withRetry(() => this.attempt(body, events), this.options.retry, {
      onRetry: (err, n, delayMs) =>
        logger.warn('FME events request failed, retrying', { status: err.status, code: err.code, attempt: n, delayMs, events }),
      ...(signal ? { signal } : {}),
    });
  }

  private async attempt(body: Buffer, events: number): Promise<SendOutcome> {
    const { http, signal } = this.options;
    const res = await http
      .post(this.url, { body, headers: this.headers, responseType: 'text', ...(signal ? { signal } : {}) })
      .catch((err: unknown) => {
        throw asNetworkError(err, 'FME events API') ?? err;
      });
    const status = res.statusCode;
    if (status >= 200 && status < 300) return { delivered: true, status, events };
    if (status === 401 || status === 403) {
      throw new FatalRemoteError('FME_AUTH', `${AUTH_MESSAGE} (HTTP ${status})`, status);
    }
    if ((status >= 300 && status < 400) || status === 404 || status === 405) {
      throw new FatalRemoteError(
        'FME_URL',
        `FME events API answered HTTP ${status} at ${this.url}: check fme.eventsBaseUrl (default https://events.split.io/api)`,
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
  }
}

export function createFmeEventsClient(options: FmeEventsClientOptions): FmeEventsClient {
  return new FmeEventsClient(options);
}
