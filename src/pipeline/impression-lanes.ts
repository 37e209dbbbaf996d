import pLimit, { type LimitFunction } from 'p-limit';
import type { IdentifyClient, IdentifyItem } from '../amplitude/identify-client.js';
import type { IngestionClient } from '../amplitude/ingestion-client.js';
import type { Rejection, WireItem } from '../amplitude/ingestion-delivery.js';
import type { BodyBuilder } from '../http/body.js';
import { impressionPosition } from '../impressions/decode.js';
import type { ScratchBuffers } from '../workers/scratch-buffers.js';
import type { DeadLetterWriter, SourcePosition } from './dead-letters.js';

/**
 * The sending side of push-impressions: events (or identifications) go to lanes by a hash of their user;
 * each lane sends its requests one after another, so one user's requests keep their order (p-limit(1) per
 * lane). Event requests are bodies written as events arrive, from bytes the decoders encoded; events become
 * items of their own only when Amplitude's answer names them.
 *
 * Throttled items (a 429 naming them) are held back on their own and sent again after the throttle delay,
 * while the lanes go on: only they wait, not the run (specs/amplitude.md). A held item is sent after later
 * events of its user that were not throttled; Amplitude orders events by their `time`, and identify mode
 * sends one identification per user. Reading waits only while held items pass MAX_HELD_BYTES; they count until
 * they are sent again, not only until their timer fires. Over HTTP V2, a request carries at most ~30 events of one
 * id (its rate per second): the rest of that id are held the same way for a second, without counting a throttle
 * round, and a timer takes ~30 of each id due (ingestion-delivery.ts), leaving the others where they are.
 */

/** An identification on its way, with where it came from. */
export interface LaneIdentification extends IdentifyItem {
  readonly source: SourcePosition;
}

interface Item extends WireItem {
  readonly source: SourcePosition;
}

/**
 * When a held group's timer fires, ids due this much later go too (ms), so that ids held in the same moment go
 * together; every due has this much added, so that none goes before its delay.
 */
const DUE_SLACK_MS = 10;

/** Held items at most (their JSON), before reading waits for them as it does for full lanes. */
const MAX_HELD_BYTES = 32 * 1024 * 1024;

/**
 * One id's held items in a group, oldest first (from `head` on). Over HTTP V2 a timer takes at most a pace's worth
 * of them (30), and the rest wait on as they are: a tick's work grows with the ids due, not with the items held.
 */
interface HeldId {
  items: Item[];
  head: number;
  bytes: number;
  /** When they may go (performance.now(), which a clock change does not move). */
  due: number;
  /** Throttle delays the id has had (the most among its events): a neighbour's rounds are not an id's own. */
  round: number;
}

/** How many of an id's held items are still waiting (from `head` on). */
function waiting(e: HeldId): number {
  return e.items.length - e.head;
}

/** Items held back after a 429 (or paced, HTTP V2), to be sent again when their timer fires. */
interface Held {
  lane: Lane;
  /** By id, in the order the ids were first held. */
  ids: Map<string, HeldId>;
  bytes: number;
  /** When the timer fires: the earliest due. */
  due: number;
  timer: NodeJS.Timeout | undefined;
  /** Resolves when they have been sent again (or dropped by `abandon`). */
  settle(): void;
}

/**
 * An event of a request body that Amplitude's answer needs one by one (rejected, throttled): its text,
 * user and origin are worked out from the body and the lane's records only then.
 */
class EncodedEvent implements Item {
  private user: string | undefined;

  constructor(
    private readonly body: Buffer,
    private readonly start: number,
    readonly size: number,
    readonly source: SourcePosition,
  ) {}

  get json(): string {
    return this.body.toString('utf8', this.start, this.start + this.size);
  }

  /** The event's user_id or device_id: throttling and quotas are per id. */
  get id(): string {
    if (this.user === undefined) {
      const e = JSON.parse(this.json) as { user_id?: unknown; device_id?: unknown };
      this.user = String(e.user_id ?? e.device_id ?? '');
    }
    return this.user;
  }
}

/** Per event of a lane's body, EVENT_FIELDS numbers: start and size in the body, input number, line, index, item. */
const EVENT_FIELDS = 6;

interface Lane {
  limit: LimitFunction;
  bytes: number;
  /** Identify mode: the identifications of the next request. */
  items: LaneIdentification[];
  /** Event mode: the next request's body, encoded as events arrive, and where each event lies and came from. */
  body: BodyBuilder | undefined;
  events: number[];
  count: number;
  /** The lane's held group whose timer has not fired yet: over HTTP V2, later holds of the lane join it. */
  pending: Held | undefined;
  /** Items held in this lane by id: their id's new items wait with them (HTTP V2's pace is per id). */
  heldIds: Map<string, number>;
  /**
   * Over HTTP V2, ids whose held items a resend of this lane took and has not sent yet: their other held items
   * wait until a pace after that send (`paceAgain`), however long the resend waits for the lane.
   */
  sending: Set<string>;
}

