import type { Got } from 'got';
import type { IngestionApi } from '../config/types.js';
import { FatalRemoteError } from '../errors.js';
import { BodyBuilder, joinedBody, type BodyFrame } from '../http/body.js';
import { bodySnippet } from '../http/client.js';
import { postWithRetry } from '../http/post.js';
import type { RetryPolicy } from '../http/retry.js';
import type { Logger } from '../log/logger.js';
import { deliverItems, overPerIdCap, type DeliveryExtras, type DeliveryOptions, type Rejection, type Verdict, type WireItem } from './ingestion-delivery.js';

/**
 * Per-request limits of the ingestion APIs (specs/amplitude.md): HTTP V2 < 1 MB and < 2000 events; Batch <= 20 MB
 * and <= 2000 events. `perId`: HTTP V2 takes 30 events/s per user or device (more is a 429 for that id), so a
 * request carries at most `maxEvents` of one id, and the rest follow `windowMs` later. Batch takes 1000/s per id
 * over 30 s, more than a request holds: no cap.
 */
export const INGESTION_LIMITS: Record<IngestionApi, { maxEvents: number; maxBytes: number; path: string; perId?: { maxEvents: number; windowMs: number } }> = {
  // Kept a little under the hard limits: the envelope and any proxy headroom.
  httpapi: { maxEvents: 1999, maxBytes: 950_000, path: '/2/httpapi', perId: { maxEvents: 30, windowMs: 1000 } },
  batch: { maxEvents: 2000, maxBytes: 19_000_000, path: '/batch' },
};

export interface IngestionClientOptions {
  http: Got;
  /** Scheme and host, no trailing slash (`ingestionBaseUrl(config.amplitude)`). */
  baseUrl: string;
  api: IngestionApi;
  apiKey: string;
  /** Sent as `options.min_id_length` (specs/amplitude.md). */
  minIdLength?: number | undefined;
  retry: RetryPolicy;
  throttleDelayMs: number;
  maxThrottleRounds?: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

interface IngestionBody {
  code?: unknown;
  error?: unknown;
  missing_field?: unknown;
  events_with_invalid_fields?: unknown;
  events_with_missing_fields?: unknown;
  events_with_invalid_id_lengths?: unknown;
  silenced_events?: unknown;
  throttled_events?: unknown;
  exceeded_daily_quota_users?: unknown;
  exceeded_daily_quota_devices?: unknown;
}

function parseBody(text: string): IngestionBody | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as IngestionBody) : undefined;
  } catch {
    return undefined;
  }
}

function indexList(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((n): n is number => Number.isInteger(n)) : [];
}

function idSet(v: unknown): Set<string> {
  return new Set(typeof v === 'object' && v !== null ? Object.keys(v) : []);
}

/** The message for an `Invalid API key` answer: fatal, never retried, never quotes the key. */
export function invalidApiKeyError(status: number, api: string): FatalRemoteError {
  return new FatalRemoteError(
    'AMPLITUDE_INVALID_API_KEY',
    `Amplitude ${api} refused the API key (Invalid API key): check amplitude.apiKey (or AMPLITUDE_API_KEY) and that amplitude.region matches the project (us/eu)`,
    status,
  );
}

/**
 * Reads a 400/429 body into per-event verdicts (specs/amplitude.md): listed invalid, missing-field,
 * bad-id-length and silenced events are set aside with their reason; throttled events are held back;
 * events of ids over the daily quota are set aside (retriable another day).
 */
export function sortResponse(status: number, body: IngestionBody, items: readonly WireItem[]): Verdict {
  const reject = new Map<number, Rejection>();
  const add = (i: number, reason: string, detail: string, retriable: boolean): void => {
    if (i >= 0 && i < items.length && !reject.has(i)) reject.set(i, { reason, detail, status, retriable });
  };
  const byField = (v: unknown, reason: string, what: string): void => {
    if (typeof v !== 'object' || v === null) return;
    for (const [field, idx] of Object.entries(v)) for (const i of indexList(idx)) add(i, reason, `${what}: ${field}`, false);
  };
  byField(body.events_with_invalid_fields, 'amplitude_invalid_field', 'Amplitude rejected the value of field');
  byField(body.events_with_missing_fields, 'amplitude_missing_field', 'Amplitude says this field is missing');
  byField(body.events_with_invalid_id_lengths, 'amplitude_invalid_id_length', 'id length refused (see amplitude.minIdLength) for');
  for (const i of indexList(body.silenced_events)) add(i, 'amplitude_silenced', 'the device or user is silenced in Amplitude', false);
  const quota = new Set([...idSet(body.exceeded_daily_quota_users), ...idSet(body.exceeded_daily_quota_devices)]);
  if (quota.size > 0) {
    items.forEach((it, i) => {
      if (quota.has(it.id)) add(i, 'amplitude_daily_quota', 'the id exceeded its daily event quota; re-send tomorrow', true);
    });
  }
  const hold = new Set(indexList(body.throttled_events).filter((i) => !reject.has(i)));
  return { kind: 'sorted', status, reject, hold };
}

