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
  /**
   * Called as each request is acknowledged, with its count. The total is also returned at the end, but a delivery
   * that fails part-way (retries run out after a 413 split, a stop during a wait) throws instead: what it had
   * delivered by then is in Amplitude, and the run's counts must say so.
   */
  onAcknowledged?(count: number): void;
  onThrottle?(count: number, delayMs: number): void;
  signal?: AbortSignal;
  /** The answer to a first request of all `items` already sent by the caller: the loop starts from it. */
  firstVerdict?: Verdict;
  /**
   * Takes throttled items to send again after `delayMs` themselves (then `round` is theirs to pass back), so
   * that the loop goes on without waiting. Without it, the loop waits the delay and sends them itself.
   * `paced`: the delay is a pace (see `pace`), not a throttle delay.
   */
  hold?(items: T[], round: number, delayMs: number, paced?: boolean): void;
  /** Throttle delays these items have had already (items a `hold` sends again). */
  round?: number;
  /**
   * A per-id cap per request (HTTP V2: about 30 events/s per id, specs/amplitude.md): each request carries at
   * most `maxPerId` items of one id, the first ones; the rest of that id wait `delayMs` (with `hold`, held
   * like throttled items) and go in the next request, again capped. A pace is not a throttle round: those
   * items were not refused. Items of an id that Amplitude throttles wait with its throttled ones instead.
   */
  pace?: { maxPerId: number; delayMs: number };
  onPace?(count: number, delayMs: number): void;
  /**
   * With `pace`: ids whose earlier items `hold` keeps now. Their items wait with them rather than go at once:
   * sent beside them, an id would go over its pace. (The items a `hold` sends again are not deferred.)
   */
  deferId?(id: string): boolean;
}

/** What `deliverItems` takes besides the items and the request: answers, throttling, a stop. */
export type DeliveryExtras<T extends WireItem> = Pick<DeliveryOptions<T>, 'firstVerdict' | 'hold' | 'round' | 'deferId' | 'onAcknowledged'>;

interface Work<T> {
  items: T[];
  round: number;
  delayMs: number;
  /** The delay is a pace (`DeliveryOptions.pace`), not a throttle delay. */
  paced?: boolean;
}

/** `items` split, in order, into the first `max` of each id and the rest (all of an id `defer` names). */
function capPerId<T extends WireItem>(items: readonly T[], max: number, defer?: (id: string) => boolean): { now: T[]; later: T[] } {
  const seen = new Map<string, number>();
  const now: T[] = [];
  const later: T[] = [];
  for (const it of items) {
    if (defer?.(it.id)) {
      later.push(it);
      continue;
    }
    const n = (seen.get(it.id) ?? 0) + 1;
    seen.set(it.id, n);
    (n <= max ? now : later).push(it);
  }
  return { now, later };
}

/** Whether `items` hold more than `max` of some id. */
export function overPerIdCap(items: readonly WireItem[], max: number): boolean {
  const seen = new Map<string, number>();
  for (const it of items) {
    const n = (seen.get(it.id) ?? 0) + 1;
    if (n > max) return true;
    seen.set(it.id, n);
  }
  return false;
}

/**
 * Delivers `items`, in order, until each one is acknowledged, set aside or (with `hold`) handed over to be
 * sent again later; returns how many were acknowledged. Sequential on purpose: the caller runs one of these
 * per lane of users, so one user's requests keep their order.
 */
export async function deliverItems<T extends WireItem>(items: T[], o: DeliveryOptions<T>): Promise<number> {
  let sent = 0;
  const firstWork: Work<T> = { items, round: o.round ?? 0, delayMs: 0 };
  const queue: Work<T>[] = [firstWork];
  let first = o.firstVerdict;
  /** Paced, not refused: the throttle rounds do not grow (they start again once a request went through). */
  const paceLater = (later: T[], round: number, next: Work<T>[]): void => {
    if (later.length === 0 || !o.pace) return;
    if (o.hold) {
      o.onPace?.(later.length, o.pace.delayMs);
      o.hold(later, round, o.pace.delayMs, true);
    } else {
      next.push({ items: later, round, delayMs: o.pace.delayMs, paced: true });
    }
  };
  while (queue.length > 0) {
    const work = queue.shift() as Work<T>;
    if (work.items.length === 0) continue;
    if (work.delayMs > 0) {
      if (work.paced) o.onPace?.(work.items.length, work.delayMs);
      else o.onThrottle?.(work.items.length, work.delayMs);
      await pause(work.delayMs, o.signal, `${work.items.length} ${work.paced ? 'paced' : 'throttled'} items`);
    }
    // The first `maxPerId` of each id go now, the rest after the pace (the caller's first request went whole);
    // the ids `deferId` names wait with their items already held.
    const defer = work === firstWork ? o.deferId : undefined;
    const { now: batch, later } = o.pace && !first ? capPerId(work.items, o.pace.maxPerId, defer) : { now: work.items, later: [] as T[] };
    if (batch.length === 0) {
      const waiting: Work<T>[] = [];
      paceLater(later, work.round, waiting);
      queue.unshift(...waiting);
      continue;
    }
    const v = first ?? (await o.post(batch));
    first = undefined;
    /** Work to do next, before what the queue holds: resends first, then the paced rest, then throttled items. */
    const next: Work<T>[] = [];
    let throttled: Work<T> | undefined;
    switch (v.kind) {
      case 'ok':
        sent += batch.length;
        o.onAcknowledged?.(batch.length);
        break;
      case 'reject_all':
        for (const it of batch) o.onReject(it, v.rejection);
        break;
      case 'bisect': {
        if (batch.length === 1) {
          o.onReject(batch[0] as T, v.rejection);
          break;
        }
        const mid = Math.ceil(batch.length / 2);
        next.push({ items: batch.slice(0, mid), round: work.round, delayMs: 0 }, { items: batch.slice(mid), round: work.round, delayMs: 0 });
        break;
      }
      case 'sorted': {
        const now: T[] = [];
        const held: T[] = [];
        const nothingNamed = v.reject.size === 0 && v.hold.size === 0;
        batch.forEach((it, i) => {
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
        next.push({ items: now, round: work.round, delayMs: 0 });
        if (held.length > 0 && later.length > 0) {
          // The rest of a throttled id waits with its throttled items, after them: sent sooner, it would be refused too.
          const ids = new Set(held.map((it) => it.id));
          const keep: T[] = [];
          for (const it of later) (ids.has(it.id) ? held : keep).push(it);
          later.length = 0;
          later.push(...keep);
        }
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
            throttled = { items: held, round: work.round + 1, delayMs: o.throttleDelayMs };
          }
        }
        break;
      }
    }
    paceLater(later, v.kind === 'ok' ? 0 : work.round, next);
    if (throttled) next.push(throttled);
    queue.unshift(...next);
  }
  return sent;
}