export interface ImpressionLanesOptions {
  lanes: number;
  /** Per request, capped by the API's own limits. */
  limits: { maxItems: number; maxBytes: number };
  /** Event mode. */
  ingestion?: IngestionClient | undefined;
  /** Identify mode. */
  identify?: IdentifyClient | undefined;
  scratch: ScratchBuffers;
  deadLetters: DeadLetterWriter;
  /** After each request: how many events or identifications Amplitude acknowledged. */
  onDelivered(count: number): void;
  /** For tests: held bytes past which reading waits (MAX_HELD_BYTES). */
  maxHeldBytes?: number;
}

export class ImpressionLanes {
  private readonly lanes: Lane[];
  /** Requests in flight or queued in a lane; reading waits while there are `2 x lanes` of them. */
  private inflight = 0;
  private readonly maxInflight: number;
  private waiters: (() => void)[] = [];
  private readonly all = new Set<Promise<void>>();
  /** Input names by number, for the events' origins kept as numbers. */
  private readonly inputNames: string[] = [];
  private sent = 0;
  /** Throttled items waiting for their delay, and their bytes (counted until sent: a resend takes them out of `held`). */
  private readonly held = new Set<Held>();
  private heldBytes = 0;
  /** Cleared by `stopHolding`: throttled items are then dropped, not held. */
  private holding = true;
  /** Set by `stopSending`: requests not started yet are not sent (identify mode's stop). */
  private stopped = false;
  /** Throttled items dropped, not sent: the run stopped or failed while they were held. */
  droppedHeld = 0;
  /**
   * Items a lane had queued or collected when `stopSending` came, not sent: the run was cut short even if reading
   * and folding had ended before the stop, which then only the lanes know.
   */
  droppedByStop = 0;
  /** The first error that stopped a request (fatal answer, retries exhausted): nothing more is sent. */
  failure: unknown;

  constructor(private readonly o: ImpressionLanesOptions) {
    this.lanes = Array.from({ length: Math.max(1, o.lanes) }, () => ({
      limit: pLimit(1),
      bytes: 0,
      items: [],
      body: undefined,
      events: [],
      count: 0,
      pending: undefined,
      heldIds: new Map<string, number>(),
      sending: new Set<string>(),
    }));
    this.maxInflight = this.lanes.length * 2;
  }

  /** Requests made so far. */
  get requests(): number {
    return this.sent;
  }

  /** Whether reading should wait (`waitForRoom`) before adding more. */
  get busy(): boolean {
    return this.inflight >= this.maxInflight || this.heldBytes > (this.o.maxHeldBytes ?? MAX_HELD_BYTES);
  }

  /** One event for lane `lane`: its UTF-8 JSON is `src[start, start + size)`. */
  addEvent(lane: number, src: Uint8Array, start: number, size: number, file: string, line: number, index: number, item: number): void {
    const l = this.withRoom(lane, size);
    l.body ??= (this.o.ingestion as IngestionClient).newBody(this.o.scratch.spare('bodies'));
    const at = l.body.addBytes(src, start, start + size);
    l.events.push(at, size, this.fileNo(file), line, index, item);
    l.count++;
    l.bytes += size + 1;
  }

  addIdentification(lane: number, item: LaneIdentification): void {
    const l = this.withRoom(lane, item.size);
    l.items.push(item);
    l.bytes += item.size + 1;
  }

  /** Sends what every lane holds. */
  flush(): void {
    for (const lane of this.lanes) this.submit(lane);
  }

