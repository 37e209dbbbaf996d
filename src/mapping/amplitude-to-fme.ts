/**
 * One exported Amplitude row -> zero or more FME track events (specs/amplitude.md "One exported event",
 * specs/fme.md "Events API"). Pure: no I/O. `compileMapper` does all parsing of the configuration once;
 * `map(row)` then runs per event (tens of thousands per second), so it does plain property reads, a
 * bounded cache of event type decisions, and serialises each event exactly once.
 *
 * Decisions, in the order `map` applies them:
 * 1. `event_type` must be a non-empty string, else the row is invalid (`no_event_type`).
 * 2. Event type filter on the original Amplitude name: `includeEventTypes` (empty = all), then
 *    `excludeEventTypes` (default `get_treatment`: FME's own impressions would loop). Globs: `*` any run of
 *    characters (also across `/`), `?` one character, `{a,b}` alternatives, `\` escapes; brackets and
 *    parentheses are literal, and a pattern equal to the name always matches. Filtered rows are skipped
 *    (`excluded_event_type`).
 * 3. Identities: one FME event per `identities` rule whose field (`from`, a dot path) holds a usable key.
 *    Strings are sent trimmed (as getTreatment trims keys) and must not be blank; whole numbers below 2^53 become text; null, missing, empty and
 *    blank values are never sent (never as the string "null"); a real string "null" is sent as it is (FME
 *    has no placeholder rule). Per rule not sent, `stats.identities["<problem>_<from>"]` counts it
 *    (`missing_user_id`, `too_long_user_id` (over 250 characters: a cut key would never match
 *    getTreatment), `not_a_string_user_id`, `inexact_number_user_id` (a number JSON.parse rounded)). A row that yields no event at all is skipped once as
 *    `no_identity` when every identity was just missing, or is invalid (`invalid_key`, dead-lettered)
 *    when at least one identity was present but unusable.
 * 4. `timestamp`: `event_time`, else `client_event_time`, else `server_upload_time` (UTC, to epoch ms);
 *    none parses -> invalid (`no_timestamp`). Fallbacks are counted in `stats.timestampFallback`.
 * 5. `eventTypeId` = sanitizeEventTypeId(eventTypePrefix + event_type) (rules.ts). Names that changed are
 *    reported in `stats.renamed` (original event_type -> eventTypeId), at most 1000 of them;
 *    further changed names are counted in `stats.renamedNotListed` (approximate if the cache was cleared).
 * 6. `value` from `valueFrom` (dot path): finite numbers; strings holding a plain decimal number
 *    (`"9.99"`, `"-3"`, `"1e3"`) are accepted too, because SDKs often send revenue as text (counted in
 *    `stats.value.from_string`). Anything else present (non-numeric text, booleans, objects) is left out
 *    and counted (`stats.value.not_numeric`); null or absent is simply no value.
 * 7. `properties` from `properties` selectors (paths.ts): a path without wildcard keeps its full path as
 *    key (`user_properties.plan`, `country`); a wildcard path is keyed from the first wildcard on
 *    (`event_properties.*` gives `plan`, `address.city`, ... : the names users see in Amplitude, which is
 *    what they filter metrics on in FME). Later selectors overwrite earlier ones on the same key. Nested
 *    objects become dot keys, arrays JSON text, then FME's limits apply (rules.ts: 256 characters, 300 keys,
 *    event under 32 KB by dropping the largest properties first), every change counted in `stats.trimmed`.
 *    No properties -> the key is left out.
 */
import type { AmplitudeExportRow } from '../amplitude/types.js';
import { parseAmplitudeTime } from '../amplitude/time.js';
import type { ExportEventsConfig } from '../config/types.js';
import { ConfigError, type ConfigProblem } from '../errors.js';
import {
  MAX_EVENT_BYTES,
  PropertyBag,
  normalizeTrafficType,
  sanitizeEventTypeId,
  shrinkProperties,
  toFmeKey,
  type KeyProblem,
  type TrimCounts,
} from '../fme/rules.js';
import type { FmeEvent, FmePropertyValue } from '../fme/types.js';
import { numberText } from './json-text.js';
import { compileNameGlob, compilePath, compileSelector, type Getter, type Selector } from './paths.js';

export type MapperConfig = Pick<
  ExportEventsConfig,
  'identities' | 'eventTypePrefix' | 'valueFrom' | 'properties' | 'includeEventTypes' | 'excludeEventTypes'
>;

/** An FME event with its JSON, serialised once: the pipeline joins `json`s into request bodies as they are. */
export interface MappedEvent {
  event: FmeEvent;
  json: string;
  /** UTF-8 length of `json`. */
  bytes: number;
  /** Index of the `identities` rule this event is for: stable per row, for delivery positions. */
  identityIndex: number;
}