/**
 * Client of Amplitude's Batch (`/batch`) and HTTP V2 (`/2/httpapi`) APIs. Items are pre-serialised events;
 * the body is assembled from their JSON text. 5xx and network errors are retried with backoff (safe:
 * every event carries an `insert_id`); 400, 413 and 429 are sorted per event by `deliver`.
 */
export class IngestionClient {
  readonly limits: { maxEvents: number; maxBytes: number };
  private readonly url: string;
  private readonly frame: BodyFrame;
  private readonly envelope: number;
  /**
   * HTTP V2: at most `maxPerId` events of one id per request, the rest a rate window later (or after the throttle
   * delay, when that is shorter: tests, or a user's choice).
   */
  private readonly pace: DeliveryOptions<WireItem>['pace'];
  /** The advice about HTTP V2's per-id rate has been logged (once per client, i.e. per run). */
  private advised = false;

  constructor(private readonly o: IngestionClientOptions) {
    const l = INGESTION_LIMITS[o.api];
    this.limits = { maxEvents: l.maxEvents, maxBytes: l.maxBytes };
    this.pace = l.perId ? { maxPerId: l.perId.maxEvents, delayMs: Math.min(l.perId.windowMs, o.throttleDelayMs) } : undefined;
    this.url = `${o.baseUrl}${l.path}`;
    this.frame = {
      prefix: `{"api_key":${JSON.stringify(o.apiKey)},"events":[`,
      separator: ',',
      suffix: o.minIdLength !== undefined ? `],"options":${JSON.stringify({ min_id_length: o.minIdLength })}}` : ']}',
    };
    this.envelope = Buffer.byteLength(this.frame.prefix) + Buffer.byteLength(this.frame.suffix);
  }

  /** Bytes of the request envelope around the events (add one byte per event after the first for commas). */
  get envelopeBytes(): number {
    return this.envelope;
  }

  /** A builder of request bodies with this client's envelope, for callers that encode events as they batch them. */
  newBody(reuse?: ArrayBuffer): BodyBuilder {
    return new BodyBuilder(this.frame, reuse);
  }

  /**
   * Sends `items` until each is acknowledged, rejected or (with `extras.hold`) handed back to send later;
   * returns the number acknowledged. `extras.firstVerdict`: Amplitude's answer to all of `items`, already
   * sent by the caller (`deliverEncoded`); the loop goes on from it.
   */
  deliver<T extends WireItem>(items: T[], onReject: (item: T, r: Rejection) => void, extras: DeliveryExtras<T> = {}): Promise<number> {
    return deliverItems(items, {
      post: (batch) => this.post(batch),
      throttleDelayMs: this.o.throttleDelayMs,
      maxThrottleRounds: this.o.maxThrottleRounds ?? 8,
      onReject,
      onThrottle: (count, delayMs) => {
        this.o.logger.warn('Amplitude throttled some ids: holding their events back', { api: this.o.api, events: count, delayMs });
        this.advise();
      },
      ...(this.pace ? { pace: this.pace, onPace: (count: number, delayMs: number) => this.paced(count, delayMs) } : {}),
      ...(this.o.signal ? { signal: this.o.signal } : {}),
      ...extras,
    });
  }

  /** Whether this API caps events per id and per request (HTTP V2), so held events of an id must be paced together. */
  get pacesPerId(): boolean {
    return this.pace !== undefined;
  }

  /** How many events of one id a request carries at most (HTTP V2), or undefined. */
  get maxPerId(): number | undefined {
    return this.pace?.maxPerId;
  }

  /** How long an id's next events wait after a request of it (HTTP V2), or undefined. */
  get paceMs(): number | undefined {
    return this.pace?.delayMs;
  }

  private paced(count: number, delayMs: number): void {
    this.o.logger.debug(`Amplitude ${this.o.api}: at most ${this.pace?.maxPerId ?? 0} events of one id per request, pacing the rest`, { events: count, delayMs });
    this.advise();
  }

  /** Once per run, the first time HTTP V2 throttles or paces an id: why it is slow, and what suits a replay. */
  private advise(): void {
    if (this.o.api !== 'httpapi' || this.advised) return;
    this.advised = true;
    this.o.logger.warn(
      'Amplitude HTTP V2 takes about 30 events/s per user or device: an id with more events is sent 30 at a time, ' +
        'and held back for the throttle delay after a 429, so it goes slowly. For replays and backfills use --api batch (1000 events/s per id).',
    );
  }

