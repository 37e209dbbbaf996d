/**
 * Emulator of Amplitude's ingestion APIs (specs/amplitude.md, "Ingestion" and "Identify API"), for tests,
 * the benchmark and `amp-fme sandbox`:
 * - `POST /batch` and `POST /2/httpapi`: JSON `{api_key, events, options}`. Limits per request (HTTP V2
 *   < 1 MB and < 2000 events, Batch <= 20 MB and <= 2000 events) answer 413. An `api_key` other than the
 *   configured one answers 400 `Invalid API key`. Each event is validated (event_type, user_id/device_id,
 *   time in epoch ms, placeholder ids, ids shorter than 5 or `options.min_id_length`); any problem answers 400
 *   with the index lists (`events_with_invalid_fields`, `events_with_missing_fields`,
 *   `events_with_invalid_id_lengths`) and stores nothing. Silenced ids answer 400 with `silenced_events`.
 *   Throttled ids (scripted, or over the per-id rate when `rateLimits` is on) and ids over their daily quota
 *   answer 429 with `throttled_users/devices`, `throttled_events` and `exceeded_daily_quota_*`, storing nothing.
 *   Accepted events are deduplicated by `insert_id` per device (or user) within 7 days.
 * - `POST /identify`: form-encoded `api_key` and `identification` (one object or an array). Applies plain
 *   user properties or `$set`/`$setOnce`/`$unset` operations; mixing both is a 400.
 * Scripted or random faults come from a FaultScript (`afterProcessing` stores, then answers the fault).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultScript, sendForced } from './faults.js';
import { readBody, sendJson, sendText, type Route } from './server.js';

export type IngestionPath = '/batch' | '/2/httpapi' | '/identify';

/** What `validate: false` keeps of an ingestion request body: its size, its first 4 KB and its events. */
export interface CountedBody {
  bytes: number;
  head: Buffer;
  events: number;
}

const HEAD_BYTES = 4096;
/** Once per event (a JSON string cannot hold it unescaped). */
const INSERT_ID = Buffer.from('"insert_id":');
/** The key searched for without its quote and colon, which are too common for a fast search, then checked around. */
const INSERT_ID_CORE = Buffer.from('insert_id');
const QUOTE = 0x22;
const COLON = 0x3a;

/**
 * Reads a body chunk by chunk, counting `"insert_id":` in each, and in the few bytes around each chunk
 * boundary for a key cut in two. Costs a fraction of joining the chunks and searching the whole body.
 */
export async function countBody(req: AsyncIterable<Buffer>, limitBytes: number): Promise<CountedBody> {
  const edgeBytes = INSERT_ID.length - 1;
  let bytes = 0;
  let events = 0;
  let head = Buffer.alloc(0);
  /** The last bytes before this chunk, where a key crossing into it would start. */
  let tail = Buffer.alloc(0);
  for await (const chunk of req) {
    bytes += chunk.length;
    if (bytes > limitBytes) throw new Error(`request body over ${limitBytes} bytes`);
    if (head.length < HEAD_BYTES) head = Buffer.concat([head, chunk.subarray(0, HEAD_BYTES - head.length)]);
    if (tail.length > 0) {
      const edge = Buffer.concat([tail, chunk.subarray(0, edgeBytes)]);
      for (let at = edge.indexOf(INSERT_ID); at !== -1 && at < tail.length; at = edge.indexOf(INSERT_ID, at + 1)) events++;
    }
    // Keys wholly inside the chunk: the core at 1..length-11, with its quotes and colon around it.
    for (let at = chunk.indexOf(INSERT_ID_CORE, 1); at !== -1; at = chunk.indexOf(INSERT_ID_CORE, at + INSERT_ID_CORE.length)) {
      if (at + 10 < chunk.length && chunk[at - 1] === QUOTE && chunk[at + 9] === QUOTE && chunk[at + 10] === COLON) events++;
    }
    tail = chunk.length >= edgeBytes ? Buffer.from(chunk.subarray(chunk.length - edgeBytes)) : Buffer.concat([tail, chunk]).subarray(-edgeBytes);
  }
  return { bytes, head, events };
}

