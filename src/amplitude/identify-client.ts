import type { Got } from 'got';
import { FatalRemoteError } from '../errors.js';
import { joinedBody, type BodyFrame } from '../http/body.js';
import { bodySnippet } from '../http/client.js';
import { postWithRetry } from '../http/post.js';
import type { RetryPolicy } from '../http/retry.js';
import type { Logger } from '../log/logger.js';
import { invalidApiKeyError } from './ingestion-client.js';
import { deliverItems, type DeliveryExtras, type Rejection, type Verdict, type WireItem } from './ingestion-delivery.js';

/**
 * No documented cap per Identify request; specs/amplitude.md says keep requests well under 1 MB and 2000
 * identifications. Sizes here are of the form-encoded body.
 */
export const IDENTIFY_LIMITS = { maxIdentifications: 1000, maxBytes: 800_000, path: '/identify' } as const;

export interface IdentifyClientOptions {
  http: Got;
  baseUrl: string;
  apiKey: string;
  retry: RetryPolicy;
  throttleDelayMs: number;
  maxThrottleRounds?: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

/**
 * An identification ready for the wire: `json` is its JSON text (from JSON.stringify) and `encoded` the
 * same text form-encoded, so a request body is the concatenation of already-encoded pieces.
 */
export interface IdentifyItem extends WireItem {
  encoded: string;
}

/** Builds a wire item from an identification's JSON text (the caller serialises with JSON.stringify). */
export function identifyItem(id: string, json: string): IdentifyItem {
  const encoded = encodeURIComponent(json);
  // `,` between items encodes as %2C (3 bytes).
  return { id, json, encoded, size: encoded.length + 3 };
}

function idsOf(body: unknown, ...fields: string[]): Set<string> {
  const out = new Set<string>();
  if (typeof body !== 'object' || body === null) return out;
  for (const f of fields) {
    const v = (body as Record<string, unknown>)[f];
    if (typeof v === 'object' && v !== null) for (const k of Object.keys(v)) out.add(k);
  }
  return out;
}

/**
 * Client of the Identify API (`POST /identify`, form-encoded `api_key` and `identification`, an array of
 * `{user_id|device_id, user_properties}`; specs/amplitude.md). 5xx and network errors are retried; a 429
 * holds back the throttled ids (or the whole request when the body names none); an unexplained 400 is
 * bisected down to the identification Amplitude refuses.
 */
export class IdentifyClient {
  private readonly url: string;
  private readonly frame: BodyFrame;

  constructor(private readonly o: IdentifyClientOptions) {
    this.url = `${o.baseUrl}${IDENTIFY_LIMITS.path}`;
    // The identification array, form-encoded: `[` `,` `]` are %5B %2C %5D (all ASCII: length = bytes).
    this.frame = { prefix: `api_key=${encodeURIComponent(o.apiKey)}&identification=%5B`, separator: '%2C', suffix: '%5D' };
  }

  get envelopeBytes(): number {
    return this.frame.prefix.length + this.frame.suffix.length;
  }

  /** Sends `items` until each is acknowledged, rejected or (with `extras.hold`) handed back to send later. */
  deliver<T extends IdentifyItem>(items: T[], onReject: (item: T, r: Rejection) => void, extras: DeliveryExtras<T> = {}): Promise<number> {
    return deliverItems(items, {
      post: (batch) => this.post(batch),
      throttleDelayMs: this.o.throttleDelayMs,
      maxThrottleRounds: this.o.maxThrottleRounds ?? 8,
      onReject,
      onThrottle: (count, delayMs) => this.o.logger.warn('Amplitude throttled some users: holding their identifications back', { identifications: count, delayMs }),
      ...(this.o.signal ? { signal: this.o.signal } : {}),
      ...extras,
    });
  }

  async post(items: readonly IdentifyItem[]): Promise<Verdict> {
    const what = `Amplitude identify of ${items.length} users`;
    const res = await postWithRetry({
      http: this.o.http,
      url: this.url,
      body: joinedBody(this.frame, items.map((i) => i.encoded)),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      what,
      errorCode: 'AMPLITUDE_UNAVAILABLE',
      retry: this.o.retry,
      // 429 is not retried here: `deliver` holds back the throttled ids.
      retriable: (status) => status >= 500 || status === 408,
      logger: this.o.logger,
      signal: this.o.signal,
    });
    const status = res.statusCode;
    if (status >= 200 && status < 300) return { kind: 'ok' };
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.body);
    } catch {
      parsed = undefined;
    }
    const error = typeof parsed === 'object' && parsed !== null && typeof (parsed as { error?: unknown }).error === 'string' ? (parsed as { error: string }).error : res.body;
    if (/^invalid api key/i.test(error.trim()) || status === 401 || status === 403) throw invalidApiKeyError(status, 'identify');
    if (status === 413) {
      return { kind: 'bisect', rejection: { reason: 'amplitude_payload_too_large', detail: 'a single identification is larger than the request limit', status, retriable: false } };
    }
    if (status === 400) {
      return { kind: 'bisect', rejection: { reason: 'amplitude_bad_request', detail: `HTTP 400 ${bodySnippet(error)}`, status, retriable: false } };
    }
    if (status === 429) {
      const throttled = idsOf(parsed, 'throttled_users', 'throttled_devices');
      const quota = idsOf(parsed, 'exceeded_daily_quota_users', 'exceeded_daily_quota_devices');
      const reject = new Map<number, Rejection>();
      const hold = new Set<number>();
      items.forEach((it, i) => {
        if (quota.has(it.id)) reject.set(i, { reason: 'amplitude_daily_quota', detail: 'the id exceeded its daily quota; re-send tomorrow', status, retriable: true });
        else if (throttled.has(it.id)) hold.add(i);
      });
      return { kind: 'sorted', status, reject, hold };
    }
    throw new FatalRemoteError('AMPLITUDE_UNEXPECTED', `${what}: unexpected HTTP ${status} ${bodySnippet(res.body)}: check amplitude.ingestionBaseUrl / region`, status);
  }
}