  /**
   * `deliver` for a body already encoded (`newBody`) that holds `count` events, without the events as items:
   * `items` builds them only when Amplitude's answer needs them one by one, which a clean Batch run never does
   * (HTTP V2 needs their ids first, for its cap per id).
   */
  async deliverEncoded<T extends WireItem>(
    body: Buffer,
    count: number,
    items: () => T[],
    onReject: (item: T, r: Rejection) => void,
    extras: Pick<DeliveryExtras<T>, 'hold' | 'deferId' | 'onAcknowledged'> = {},
  ): Promise<number> {
    let list: T[] | undefined;
    const listed = (): T[] => (list ??= items());
    // HTTP V2 refuses a request with more than ~30 events of one id for that id, again and again: such a body is
    // sent capped per id by `deliver`. (Batch has no cap: its bodies go as they are, their events never listed.)
    if (this.pace && (overPerIdCap(listed(), this.pace.maxPerId) || (extras.deferId !== undefined && listed().some((it) => extras.deferId?.(it.id) === true)))) {
      return this.deliver(listed(), onReject, extras);
    }
    const v = this.answer(await this.send(count, body), listed);
    if (v.kind === 'ok') {
      extras.onAcknowledged?.(count);
      return count;
    }
    return this.deliver(listed(), onReject, { ...extras, firstVerdict: v });
  }

  /** One request (retried on 5xx/network), answered as a verdict. */
  async post(items: readonly WireItem[]): Promise<Verdict> {
    return this.answer(await this.send(items.length, this.assemble(items)), () => items);
  }

  private send(count: number, body: Buffer): Promise<{ statusCode: number; body: string }> {
    return postWithRetry({
      http: this.o.http,
      url: this.url,
      body,
      headers: { 'content-type': 'application/json' },
      what: `Amplitude ${this.o.api} upload of ${count} events`,
      errorCode: 'AMPLITUDE_UNAVAILABLE',
      retry: this.o.retry,
      // 500/502/504 may or may not have stored the events, 503 did not: retrying is safe either way thanks
      // to insert_id. 429 is not retried here: `deliver` sorts it per event.
      retriable: (status) => status >= 500 || status === 408,
      logger: this.o.logger,
      logFields: { api: this.o.api },
      signal: this.o.signal,
    });
  }

  /** Amplitude's answer to one request as a verdict; `items` (the request's events) is asked for only when the answer names events. */
  private answer(res: { statusCode: number; body: string }, items: () => readonly WireItem[]): Verdict {
    const status = res.statusCode;
    if (status >= 200 && status < 300) return { kind: 'ok' };
    const parsed = parseBody(res.body);
    const error = typeof parsed?.error === 'string' ? parsed.error : res.body;
    if (/^invalid api key/i.test(error.trim()) || status === 401 || status === 403) throw invalidApiKeyError(status, this.o.api);
    if (status === 413) {
      return { kind: 'bisect', rejection: { reason: 'amplitude_payload_too_large', detail: 'a single event is larger than the request limit', status, retriable: false } };
    }
    if (status === 400 || status === 429) {
      if (!parsed) {
        if (status === 429) return { kind: 'sorted', status, reject: new Map(), hold: new Set() };
        return { kind: 'reject_all', rejection: { reason: 'amplitude_bad_request', detail: `HTTP 400 ${bodySnippet(res.body)}`, status, retriable: false } };
      }
      const v = sortResponse(status, parsed, items());
      if (status === 400 && v.kind === 'sorted' && v.reject.size === 0 && v.hold.size === 0) {
        const field = typeof parsed.missing_field === 'string' ? ` (missing_field: ${parsed.missing_field})` : '';
        return { kind: 'reject_all', rejection: { reason: 'amplitude_bad_request', detail: `HTTP 400 ${error}${field}`, status, retriable: false } };
      }
      return v;
    }
    throw new FatalRemoteError('AMPLITUDE_UNEXPECTED', `Amplitude ${this.o.api} upload: unexpected HTTP ${status} ${bodySnippet(res.body)}: check amplitude.ingestionBaseUrl / region`, status);
  }

  /** The body for `items`, written straight into one Buffer (`size` is each event's UTF-8 length, see WireItem). */
  private assemble(items: readonly WireItem[]): Buffer {
    let bytes = this.envelopeBytes + Math.max(0, items.length - 1);
    for (const it of items) bytes += it.size;
    return joinedBody(this.frame, items.map((i) => i.json), bytes);
  }
}
