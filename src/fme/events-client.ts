/**
 * Client of FME's events API: `POST {eventsBaseUrl}/events/bulk` with a JSON array of track events
 * (specs/fme.md, "Events API"). Events arrive already serialised (the mapper serialises each one once):
 * export-events hands over bodies its Batcher wrote (`sendBody`); `send` joins a list of events (retry).
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
import { FatalRemoteError } from '../errors.js';
import { joinedBody, JSON_ARRAY } from '../http/body.js';
import { bodySnippet } from '../http/client.js';
import { postWithRetry } from '../http/post.js';
import type { RetryPolicy } from '../http/retry.js';
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

/** `[json,json,...]` as UTF-8, written straight into one Buffer; `bytes`, its size when the caller has counted it. */
export function buildBulkBody(jsons: readonly string[], bytes?: number): Buffer {
  return joinedBody(JSON_ARRAY, jsons, bytes);
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
   * `bytes`, when given, is the body's UTF-8 size (a wrong count only costs a measuring pass).
   */
  send(batch: { jsons: string[]; bytes?: number }): Promise<SendOutcome> {
    return this.sendBody(buildBulkBody(batch.jsons, batch.bytes), batch.jsons.length);
  }

  /** `send` for a body already written (`[e1,e2,...]`, see pipeline/batcher.ts) holding `events` events. */
  async sendBody(body: Buffer, events: number): Promise<SendOutcome> {
    const { http, logger, signal } = this.options;
    const res = await postWithRetry({
      http,
      url: this.url,
      body,
      headers: this.headers,
      what: 'FME events API',
      errorCode: 'FME_HTTP',
      retry: this.options.retry,
      retriable: (status) => status === 408 || status === 429 || status >= 500,
      logger,
      logFields: { events },
      signal,
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
    return { delivered: false, status, body: bodySnippet(res.body) };
  }
}

export function createFmeEventsClient(options: FmeEventsClientOptions): FmeEventsClient {
  return new FmeEventsClient(options);
}