export type SkipReason = 'excluded_event_type' | 'no_identity';
export type InvalidReason = 'no_event_type' | 'no_timestamp' | 'invalid_key' | 'event_too_large';

export type MapResult =
  | { kind: 'events'; events: MappedEvent[] }
  | { kind: 'skipped'; reason: SkipReason }
  | {
      kind: 'invalid';
      reason: InvalidReason;
      detail: string;
      /**
       * The parsed row no longer holds what the line said (a number JSON.parse rounded): the dead letter must
       * keep the line's text, or it shows the very digits that were refused as another user's id.
       */
      keepText?: true;
    };

export interface MapperStats {
  /** Rows passed to `map`. */
  rows: number;
  /** FME events produced. */
  events: number;
  /** Rows that yield nothing on purpose, by reason. */
  skipped: Partial<Record<SkipReason, number>>;
  /** Rows that cannot be mapped (dead letters), by reason. */
  invalid: Partial<Record<InvalidReason, number>>;
  /** Identities not sent, by `<problem>_<from>` (`missing_user_id`); a row can count under several. */
  identities: Record<string, number>;
  /** Property changes made to fit FME's limits, by kind (counted once per row, not per identity). */
  trimmed: TrimCounts;
  value: { from_string: number; not_numeric: number };
  /** Rows whose timestamp came from a fallback field. */
  timestampFallback: { client_event_time: number; server_upload_time: number };
  /** Original event_type -> eventTypeId, for names the sanitising changed (at most RENAMED_KEPT). */
  renamed: Map<string, string>;
  /** Changed names beyond RENAMED_KEPT. */
  renamedNotListed: number;
  /** Every event type sent, original name -> eventTypeId (at most TYPES_KEPT): names that become one id are told (mergedEventTypes). */
  eventTypes: Map<string, string>;
}

export interface Mapper {
  map(row: AmplitudeExportRow): MapResult;
  /** What `map` counted so far (since the last `takeStats`). */
  readonly stats: MapperStats;
  /** The counts so far, and a fresh start: decode workers hand each batch's counts to the main thread. */
  takeStats(): MapperStats;
}

export function emptyMapperStats(): MapperStats {
  return {
    rows: 0,
    events: 0,
    skipped: {},
    invalid: {},
    identities: {},
    trimmed: {},
    value: { from_string: 0, not_numeric: 0 },
    timestampFallback: { client_event_time: 0, server_upload_time: 0 },
    renamed: new Map(),
    renamedNotListed: 0,
    eventTypes: new Map(),
  };
}

function addCounts(into: Record<string, number>, from: Record<string, number | undefined>): void {
  for (const [k, v] of Object.entries(from)) if (v !== undefined) into[k] = (into[k] ?? 0) + v;
}

/**
 * Per accumulating MapperStats, the names counted in its `renamedNotListed`: each thread's mapper reports a
 * renamed type once, so without this a name renamed on several threads was counted once per thread.
 */
const notListedNames = new WeakMap<MapperStats, Set<string>>();
/** Names remembered for that, at most (past it, a name seen on several threads may count more than once). */
const NOT_LISTED_TRACKED = 100_000;

/** Adds the counts of `from` to `into`; renamed types are merged, at most RENAMED_KEPT listed, the rest counted once each. */
export function addMapperStats(into: MapperStats, from: MapperStats): void {
  into.rows += from.rows;
  into.events += from.events;
  addCounts(into.skipped, from.skipped);
  addCounts(into.invalid, from.invalid);
  addCounts(into.identities, from.identities);
  addCounts(into.trimmed, from.trimmed);
  addCounts(into.value, from.value);
  addCounts(into.timestampFallback, from.timestampFallback);
  for (const [name, id] of from.renamed) {
    if (into.renamed.has(name)) continue;
    if (into.renamed.size < RENAMED_KEPT) {
      into.renamed.set(name, id);
      continue;
    }
    let seen = notListedNames.get(into);
    if (!seen) notListedNames.set(into, (seen = new Set()));
    if (seen.has(name)) continue;
    if (seen.size < NOT_LISTED_TRACKED) seen.add(name);
    into.renamedNotListed++;
  }
  into.renamedNotListed += from.renamedNotListed;
  for (const [name, id] of from.eventTypes) if (into.eventTypes.size < TYPES_KEPT || into.eventTypes.has(name)) into.eventTypes.set(name, id);
}

/** Event types remembered for mergedEventTypes; projects usually have hundreds. */
const TYPES_KEPT = 10_000;

/**
 * eventTypeIds that several Amplitude event types became (`Video: Play` and `Video Play` both give
 * `amp.Video_Play`): FME counts them as one. Id -> the names, sorted.
 */
