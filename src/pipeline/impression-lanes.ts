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
 * sends one identification per user. Reading waits only while held items pass MAX_HELD_BYTES. Over HTTP V2,
 * a request carries at most ~30 events of one id (its rate per second): the rest of that id are held the
 * same way for a second, without counting a throttle round, and sent again capped (ingestion-delivery.ts).
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

/** Items held back after a 429 (or paced, HTTP V2), to be sent again when their timer fires. */
interface Held {
  lane: Lane;
  items: Item[];
  /** When the items of each id may go (performance.now(), which a clock change does not move); all of an id go together. */
  idDue: Map<string, number>;
  /** Throttle delays each id has had (the most among its events): a neighbour's rounds are not an id's own. */
  idRound: Map<string, number>;
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
  /** Throttled items waiting for their delay, and their bytes. */
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
    }));
    this.maxInflight = this.lanes.length * 2;
  }

  /** Requests made so far. */
  get requests(): number {
    return this.sent;
  }

  /** Whether reading should wait (`waitForRoom`) before adding more. */
  get busy(): boolean {
    return this.inflight >= this.maxInflight || this.heldBytes > MAX_HELD_BYTES;
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
      this.droppedHeld += h.items.length;
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
    const copies: Item[] = items.map((it) => (it instanceof EncodedEvent ? { json: it.json, size: it.size, id: it.id, source: it.source } : it));
    const due = performance.now() + delayMs + DUE_SLACK_MS;
    this.holdUntil(lane, copies, copies.map(() => due), copies.map(() => round), paced);
  }

  /** Holds `items` of `lane` (copies) until their `dues`, in the lane's waiting group over HTTP V2, else in a group of their own. */
  private holdUntil(lane: Lane, items: Item[], dues: number[], rounds: number[], paced = false): void {
    if (items.length === 0) return; // a group of nothing would never fire, and `done()` would wait for it
    const bytes = items.reduce((n, it) => n + it.size, 0);
    this.heldBytes += bytes;
    for (const it of items) lane.heldIds.set(it.id, (lane.heldIds.get(it.id) ?? 0) + 1);
    // HTTP V2, one waiting group per lane: two groups of one id, each paced on its own, would go over its pace
    // together. Each id keeps its own due, for all its items (a 429 puts it later; see the loop): when the timer
    // fires, the ids due go, capped per id again, and the others wait on (`fire`).
    const joinable = this.o.ingestion?.pacesPerId === true ? lane.pending : undefined;
    let settle!: () => void;
    const h: Held = joinable ?? { lane, items: [], idDue: new Map(), idRound: new Map(), bytes: 0, settle: () => settle(), due: Number.POSITIVE_INFINITY, timer: undefined };
    let first = Number.POSITIVE_INFINITY;
    items.forEach((it, i) => {
      // Paced items of an id already held go when it goes: pushing its due at every request of the id would hold
      // it for as long as reading goes on. A 429 does push it: the id must wait out its throttle.
      const held = h.idDue.get(it.id);
      const due = held === undefined ? (dues[i] as number) : paced ? held : Math.max(dues[i] as number, held);
      h.items.push(it);
      h.idDue.set(it.id, due);
      h.idRound.set(it.id, Math.max(rounds[i] as number, h.idRound.get(it.id) ?? 0));
      first = Math.min(first, due);
    });
    h.bytes += bytes;
    if (first < h.due) this.schedule(h, first);
    if (joinable) return;
    const p = new Promise<void>((resolve) => (settle = resolve)).finally(() => this.all.delete(p));
    lane.pending = h;
    this.held.add(h);
    this.all.add(p);
  }

  /** (Re)sets the timer of held items `h` to `due`. */
  private schedule(h: Held, due: number): void {
    clearTimeout(h.timer);
    h.due = due;
    h.timer = setTimeout(() => this.fire(h), due - performance.now());
  }

  /** A held group's timer fired: the ids due are sent again; the others wait on in the lane's next group. */
  private fire(h: Held): void {
    // Ids due within a few milliseconds go too: held in the same moment (a 429 and a pace of one answer), they go together.
    const now = performance.now() + DUE_SLACK_MS;
    const waiting = new Set([...h.idDue].filter(([, due]) => due > now).map(([id]) => id));
    if (waiting.size === h.idDue.size) {
      // Nothing due yet: the timer fired a little early, or the id it was set for has a later due since.
      let next = Number.POSITIVE_INFINITY;
      for (const due of h.idDue.values()) next = Math.min(next, due);
      return this.schedule(h, next);
    }
    if (h.lane.pending === h) h.lane.pending = undefined;
    if (waiting.size > 0) {
      const later = h.items.filter((it) => waiting.has(it.id));
      const laterDues = later.map((it) => h.idDue.get(it.id) as number);
      const laterRounds = later.map((it) => h.idRound.get(it.id) as number);
      h.items = h.items.filter((it) => !waiting.has(it.id));
      for (const id of waiting) {
        h.idDue.delete(id);
        h.idRound.delete(id);
      }
      const bytes = later.reduce((n, it) => n + it.size, 0);
      h.bytes -= bytes;
      this.heldBytes -= bytes;
      for (const it of later) this.unholdId(h.lane, it.id);
      this.holdUntil(h.lane, later, laterDues, laterRounds);
    }
    this.resend(h);
  }

  private unholdId(lane: Lane, id: string): void {
    const n = (lane.heldIds.get(id) ?? 1) - 1;
    if (n > 0) lane.heldIds.set(id, n);
    else lane.heldIds.delete(id);
  }

  /** Held items are no longer held: their bytes leave the count, and reading may go on. */
  private release(h: Held): void {
    if (!this.held.delete(h)) return;
    if (h.lane.pending === h) h.lane.pending = undefined;
    for (const it of h.items) this.unholdId(h.lane, it.id);
    this.heldBytes -= h.bytes;
    h.settle();
    this.wake();
  }

  /** Sends held items again once their delay is over, in their lane (throttled again, they are held again). */
  private resend(h: Held): void {
    this.track(
      h.lane.limit(async () => {
        // A stop that came while this waited for its lane dropped it (and counted it): it is not sent then.
        const stillHeld = this.held.has(h);
        this.release(h);
        if (!stillHeld || this.failure !== undefined) return;
        // One delivery per throttle round, fewest first: each id goes with the rounds it has had itself.
        const byRound = new Map<number, Item[]>();
        for (const it of h.items) {
          const round = h.idRound.get(it.id) ?? 0;
          const list = byRound.get(round);
          if (list) list.push(it);
          else byRound.set(round, [it]);
        }
        for (const round of [...byRound.keys()].sort((a, b) => a - b)) {
          const items = byRound.get(round) as Item[];
          if (this.failure !== undefined) return;
          if (!this.holding) {
            this.droppedHeld += items.length; // stopped meanwhile: like held events, not sent
            continue;
          }
          this.sent++;
          if (this.o.ingestion) {
            await this.o.ingestion.deliver(items, this.reject, { hold: this.holder(h.lane), round, onAcknowledged: this.acknowledged });
            this.paceAgain(h.lane, items);
          } else if (this.o.identify) {
            await this.o.identify.deliver(items as LaneIdentification[], this.reject, { hold: this.holder<LaneIdentification>(h.lane), round, onAcknowledged: this.acknowledged });
          }
        }
      }),
    );
  }

  /**
   * Over HTTP V2, held events just sent again: their ids' events waiting in the lane's group (held back meanwhile,
   * or the surplus of this send) go a whole pace after this send, not when their own pace began.
   */
  private paceAgain(lane: Lane, sent: Item[]): void {
    const pace = this.o.ingestion?.paceMs;
    const group = lane.pending;
    if (pace === undefined || !group) return;
    const due = performance.now() + pace + DUE_SLACK_MS;
    for (const it of sent) {
      const d = group.idDue.get(it.id);
      if (d !== undefined && d < due) group.idDue.set(it.id, due);
    }
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
