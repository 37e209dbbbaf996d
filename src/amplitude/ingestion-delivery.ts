import { pause } from '../http/retry.js';

/**
 * The shared delivery loop of the Batch, HTTP V2 and Identify clients: what to do with each item of a
 * request once Amplitude has answered (specs/amplitude.md, "Responses"). Items are already serialised,
 * so a resend never re-encodes them.
 */
export interface WireItem {
  /** The item's JSON text, as it goes on the wire. */
  json: string;
  /** Bytes it adds to a request body: an event's UTF-8 JSON (the client counts the commas between events); an identification's form-encoded text with its separator. */
  size: number;
  /** The user or device id: throttling and quotas are per id. */
  id: string;
}

export interface Rejection {
  reason: string;
  detail: string;
  status: number;
  /** Whether re-sending the same payload later may succeed (quota, throttling), or the data must change. */
  retriable: boolean;
}

/** How Amplitude answered one request, per item. */
export type Verdict =
  | { kind: 'ok' }
  /** Split the request in halves and resend each; a single item gets `rejection` (413, unexplained 400). */
  | { kind: 'bisect'; rejection: Rejection }
  /** Every item fails the same way (a 400 that names no event). */
  | { kind: 'reject_all'; rejection: Rejection }
  /**
   * Items by index: set aside, hold back for the throttle delay, or (the rest) resend now. With nothing
   * identified, a 429 holds back the whole request.
   */
  | { kind: 'sorted'; status: number; reject: Map<number, Rejection>; hold: Set<number> };

export interface DeliveryOptions<T extends WireItem> {
  post(items: T[]): Promise<Verdict>;
  /** How long to hold back throttled items (specs/amplitude.md: ~30 s HTTP V2, ~15 s Batch and Identify). */
  throttleDelayMs: number;
  /** After this many throttle delays for the same items, they are set aside as `amplitude_throttled`. */
  maxThrottleRounds: number;
  onReject(item: T, rejection: Rejection): void;
  onThrottle?(count: number, delayMs: number): void;
  signal?: AbortSignal;
  /** The answer to a first request of all `items` already sent by the caller: the loop starts from it. */
  firstVerdict?: Verdict;
  /**
   * Takes throttled items to send again after `delayMs` themselves (then `round` is theirs to pass back), so
   * that the loop goes on without waiting. Without it, the loop waits the delay and sends them itself.
   */
  hold?(items: T[], round: number, delayMs: number): void;
  /** Throttle delays these items have had already (items a `hold` sends again). */
  round?: number;
}

/** What `deliverItems` takes besides the items and the request: answers, throttling, a stop. */
export type DeliveryExtras<T extends WireItem> = Pick<DeliveryOptions<T>, 'firstVerdict' | 'hold' | 'round'>;

interface Work<T> {
  items: T[];
  round: number;
  delayMs: number;
}

/**
 * Delivers `items`, in order, until each one is acknowledged, set aside or (with `hold`) handed over to be
 * sent again later; returns how many were acknowledged. Sequential on purpose: the caller runs one of these
 * per lane of users, so one user's requests keep their order.
 */
export async function deliverItems<T extends WireItem>(items: T[], o: DeliveryOptions<T>): Promise<number> {
  let sent = 0;
  const queue: Work<T>[] = [{ items, round: o.round ?? 0, delayMs: 0 }];
  let first = o.firstVerdict;
  while (queue.length > 0) {
    const work = queue.shift() as Work<T>;
    if (work.items.length === 0) continue;
    if (work.delayMs > 0) {
      o.onThrottle?.(work.items.length, work.delayMs);
      await pause(work.delayMs, o.signal, `${work.items.length} throttled items`);
    }
    const v = first ?? (await o.post(work.items));
    first = undefined;
    switch (v.kind) {
      case 'ok':
        sent += work.items.length;
        break;
      case 'reject_all':
        for (const it of work.items) o.onReject(it, v.rejection);
        break;
      case 'bisect': {
        if (work.items.length === 1) {
          o.onReject(work.items[0] as T, v.rejection);
          break;
        }
        const mid = Math.ceil(work.items.length / 2);
        queue.unshift({ items: work.items.slice(0, mid), round: work.round, delayMs: 0 }, { items: work.items.slice(mid), round: work.round, delayMs: 0 });
        break;
      }
      case 'sorted': {
        const now: T[] = [];
        const held: T[] = [];
        const nothingNamed = v.reject.size === 0 && v.hold.size === 0;
        work.items.forEach((it, i) => {
          const r = v.reject.get(i);
          if (r) o.onReject(it, r);
          else if (v.hold.has(i) || (nothingNamed && v.status === 429)) held.push(it);
          else now.push(it);
        });
        if (nothingNamed && v.status !== 429) {
          // Nothing named and nothing to wait for: resending the same request would loop.
          for (const it of now) o.onReject(it, { reason: 'amplitude_rejected', detail: `status ${v.status} without event indexes`, status: v.status, retriable: true });
          break;
        }
        const next: Work<T>[] = [{ items: now, round: work.round, delayMs: 0 }];
        if (held.length > 0) {
          if (work.round + 1 > o.maxThrottleRounds) {
            for (const it of held) {
              o.onReject(it, {
                reason: 'amplitude_throttled',
                detail: `still throttled after ${o.maxThrottleRounds} waits of ${o.throttleDelayMs} ms`,
                status: v.status,
                retriable: true,
              });
            }
          } else if (o.hold) {
            o.onThrottle?.(held.length, o.throttleDelayMs);
            o.hold(held, work.round + 1, o.throttleDelayMs);
          } else {
            next.push({ items: held, round: work.round + 1, delayMs: o.throttleDelayMs });
          }
        }
        queue.unshift(...next);
        break;
      }
    }
  }
  return sent;
}