export function mergedEventTypes(stats: MapperStats): Record<string, string[]> {
  const byId = new Map<string, string[]>();
  for (const [name, id] of stats.eventTypes) byId.set(id, [...(byId.get(id) ?? []), name]);
  return Object.fromEntries([...byId].filter(([, names]) => names.length > 1).map(([id, names]) => [id, names.sort()]));
}

export const RENAMED_KEPT = 1000;
/** Distinct event type names cached; projects usually have hundreds. Past this the cache starts over. */
const TYPE_CACHE_MAX = 10_000;
const TIME_FIELDS = ['event_time', 'client_event_time', 'server_upload_time'] as const;
const DECIMAL_RE = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

interface IdentityPlan {
  index: number;
  trafficType: string;
  from: string;
  get: Getter;
  /** `,"trafficTypeName":"user","key":` */
  jsonPart: string;
  counters: Record<KeyProblem, string>;
}

interface TypePlan {
  id: string;
  /** `{"eventTypeId":"amp.x"` */
  jsonHead: string;
}

function inc(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/**
 * Whether export-events would send events of type `name` (before the prefix) under these filters. The globs must
 * be valid (compileMapper checks them first).
 */
export function passesEventTypeFilter(cfg: Pick<MapperConfig, 'includeEventTypes' | 'excludeEventTypes'>, name: string): boolean {
  const matches = (list: string[]): boolean => list.some((g) => compileNameGlob(g)(name));
  return (cfg.includeEventTypes.length === 0 || matches(cfg.includeEventTypes)) && !matches(cfg.excludeEventTypes);
}

export function compileMapper(cfg: MapperConfig): Mapper {
  const problems: ConfigProblem[] = [];
  const attempt = <T>(path: string, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      problems.push({ path, message: (err as Error).message });
      return undefined;
    }
  };

  if (cfg.identities.length === 0) {
    problems.push({ path: 'exportEvents.identities', message: 'at least one {trafficType, from} rule is needed' });
  }
  const identities: IdentityPlan[] = [];
  cfg.identities.forEach((rule, i) => {
    const trafficType = normalizeTrafficType(rule.trafficType);
    if (trafficType === '') problems.push({ path: `exportEvents.identities[${i}].trafficType`, message: 'must not be empty' });
    const get = attempt(`exportEvents.identities[${i}].from`, () => compilePath(rule.from));
    if (get) {
      identities.push({
        index: i,
        trafficType,
        from: rule.from,
        get,
        jsonPart: `,"trafficTypeName":${JSON.stringify(trafficType)},"key":`,
        counters: { missing: `missing_${rule.from}`, too_long: `too_long_${rule.from}`, not_a_string: `not_a_string_${rule.from}`, inexact_number: `inexact_number_${rule.from}` },
      });
    }
  });
  const getValue = cfg.valueFrom ? attempt('exportEvents.valueFrom', () => compilePath(cfg.valueFrom ?? '')) : undefined;
  const selectors: Selector[] = [];
  cfg.properties.forEach((p, i) => {
    const s = attempt(`exportEvents.properties[${i}]`, () => compileSelector(p));
    if (s) selectors.push(s);
  });
  const compileGlobs = (list: string[], path: string): ((name: string) => boolean) | undefined => {
    if (list.length === 0) return undefined;
    const globs = list.flatMap((g, i) => attempt(`${path}[${i}]`, () => compileNameGlob(g)) ?? []);
    return (name) => globs.some((g) => g(name));
  };
  const include = compileGlobs(cfg.includeEventTypes, 'exportEvents.includeEventTypes');
  const exclude = compileGlobs(cfg.excludeEventTypes, 'exportEvents.excludeEventTypes');
  if (problems.length > 0) throw new ConfigError(problems);

  const prefix = cfg.eventTypePrefix;
  let stats = emptyMapperStats();
  // null = filtered out.
  const typeCache = new Map<string, TypePlan | null>();

  const planType = (name: string): TypePlan | null => {
    const cached = typeCache.get(name);
    if (cached !== undefined) return cached;
    let plan: TypePlan | null = null;
    if ((!include || include(name)) && !(exclude && exclude(name))) {
      const wanted = prefix + name;
      const id = sanitizeEventTypeId(wanted);
      if (id !== wanted && !stats.renamed.has(name)) {
        if (stats.renamed.size < RENAMED_KEPT) stats.renamed.set(name, id);
        else stats.renamedNotListed++;
      }
      if (stats.eventTypes.size < TYPES_KEPT) stats.eventTypes.set(name, id);
      plan = { id, jsonHead: `{"eventTypeId":${JSON.stringify(id)}` };
    }
    if (typeCache.size >= TYPE_CACHE_MAX) typeCache.clear();
    typeCache.set(name, plan);
    return plan;
  };

  const skip = (reason: SkipReason): MapResult => {
    stats.skipped[reason] = (stats.skipped[reason] ?? 0) + 1;
    return { kind: 'skipped', reason };
  };
  const invalid = (reason: InvalidReason, detail: string, keepText = false): MapResult => {
    stats.invalid[reason] = (stats.invalid[reason] ?? 0) + 1;
    return keepText ? { kind: 'invalid', reason, detail, keepText: true } : { kind: 'invalid', reason, detail };
  };

  const readValue = (row: AmplitudeExportRow): number | undefined => {
    if (!getValue) return undefined;
    const v = getValue(row);
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (typeof v === 'string' && DECIMAL_RE.test(v)) {
      const n = Number(v);
      if (Number.isFinite(n)) {
        stats.value.from_string++;
        return n;
      }
    }
    stats.value.not_numeric++;
    return undefined;
  };

  const map = (row: AmplitudeExportRow): MapResult => {
    stats.rows++;
    const name = row.event_type;
    if (typeof name !== 'string' || name.length === 0) {
      return invalid('no_event_type', `event_type is ${JSON.stringify(name) ?? 'missing'}`);
    }
    const type = planType(name);
    if (type === null) return skip('excluded_event_type');

    // Identities.
    const keys: string[] = [];
    const plans: IdentityPlan[] = [];
    let unusable: string | undefined;
    let rounded = false;
    for (const id of identities) {
      const r = toFmeKey(id.get(row));
      if (r.key !== undefined) {
        keys.push(r.key);
        plans.push(id);
      } else {
        inc(stats.identities, id.counters[r.problem]);
        if (r.problem !== 'missing' && unusable === undefined) unusable = `${id.from} is ${r.problem.replace(/_/g, ' ')}`;
        if (r.problem === 'inexact_number') rounded = true;
      }
    }
    if (keys.length === 0) {
      return unusable === undefined ? skip('no_identity') : invalid('invalid_key', `no usable key: ${unusable}`, rounded);
    }

    // Timestamp, with fallbacks.
    let timestamp = parseAmplitudeTime(row.event_time);
    if (timestamp === undefined || timestamp < 0) {
      timestamp = parseAmplitudeTime(row.client_event_time);
      if (timestamp !== undefined && timestamp >= 0) {
        stats.timestampFallback.client_event_time++;
      } else {
        timestamp = parseAmplitudeTime(row.server_upload_time);
        if (timestamp === undefined || timestamp < 0) {
          const seen = TIME_FIELDS.map((f) => `${f}=${JSON.stringify(row[f]) ?? 'missing'}`).join(', ');
          return invalid('no_timestamp', `no parsable event time (${seen})`);
        }
        stats.timestampFallback.server_upload_time++;
      }
    }

    const value = readValue(row);

    // Properties.
    let props: Record<string, FmePropertyValue> | undefined;
    if (selectors.length > 0) {
      const bag = new PropertyBag(stats.trimmed);
      const emit = (k: string, v: unknown): void => bag.add(k, v);
      for (const s of selectors) s(row, emit);
      if (bag.size > 0) props = bag.values;
    }

    // Serialise each event once, by hand in JSON.stringify's key order (the tests prove they agree).
    const mid = `,"timestamp":${numberText(timestamp)}${value === undefined ? '' : `,"value":${value}`}`;
    let tail = props ? `${mid},"properties":${JSON.stringify(props)}}` : `${mid}}`;
    const jsons: string[] = new Array<string>(keys.length);
    const sizes: number[] = new Array<number>(keys.length);
    for (;;) {
      let largest = 0;
      for (let i = 0; i < keys.length; i++) {
        const json = `${type.jsonHead}${plans[i]?.jsonPart ?? ''}${JSON.stringify(keys[i])}${tail}`;
        const bytes = Buffer.byteLength(json);
        jsons[i] = json;
        sizes[i] = bytes;
        if (bytes > largest) largest = bytes;
      }
      if (largest < MAX_EVENT_BYTES) break;
      if (!props) return invalid('event_too_large', `event is ${largest} bytes without properties`);
      shrinkProperties(props, largest, stats.trimmed);
      if (Object.keys(props).length === 0) props = undefined;
      tail = props ? `${mid},"properties":${JSON.stringify(props)}}` : `${mid}}`;
    }

    const events: MappedEvent[] = new Array<MappedEvent>(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const event: FmeEvent = { eventTypeId: type.id, trafficTypeName: plans[i]?.trafficType ?? '', key: keys[i] ?? '', timestamp };
      if (value !== undefined) event.value = value;
      if (props) event.properties = props;
      events[i] = { event, json: jsons[i] ?? '', bytes: sizes[i] ?? 0, identityIndex: plans[i]?.index ?? 0 };
    }
    stats.events += events.length;
    return { kind: 'events', events };
  };

  return {
    map,
    get stats() {
      return stats;
    },
    takeStats() {
      const taken = stats;
      stats = emptyMapperStats();
      return taken;
    },
  };
}