  async waitForRoom(): Promise<void> {
    while (this.busy && this.failure === undefined) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Waits for every request, held items included (sending them again may hold some again); throws the first failure. */
  async done(): Promise<void> {
    while (this.all.size > 0) await Promise.all([...this.all]);
    if (this.failure !== undefined) throw this.failure;
  }

  /** Drops what is not sent yet, held items included (`droppedHeld`), and waits for what is in flight (when a run stops early). */
  async abandon(): Promise<void> {
    for (const lane of this.lanes) {
      lane.items = [];
      lane.body = undefined;
      lane.events = [];
      lane.count = 0;
    }
    this.stopHolding();
    await Promise.allSettled([...this.all]);
  }

  /**
   * A stopping run does not wait out throttle delays: held items, and items throttled from now on, are
   * dropped (counted in `droppedHeld`). Requests in flight still finish.
   */
  stopHolding(): void {
    this.holding = false;
    for (const lane of this.lanes) lane.pending = undefined;
    for (const h of this.held) {
      clearTimeout(h.timer);
      for (const e of h.ids.values()) this.droppedHeld += waiting(e);
      this.release(h);
    }
  }

  /**
   * A stop of the sending itself (identify mode, whose identifications go only once all was read): requests in
   * flight finish, and nothing more goes out, neither the requests queued in a lane nor what a lane collects.
   * Event mode does not call it: a stop there ends the reading, and what was read is still sent.
   */
  stopSending(): void {
    this.stopped = true;
    this.stopHolding();
  }

  private fileNo(file: string): number {
    const n = this.inputNames.lastIndexOf(file);
    return n !== -1 ? n : this.inputNames.push(file) - 1;
  }

  /** Lane `n`, its current request sent first when an item of `size` bytes would not fit in it. */
  private withRoom(n: number, size: number): Lane {
    const lane = this.lanes[n] as Lane;
    if (lane.items.length + lane.count >= this.o.limits.maxItems || lane.bytes + size + 1 > this.o.limits.maxBytes) this.submit(lane);
    return lane;
  }

  /**
   * Counted per acknowledged request, not per delivery: a delivery split in parts (413, 400) that then fails
   * (retries run out, a stop) has delivered its first parts, and the summary must count them.
   */
  private readonly acknowledged = (count: number): void => {
    this.o.onDelivered(count);
  };

  private readonly reject = (item: Item, r: Rejection): void => {
    this.o.deadLetters.write({ reason: r.reason, detail: r.detail, status: r.status, source: item.source, retriable: r.retriable, payload: JSON.parse(item.json) as unknown });
  };

  /** A body's events as items, for the rare answers that name events one by one. */
  private encodedEvents(body: Buffer, events: number[], count: number): EncodedEvent[] {
    const out: EncodedEvent[] = [];
    for (let i = 0; i < count; i++) {
      const [start, size, fileNo, line, index, item] = events.slice(i * EVENT_FIELDS, (i + 1) * EVENT_FIELDS) as [number, number, number, number, number, number];
      out.push(new EncodedEvent(body, start, size, impressionPosition(this.inputNames[fileNo] as string, line, index, item)));
    }
    return out;
  }

  /**
   * Holds throttled items of `lane` back for `delayMs`, then sends them again in that lane. Events are copied
   * out of their request body first: its buffer serves the next request meanwhile.
   */
  private hold(lane: Lane, items: Item[], round: number, delayMs: number, paced = false): void {
    if (!this.holding) {
      this.droppedHeld += items.length;
      return;
    }
    const due = performance.now() + delayMs + DUE_SLACK_MS;
    const ids = new Map<string, HeldId>();
    for (const it of items) {
      const copy: Item = it instanceof EncodedEvent ? { json: it.json, size: it.size, id: it.id, source: it.source } : it;
      let e = ids.get(copy.id);
      if (!e) ids.set(copy.id, (e = { items: [], head: 0, bytes: 0, due, round }));
      e.items.push(copy);
      e.bytes += copy.size;
    }
    this.holdUntil(lane, ids, paced);
  }

  /** Holds the items of `ids` in `lane` until their dues, in the lane's waiting group over HTTP V2, else in a group of their own. */
  private holdUntil(lane: Lane, ids: Map<string, HeldId>, paced = false): void {
    if (ids.size === 0) return; // a group of nothing would never fire, and `done()` would wait for it
    // HTTP V2, one waiting group per lane: two groups of one id, each paced on its own, would go over its pace
    // together. Each id keeps its own due, for all its items (a 429 puts it later; see the loop): when the timer
    // fires, the ids due go, capped per id again, and the others wait on (`fire`).
    const joinable = this.o.ingestion?.pacesPerId === true ? lane.pending : undefined;
    let settle!: () => void;
    const h: Held = joinable ?? { lane, ids: new Map(), bytes: 0, settle: () => settle(), due: Number.POSITIVE_INFINITY, timer: undefined };
    let first = Number.POSITIVE_INFINITY;
    for (const [id, e] of ids) {
      const n = waiting(e);
      this.heldBytes += e.bytes;
      h.bytes += e.bytes;
      lane.heldIds.set(id, (lane.heldIds.get(id) ?? 0) + n);
      const held = h.ids.get(id);
      if (held === undefined) h.ids.set(id, e);
      else {
        const added = e.items.slice(e.head);
        // Throttled items of a resend are older than the rest of their id, which waited for that resend: they go first.
        if (!paced && lane.sending.has(id)) {
          held.items = added.concat(held.items.slice(held.head));
          held.head = 0;
        } else {
          for (const it of added) held.items.push(it);
        }
        held.bytes += e.bytes;
        // Paced items of an id already held go when it goes: pushing its due at every request of the id would hold
        // it for as long as reading goes on. A 429 does push it: the id must wait out its throttle.
        if (!paced) held.due = Math.max(e.due, held.due);
        held.round = Math.max(e.round, held.round);
      }
      if (!lane.sending.has(id)) first = Math.min(first, (h.ids.get(id) as HeldId).due);
    }
    if (first < h.due) this.schedule(h, first);
    if (joinable) return;
    const p = new Promise<void>((resolve) => (settle = resolve)).finally(() => this.all.delete(p));
    lane.pending = h;
    this.held.add(h);
    this.all.add(p);
  }

  /** (Re)sets the timer of held items `h` to `due`; none for no due (ids waiting for a resend: `paceAgain` sets it then). */
  private schedule(h: Held, due: number): void {
    clearTimeout(h.timer);
    h.due = due;
    h.timer = Number.isFinite(due) ? setTimeout(() => this.fire(h), due - performance.now()) : undefined;
  }

  /**
   * A held group's timer fired: the ids due are sent again (over HTTP V2 at most a pace's worth of each); the rest
   * wait on in the lane's next group, without being copied or scanned item by item.
   */
  private fire(h: Held): void {
    const lane = h.lane;
    // Ids due within a few milliseconds go too: held in the same moment (a 429 and a pace of one answer), they go together.
    const now = performance.now() + DUE_SLACK_MS;
    const isDue = (id: string, e: HeldId): boolean => e.due <= now && !lane.sending.has(id);
    let next = Number.POSITIVE_INFINITY;
    let anyDue = false;
    for (const [id, e] of h.ids) {
      if (isDue(id, e)) anyDue = true;
      else if (!lane.sending.has(id)) next = Math.min(next, e.due);
    }
    // Nothing due yet: the timer fired a little early, or the id it was set for has a later due since.
    if (!anyDue) return this.schedule(h, next);
    if (lane.pending === h) lane.pending = undefined;
    const cap = this.o.ingestion?.pacesPerId === true ? (this.o.ingestion.maxPerId ?? Number.POSITIVE_INFINITY) : Number.POSITIVE_INFINITY;
    const going = new Map<string, HeldId>();
    const later = new Map<string, HeldId>();
    let bytes = 0;
    for (const [id, e] of h.ids) {
      if (!isDue(id, e)) {
        later.set(id, e);
        continue;
      }
      if (Number.isFinite(cap)) lane.sending.add(id);
      if (waiting(e) <= cap) {
        going.set(id, e);
      } else {
        // The first `cap` go; the rest wait for a pace after they are sent. Not throttled themselves, they have
        // no round of their own: a 429 of the part sent gives them its round (`holdUntil`).
        const part = e.items.slice(e.head, e.head + cap);
        const partBytes = part.reduce((n, it) => n + it.size, 0);
        going.set(id, { items: part, head: 0, bytes: partBytes, due: e.due, round: e.round });
        e.head += cap;
        e.bytes -= partBytes;
        e.round = 0;
        if (e.head * 2 > e.items.length) {
          e.items = e.items.slice(e.head);
          e.head = 0;
        }
        later.set(id, e);
      }
    }
    for (const e of going.values()) bytes += e.bytes;
    // The rest leave this group's counts; `holdUntil` counts them again in the lane's next group.
    this.heldBytes -= h.bytes - bytes;
    for (const [id, e] of later) this.unholdId(lane, id, waiting(e));
    h.ids = going;
    h.bytes = bytes;
    this.holdUntil(lane, later);
    this.resend(h);
  }

  private unholdId(lane: Lane, id: string, n: number): void {
    const left = (lane.heldIds.get(id) ?? n) - n;
    if (left > 0) lane.heldIds.set(id, left);
    else lane.heldIds.delete(id);
  }

  /**
   * Held items are no longer held (sent, or dropped): reading may go on once their bytes leave the count, which
   * for a resend is only once they are sent (`keepBytes`): taken out and counted nowhere, they would let reading
   * hold as much again meanwhile.
   */
  private release(h: Held, keepBytes = false): void {
    if (!this.held.delete(h)) return;
    if (h.lane.pending === h) h.lane.pending = undefined;
    for (const [id, e] of h.ids) this.unholdId(h.lane, id, waiting(e));
    if (!keepBytes) this.heldBytes -= h.bytes;
    h.settle();
    this.wake();
  }

  /** Sends held items again once their delay is over, in their lane (throttled again, they are held again). */
  private resend(h: Held): void {
    this.track(
      h.lane.limit(async () => {
        // A stop that came while this waited for its lane dropped it (and counted it): it is not sent then.
        const stillHeld = this.held.has(h);
        this.release(h, true);
        try {
          if (!stillHeld || this.failure !== undefined) return;
          // One delivery per throttle round, fewest first: each id goes with the rounds it has had itself.
          const byRound = new Map<number, { ids: string[]; items: Item[] }>();
          for (const [id, e] of h.ids) {
            let r = byRound.get(e.round);
            if (!r) byRound.set(e.round, (r = { ids: [], items: [] }));
            r.ids.push(id);
            for (let i = e.head; i < e.items.length; i++) r.items.push(e.items[i] as Item);
          }
          for (const round of [...byRound.keys()].sort((a, b) => a - b)) {
            const { ids, items } = byRound.get(round) as { ids: string[]; items: Item[] };
            if (this.failure !== undefined) return;
            if (!this.holding) {
              this.droppedHeld += items.length; // stopped meanwhile: like held events, not sent
              continue;
            }
            this.sent++;
            if (this.o.ingestion) {
              await this.o.ingestion.deliver(items, this.reject, { hold: this.holder(h.lane), round, onAcknowledged: this.acknowledged });
              this.paceAgain(h.lane, ids);
            } else if (this.o.identify) {
              await this.o.identify.deliver(items as LaneIdentification[], this.reject, { hold: this.holder<LaneIdentification>(h.lane), round, onAcknowledged: this.acknowledged });
            }
          }
        } finally {
          if (stillHeld) {
            this.heldBytes -= h.bytes;
            this.wake();
          }
          this.paceAgain(h.lane, h.ids.keys());
        }
      }),
    );
  }

  /**
   * Over HTTP V2, held events of `ids` just sent again: their ids' events waiting in the lane's group (the rest of a
   * held id, or held back meanwhile) go a whole pace after this send, not when their own pace began.
   */
  private paceAgain(lane: Lane, ids: Iterable<string>): void {
    const pace = this.o.ingestion?.paceMs;
    if (pace === undefined) return;
    const group = lane.pending;
    const due = performance.now() + pace + DUE_SLACK_MS;
    let first = Number.POSITIVE_INFINITY;
    for (const id of ids) {
      if (!lane.sending.delete(id)) continue;
      const e = group?.ids.get(id);
      if (e === undefined) continue;
      if (e.due < due) e.due = due;
      first = Math.min(first, e.due);
    }
    if (group && first < group.due) this.schedule(group, first);
  }

  private holder<T extends Item>(lane: Lane): (items: T[], round: number, delayMs: number, paced?: boolean) => void {
    return (items, round, delayMs, paced) => this.hold(lane, items, round, delayMs, paced);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Counts a request as in flight until it settles; its failure stops the run. */
  private track(request: Promise<void>): void {
    this.inflight++;
    const p = request
      .catch((err: unknown) => {
        this.failure ??= err;
        this.stopHolding(); // nothing more is sent
      })
      .finally(() => {
        this.inflight--;
        this.all.delete(p);
        this.wake();
      });
    this.all.add(p);
  }

  private submit(lane: Lane): void {
    const items = lane.items;
    const body = lane.body?.finish();
    const events = lane.events;
    const count = lane.count;
    lane.items = [];
    lane.bytes = 0;
    lane.body = undefined;
    lane.events = [];
    lane.count = 0;
    if (items.length === 0 && count === 0) return;
    const { ingestion, identify, scratch } = this.o;
    this.track(
      lane.limit(async () => {
        if (this.failure !== undefined) return;
        if (this.stopped) {
          this.droppedByStop += items.length + count;
          return;
        }
        this.sent++;
        if (ingestion && body) {
          const extras = { hold: this.holder<EncodedEvent>(lane), deferId: (id: string): boolean => lane.heldIds.has(id), onAcknowledged: this.acknowledged };
          await ingestion.deliverEncoded(body, count, () => this.encodedEvents(body, events, count), this.reject, extras);
          // Delivered, dead-lettered or held (as copies): nothing reads the body any more, its buffer serves the next one.
          scratch.give('bodies', body.buffer as ArrayBuffer);
        } else if (identify) {
          await identify.deliver(items, this.reject, { hold: this.holder<LaneIdentification>(lane), onAcknowledged: this.acknowledged });
        }
      }),
    );
  }
}