export interface AmplitudeIngestionEmulatorOptions {
  apiKey: string;
  faults?: FaultScript;
  /** Keep counts and dedupe ids only, not the events (the benchmark sends millions). */
  countOnly?: boolean;
  /**
   * Parse and check every event (default true). The benchmark turns it off so that the emulator, on the same
   * cores as the CLI, costs next to nothing: ingestion requests are then only sized, their API key found in
   * the envelope, and their events counted by their `"insert_id":` keys (amp-fme writes one per event),
   * with no deduplication, so an event sent twice shows up as one too many. The count is made on each
   * chunk of the body as it arrives, without joining the chunks, and nothing is stored.
   */
  validate?: boolean;
  /** Enforce the per-id rates of specs/amplitude.md (HTTP V2 30 events/s, Batch 1000/s over 30 s). Off by default. */
  rateLimits?: boolean;
  now?: () => number;
}

export interface StoredAmplitudeEvent {
  user_id?: string;
  device_id?: string;
  event_type: string;
  time?: number;
  insert_id?: string;
  library?: string;
  event_properties?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface IngestionRequestRecord {
  path: IngestionPath;
  status: number;
  /** Events or identifications in the request. */
  items: number;
  bytes: number;
  /** `options.min_id_length` of the request, if any. */
  minIdLength?: number;
  stored: boolean;
  /** When the request arrived: epoch ms of the host's clock (not the `now` option's). */
  receivedAt: number;
}

export interface AmplitudeIngestionEmulator {
  route: Route;
  readonly faults: FaultScript;
  /** Unique events stored, in arrival order (empty with countOnly). */
  readonly events: StoredAmplitudeEvent[];
  /** Unique events stored. */
  readonly count: number;
  /** Events acknowledged but dropped as duplicates of an earlier insert_id. */
  readonly duplicates: number;
  /** Current user properties by user_id (or device_id). */
  readonly userProperties: Map<string, Record<string, unknown>>;
  /** Identifications applied. */
  readonly identifications: number;
  readonly requests: IngestionRequestRecord[];
  /** Answer the next `requests` requests that carry this id with 429 naming it. */
  throttle(id: string, requests?: number): void;
  /** The id is over its daily quota until `reset()`. */
  exceedQuota(id: string): void;
  /** The id is silenced (400 `silenced_events`) until `reset()`. */
  silence(id: string): void;
  reset(): void;
}

const LIMITS = {
  '/2/httpapi': { maxBytesExclusive: 1_000_000, maxEventsExclusive: 2000, eps: 30, windowMs: 1000 },
  '/batch': { maxBytesExclusive: 20_000_001, maxEventsExclusive: 2001, eps: 1000, windowMs: 30_000 },
} as const;
const IDENTIFY_MAX_BYTES_EXCLUSIVE = 1_000_000;
const IDENTIFY_MAX_ITEMS_EXCLUSIVE = 2001;
const DEDUPE_WINDOW_MS = 7 * 24 * 3600 * 1000;
const PLACEHOLDERS = new Set(['anonymous', 'nil', 'none', 'null', 'n/a', 'na', 'undefined', 'unknown', '', '0', '-1', '00000000-0000-0000-0000-000000000000']);

type Obj = Record<string, unknown>;
const EMPTY = Buffer.alloc(0);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function addIndex(map: Record<string, number[]>, field: string, i: number): void {
  (map[field] ??= []).push(i);
}

export function createAmplitudeIngestionEmulator(options: AmplitudeIngestionEmulatorOptions): AmplitudeIngestionEmulator {
  const faults = options.faults ?? new FaultScript();
  const now = options.now ?? Date.now;
  const validate = options.validate ?? true;
  const countOnly = options.countOnly ?? false;
  const keyMarker = Buffer.from(`"api_key":${JSON.stringify(options.apiKey)}`);
  const events: StoredAmplitudeEvent[] = [];
  const requests: IngestionRequestRecord[] = [];
  /** When each insert_id was first accepted, per device (or user): Amplitude dedupes per id within 7 days. */
  const seen = new Map<string, Map<string, number>>();
  const userProperties = new Map<string, Record<string, unknown>>();
  const scriptedThrottle = new Map<string, number>();
  const quota = new Set<string>();
  const silenced = new Set<string>();
  const rate = new Map<string, number[]>();
  let count = 0;
  let duplicates = 0;
  let identifications = 0;

  /** Ids throttled by script (consuming one request each) or by rate. */
  const throttledIds = (ids: Set<string>, path: '/2/httpapi' | '/batch' | '/identify', perId: Map<string, number>): Set<string> => {
    const out = new Set<string>();
    for (const id of ids) {
      const left = scriptedThrottle.get(id);
      if (left !== undefined && left > 0) {
        out.add(id);
        if (left <= 1) scriptedThrottle.delete(id);
        else scriptedThrottle.set(id, left - 1);
      }
    }
    if (options.rateLimits && path !== '/identify') {
      const lim = LIMITS[path];
      const t = now();
      for (const [id, n] of perId) {
        const times = (rate.get(id) ?? []).filter((x) => x > t - lim.windowMs);
        if (times.length + n > lim.eps * (lim.windowMs / 1000)) out.add(id);
        rate.set(id, times);
      }
    }
    return out;
  };

  const recordRate = (perId: Map<string, number>): void => {
    if (!options.rateLimits) return;
    const t = now();
    for (const [id, n] of perId) {
      const times = rate.get(id) ?? [];
      for (let k = 0; k < n; k++) times.push(t);
      rate.set(id, times);
    }
  };

  /** `validate: false`: the request's events counted, not parsed (see the option). */
  const countEvents = (path: '/2/httpapi' | '/batch', body: CountedBody): { status: number; body: Obj; store?: () => void; items: number } => {
    if (body.bytes >= LIMITS[path].maxBytesExclusive) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: 0 };
    if (body.head.indexOf(keyMarker) === -1) return { status: 400, body: { code: 400, error: 'Invalid API key' }, items: 0 };
    const n = body.events;
    if (n === 0) return { status: 400, body: { code: 400, error: 'Request missing required field', missing_field: 'events' }, items: 0 };
    if (n >= LIMITS[path].maxEventsExclusive) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: n };
    const store = (): void => {
      count += n;
    };
    return { status: 200, body: { code: 200, events_ingested: n, payload_size_bytes: body.bytes, server_upload_time: now() }, store, items: n };
  };

  const handleEvents = (path: '/2/httpapi' | '/batch', raw: Buffer): { status: number; body: Obj; store?: () => void; items: number; minIdLength?: number } => {
    const lim = LIMITS[path];
    if (raw.length >= lim.maxBytesExclusive) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: 0 };
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return { status: 400, body: { code: 400, error: 'Invalid JSON request body' }, items: 0 };
    }
    if (!isObj(body)) return { status: 400, body: { code: 400, error: 'Invalid JSON request body' }, items: 0 };
    if (typeof body['api_key'] !== 'string' || body['api_key'] === '') {
      return { status: 400, body: { code: 400, error: 'Request missing required field', missing_field: 'api_key' }, items: 0 };
    }
    if (body['api_key'] !== options.apiKey) return { status: 400, body: { code: 400, error: 'Invalid API key' }, items: 0 };
    const list = body['events'];
    if (!Array.isArray(list) || list.length === 0) {
      return { status: 400, body: { code: 400, error: 'Request missing required field', missing_field: 'events' }, items: 0 };
    }
    if (list.length >= lim.maxEventsExclusive) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: list.length };
    const opts = body['options'];
    const minIdLength = isObj(opts) && Number.isInteger(opts['min_id_length']) ? (opts['min_id_length'] as number) : undefined;
    const minLen = minIdLength ?? 5;
    const invalid: Record<string, number[]> = {};
    const missing: Record<string, number[]> = {};
    const idLengths: Record<string, number[]> = {};
    const silencedEvents: number[] = [];
    const silencedDevices: string[] = [];
    const perId = new Map<string, number>();
    const idOf: string[] = [];
    const checkId = (field: 'user_id' | 'device_id', v: unknown, i: number): void => {
      if (v === undefined || v === null) return;
      if (typeof v !== 'string' || PLACEHOLDERS.has(v.trim().toLowerCase())) addIndex(invalid, field, i);
      else if (v.length < minLen) addIndex(idLengths, field, i);
    };
    for (let i = 0; i < list.length; i++) {
      const e: unknown = list[i];
      if (!isObj(e)) {
        addIndex(invalid, 'event', i);
        idOf.push('');
        continue;
      }
      if (typeof e['event_type'] !== 'string' || e['event_type'] === '') addIndex(missing, 'event_type', i);
      const uid = e['user_id'];
      const did = e['device_id'];
      if ((uid === undefined || uid === null) && (did === undefined || did === null)) addIndex(missing, 'user_id', i);
      checkId('user_id', uid, i);
      checkId('device_id', did, i);
      const t = e['time'];
      if (t !== undefined && !(typeof t === 'number' && Number.isInteger(t) && t >= 0)) addIndex(invalid, 'time', i);
      const id = typeof did === 'string' ? did : typeof uid === 'string' ? uid : '';
      idOf.push(id);
      if (id && silenced.has(id)) {
        silencedEvents.push(i);
        if (!silencedDevices.includes(id)) silencedDevices.push(id);
      }
      perId.set(id, (perId.get(id) ?? 0) + 1);
    }
    const extra: Obj = minIdLength !== undefined ? { minIdLength } : {};
    if (Object.keys(invalid).length || Object.keys(missing).length || Object.keys(idLengths).length) {
      const b: Obj = { code: 400, error: 'Request missing required field or has invalid field values on some events' };
      if (Object.keys(invalid).length) b['events_with_invalid_fields'] = invalid;
      if (Object.keys(missing).length) b['events_with_missing_fields'] = missing;
      if (Object.keys(idLengths).length) b['events_with_invalid_id_lengths'] = idLengths;
      return { status: 400, body: b, items: list.length, ...extra };
    }
    if (silencedEvents.length) {
      return { status: 400, body: { code: 400, error: 'Events from silenced devices', silenced_devices: silencedDevices, silenced_events: silencedEvents }, items: list.length, ...extra };
    }
    const ids = new Set(perId.keys());
    const overQuota = [...ids].filter((id) => quota.has(id));
    const throttled = throttledIds(ids, path, perId);
    if (overQuota.length || throttled.size) {
      const byKind = (set: Iterable<string>, kind: 'user_id' | 'device_id'): Obj => {
        const o: Obj = {};
        for (const id of set) {
          const e = list[idOf.indexOf(id)] as Obj;
          const isDevice = typeof e['device_id'] === 'string';
          if ((kind === 'device_id') === isDevice) o[id] = perId.get(id) ?? 0;
        }
        return o;
      };
      const throttledEvents = idOf.flatMap((id, i) => (throttled.has(id) ? [i] : []));
      return {
        status: 429,
        body: {
          code: 429,
          error: 'Too many requests for some devices and users',
          eps_threshold: LIMITS[path].eps,
          throttled_devices: byKind(throttled, 'device_id'),
          throttled_users: byKind(throttled, 'user_id'),
          throttled_events: throttledEvents,
          exceeded_daily_quota_users: byKind(overQuota, 'user_id'),
          exceeded_daily_quota_devices: byKind(overQuota, 'device_id'),
        },
        items: list.length,
        ...extra,
      };
    }
    const store = (): void => {
      recordRate(perId);
      const t = now();
      for (const e of list as Obj[]) {
        const insertId = e['insert_id'];
        if (typeof insertId === 'string') {
          const owner = String(e['device_id'] ?? e['user_id']);
          let ids = seen.get(owner);
          if (!ids) {
            ids = new Map();
            seen.set(owner, ids);
          }
          const at = ids.get(insertId);
          if (at !== undefined && t - at < DEDUPE_WINDOW_MS) {
            duplicates++;
            continue;
          }
          ids.set(insertId, t);
        }
        count++;
        if (!countOnly) events.push(e as StoredAmplitudeEvent);
      }
    };
    return {
      status: 200,
      body: { code: 200, events_ingested: list.length, payload_size_bytes: raw.length, server_upload_time: now() },
      store,
      items: list.length,
      ...extra,
    };
  };

  const handleIdentify = (raw: Buffer): { status: number; body: Obj | string; store?: () => void; items: number } => {
    if (raw.length >= IDENTIFY_MAX_BYTES_EXCLUSIVE) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: 0 };
    const form = new URLSearchParams(raw.toString('utf8'));
    const key = form.get('api_key');
    if (!key) return { status: 400, body: 'missing api_key', items: 0 };
    if (key !== options.apiKey) return { status: 400, body: { code: 400, error: 'Invalid API key' }, items: 0 };
    const text = form.get('identification');
    if (text === null) return { status: 400, body: 'missing_event', items: 0 };
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { status: 400, body: 'missing_event: identification is not valid JSON', items: 0 };
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    if (list.length === 0) return { status: 400, body: 'missing_event', items: 0 };
    if (list.length >= IDENTIFY_MAX_ITEMS_EXCLUSIVE) return { status: 413, body: { code: 413, error: 'Payload too large' }, items: list.length };
    const ids: string[] = [];
    for (const [i, item] of list.entries()) {
      if (!isObj(item)) return { status: 400, body: `invalid identification at index ${i}`, items: list.length };
      const id = typeof item['user_id'] === 'string' ? item['user_id'] : typeof item['device_id'] === 'string' ? item['device_id'] : undefined;
      if (id === undefined) return { status: 400, body: `identification ${i}: missing user_id or device_id`, items: list.length };
      if (PLACEHOLDERS.has(id.trim().toLowerCase()) || id.length < 5) return { status: 400, body: `identification ${i}: invalid user_id or device_id`, items: list.length };
      const props = item['user_properties'];
      if (!isObj(props)) return { status: 400, body: `identification ${i}: user_properties must be an object`, items: list.length };
      const ops = Object.keys(props).filter((k) => k.startsWith('$'));
      if (ops.length > 0 && ops.length !== Object.keys(props).length) {
        return { status: 400, body: `identification ${i}: do not mix plain user properties and operations`, items: list.length };
      }
      ids.push(id);
    }
    const idSet = new Set(ids);
    const overQuota = [...idSet].filter((id) => quota.has(id));
    const throttled = throttledIds(idSet, '/identify', new Map());
    if (overQuota.length || throttled.size) {
      return {
        status: 429,
        body: {
          code: 429,
          error: 'Too many requests for some devices and users',
          throttled_users: Object.fromEntries([...throttled].map((id) => [id, 1])),
          exceeded_daily_quota_users: Object.fromEntries(overQuota.map((id) => [id, 1])),
        },
        items: list.length,
      };
    }
    const store = (): void => {
      list.forEach((item: Obj, i) => {
        const id = ids[i] as string;
        const cur = userProperties.get(id) ?? {};
        const props = item['user_properties'] as Obj;
        const keys = Object.keys(props);
        if (keys.length > 0 && keys.every((k) => k.startsWith('$'))) {
          for (const [op, v] of Object.entries(props)) {
            if (!isObj(v)) continue;
            if (op === '$set') {
              Object.assign(cur, v);
            } else if (op === '$setOnce') {
              for (const [k, x] of Object.entries(v)) if (!(k in cur)) cur[k] = x;
            } else if (op === '$unset') {
              for (const k of Object.keys(v)) delete cur[k];
            }
          }
        } else {
          Object.assign(cur, props);
        }
        userProperties.set(id, cur);
        identifications++;
      });
    };
    return { status: 200, body: 'success', store, items: list.length };
  };

  const route: Route = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0] as string;
    if (req.method !== 'POST' || (path !== '/batch' && path !== '/2/httpapi' && path !== '/identify')) return false;
    // validate: false counts ingestion events as the body arrives; anything else reads it whole.
    const counting = !validate && path !== '/identify';
    const receivedAt = Date.now();
    let raw: Buffer = EMPTY;
    let counted: CountedBody | undefined;
    try {
      if (counting) counted = await countBody(req as AsyncIterable<Buffer>, 25 * 1024 * 1024);
      else raw = await readBody(req, 25 * 1024 * 1024);
    } catch {
      requests.push({ path, status: 413, items: 0, bytes: 0, stored: false, receivedAt });
      sendJson(res, 413, { code: 413, error: 'Payload too large' });
      return true;
    }
    const bytes = counted?.bytes ?? raw.length;
    const fault = faults.next();
    if (fault && !fault.afterProcessing) {
      requests.push({ path, status: fault.status, items: 0, bytes, stored: false, receivedAt });
      await sendForced(res, fault);
      return true;
    }
    const out = path === '/identify' ? handleIdentify(raw) : counted ? countEvents(path, counted) : handleEvents(path, raw);
    out.store?.();
    const rec: IngestionRequestRecord = { path, status: fault ? fault.status : out.status, items: out.items, bytes, stored: out.store !== undefined, receivedAt };
    const mil = (out as { minIdLength?: number }).minIdLength;
    if (mil !== undefined) rec.minIdLength = mil;
    requests.push(rec);
    if (fault) {
      await sendForced(res, fault);
      return true;
    }
    if (typeof out.body === 'string') sendText(res, out.status, out.body);
    else sendJson(res, out.status, out.body);
    return true;
  };

  return {
    route,
    faults,
    events,
    get count() {
      return count;
    },
    get duplicates() {
      return duplicates;
    },
    userProperties,
    get identifications() {
      return identifications;
    },
    requests,
    throttle(id, n = 1) {
      scriptedThrottle.set(id, (scriptedThrottle.get(id) ?? 0) + n);
    },
    exceedQuota(id) {
      quota.add(id);
    },
    silence(id) {
      silenced.add(id);
    },
    reset() {
      events.length = 0;
      requests.length = 0;
      seen.clear();
      userProperties.clear();
      scriptedThrottle.clear();
      quota.clear();
      silenced.clear();
      rate.clear();
      count = 0;
      duplicates = 0;
      identifications = 0;
      faults.clear();
    },
  };
}
