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
 * - other 4xx (400, 413, ...): `{ delivered: false }` with the status and a body snippet. FME refuses the
 *   whole request for one bad event: `deliverSplitting` halves a refused request down to the events FME
 *   refuses on their own, so the caller dead-letters those and not their batch.
 * FME does not deduplicate: a retry after an ambiguous failure (5xx, timeout after sending) may store a
 * batch twice. That is accepted here; the pipeline makes sure acknowledged batches are never re-sent.
 */
import type { Got } from 'got';
import { FatalRemoteError, InterruptedError } from '../errors.js';
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

export type RefusedOutcome = Extract<SendOutcome, { delivered: false }>;

/** Refusals of a whole request that may come from one of its events (a bad event; a body too large). */
const SPLITTABLE = new Set([400, 413]);
/** Requests one refused batch may take to find its refused events: a few bad events cost ~2 log2(n) each. */
const SPLIT_BUDGET = 64;

const AUTH_MESSAGE =
  'FME rejected the SDK key: use a server-side SDK key of the target environment from FME_SDK_KEY or fme.sdkKey ' +
  '(admin API keys do not work for the events API)';

/** `[json,json,...]` as UTF-8, written straight into one Buffer; `bytes`, its size when the caller has counted it. */
export function buildBulkBody(jsons: readonly string[], bytes?: number): Buffer {
  return joinedBody(JSON_ARRAY, jsons, bytes);
}

/**
 * The dead-letter detail of an event FME refused in a request of `part` events: alone, FME's answer is about it; in a
 * larger part (the split budget spent, or a status that is not split), FME refused the part and this event may be fine.
 */
export function refusalDetail(o: RefusedOutcome, part: number): string {
  if (part === 1) return `FME answered ${o.status}: ${o.body}`;
  const why = SPLITTABLE.has(o.status) ? `the ${SPLIT_BUDGET} requests a refused batch may take were spent` : `HTTP ${o.status} is not split`;
  return `FME answered ${o.status} to a part of ${part} events holding it, not to it alone (${why}): ${o.body}. It may be fine: amp-fme retry re-sends it`;
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

  /**
   * Delivers `jsons`, already refused as one request with `refused`: while FME answers 400 or 413, the
   * request is halved and each half sent, down to single events, so one bad event costs only itself. FME
   * stores nothing of a refused request, so no event is sent twice. At most SPLIT_BUDGET requests in all.
   * - `onRefused` gets each event refused on its own (or in a part refused once the budget is spent, or with
   *   another status), with the size of the request refused (`refusalDetail` words it);
   * - if a request fails for good (retries used up, a fatal answer) or the run is stopped part-way, the events
   *   not sent yet go to `onUnsent` and the error is returned, not thrown: when some halves are in FME already,
   *   the caller records the batch as handled (delivered, refused or unsent) before it stops; when none was
   *   delivered or refused, it may leave the batch for the next run.
   */
  async deliverSplitting(
    jsons: string[],
    refused: RefusedOutcome,
    onRefused: (index: number, outcome: RefusedOutcome, part: number) => void,
    onUnsent: (index: number, error: unknown) => void,
  ): Promise<{ delivered: number; error?: unknown }> {
    const { signal } = this.options;
    let budget = SPLIT_BUDGET - 1; // the refused request was the first
    let delivered = 0;
    let error: unknown;
    const unsent = (lo: number, hi: number): void => {
      for (let i = lo; i < hi; i++) onUnsent(i, error);
    };
    /** Events [lo, hi) of a request of `refusedSize` events FME refused with `refusal`: sent on their own while the budget lasts. */
    const part = async (lo: number, hi: number, refusal: RefusedOutcome, refusedSize: number): Promise<void> => {
      if (error === undefined && signal?.aborted) {
        error = new InterruptedError(`stopped (${String(signal.reason)}) while the parts of a batch FME refused were being sent`);
      }
      if (error !== undefined) return unsent(lo, hi);
      if (budget <= 0) {
        // Not sent on its own: what FME refused is the request it was cut from.
        for (let i = lo; i < hi; i++) onRefused(i, refusal, refusedSize);
        return;
      }
      budget--;
      let outcome: SendOutcome;
      try {
        outcome = await this.send({ jsons: jsons.slice(lo, hi) });
      } catch (err) {
        error = err;
        return unsent(lo, hi);
      }
      if (outcome.delivered) delivered += hi - lo;
      else await settle(lo, hi, outcome);
    };
    /** Events [lo, hi), refused as one request with `outcome`: halved again, or refused with it. */
    const settle = async (lo: number, hi: number, outcome: RefusedOutcome): Promise<void> => {
      if (hi - lo === 1 || !SPLITTABLE.has(outcome.status) || budget < 2) {
        for (let i = lo; i < hi; i++) onRefused(i, outcome, hi - lo);
        return;
      }
      const mid = (lo + hi) >>> 1;
      await part(lo, mid, outcome, hi - lo);
      await part(mid, hi, outcome, hi - lo);
    };
    await settle(0, jsons.length, refused);
    return error === undefined ? { delivered } : { delivered, error };
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
