/**
 * FME's rules for track events (specs/fme.md, "Events API"): what the official SDKs validate before they
 * send, and how amp-fme bends Amplitude data to fit. Pure functions, shared by the mapper (to produce legal
 * events) and by the sandbox emulator (to reject illegal ones), so both sides read the same page.
 *
 * Every change made to the data is counted by kind in a `TrimCounts` record, so a run can report it.
 */
import type { FmeEvent, FmePropertyValue } from './types.js';

/** `eventTypeId`: first char alphanumeric, then up to 79 of `-_.:` and alphanumerics (specs/fme.md). */
export const EVENT_TYPE_ID_RE = /^[a-zA-Z0-9][-_.:a-zA-Z0-9]{0,79}$/;
/**
 * What amp-fme makes: "some docs are stricter (63 chars, no `:`)" and the rule is unconfirmed (specs/fme.md),
 * so ids are made to pass both readings. A refused id would cost every event of its type.
 */
export const SAFE_EVENT_TYPE_ID_RE = /^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,62}$/;
export const MAX_EVENT_TYPE_ID_LENGTH = 63;
/** `key`: at most 250 characters. */
export const MAX_KEY_LENGTH = 250;
/** `properties`: at most 300 keys. */
export const MAX_PROPERTIES = 300;
/** `properties`: 256 characters per value (docs). */
export const MAX_PROPERTY_STRING_LENGTH = 256;
/** The whole event must be under 32 KB: SDKs drop larger events. Serialised JSON bytes must be below this. */
export const MAX_EVENT_BYTES = 32 * 1024;
/** Nested objects deeper than this are kept as JSON text instead of being flattened further. */
export const MAX_FLATTEN_DEPTH = 8;
/** Used when nothing usable is left of an event type name. */
export const FALLBACK_EVENT_TYPE_ID = 'event';

/**
 * Kinds of change made to properties:
 * - `string_truncated`: a string (or array/object JSON text) cut to 256 characters;
 * - `value_not_legal`: a value that is not string/finite number/boolean/null, sent as null (as the SDKs do);
 * - `key_limit`: a property left out because the event already had 300;
 * - `size_limit`: a property left out to bring the event under 32 KB (largest first);
 * - `depth_limit`: an object nested deeper than MAX_FLATTEN_DEPTH, kept as JSON text;
 * - `key_collision`: a property that another one with the same key replaced with a different value: a key
 *   with dots next to the nested object it spells (`{"a.b": 1, "a": {"b": 2}}`), or two selectors giving
 *   the same key. Only one value can be sent, and the other must not vanish uncounted.
 */
export type TrimKind = 'string_truncated' | 'value_not_legal' | 'key_limit' | 'size_limit' | 'depth_limit' | 'key_collision';
export type TrimCounts = Partial<Record<TrimKind, number>>;

export function countTrim(counts: TrimCounts, kind: TrimKind, n = 1): void {
  counts[kind] = (counts[kind] ?? 0) + n;
}

// ---------------------------------------------------------------------------------------------------------
// eventTypeId

export function isValidEventTypeId(s: unknown): s is string {
  return typeof s === 'string' && EVENT_TYPE_ID_RE.test(s);
}

function isAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** Characters kept in the ids amp-fme makes: `:` is not, as the stricter docs have it. */
function isIdChar(c: number): boolean {
  return isAlnum(c) || c === 45 || c === 95 || c === 46; // - _ .
}

/** FNV-1a over UTF-16 code units, 8 hex digits: a short stable tag for names that lost information. */
export function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * Turns any name into a legal `eventTypeId`. The result always matches SAFE_EVENT_TYPE_ID_RE (so EVENT_TYPE_ID_RE too).
 * - Accents are removed (`Café` -> `Cafe`, via NFD).
 * - Each run of other characters (spaces, brackets, `:`, unicode, ...) becomes one `_`, which is what
 *   other integrations do with spaces; runs at the very start or end are dropped instead of becoming `_`.
 * - Leading characters that are legal but may not start an id (`_ - .`) are dropped (not prefixed):
 *   `[Amplitude] Start Session` -> `Amplitude_Start_Session`.
 * - If non-ASCII characters were lost, or the name is over 63 characters, `_` + an 8-hex hash of the
 *   original name is appended (within the 63), so distinct names (`注文 done`, `購入 done`; long names that
 *   share their first 63 characters) stay distinct.
 * - Nothing left: `event` (plus the hash when characters were lost).
 */
export function sanitizeEventTypeId(name: string): string {
  if (SAFE_EVENT_TYPE_ID_RE.test(name)) return name;
  let src = name;
  // Strip accents only when there is something non-ASCII to strip (normalize is not free).
  if (/[^\x00-\x7f]/.test(src)) src = src.normalize('NFD').replace(/[\u0300-\u036f]/g, '');
  let out = '';
  let pending = false;
  let lostNonAscii = false;
  for (let i = 0; i < src.length; i++) {
    const c = src.charCodeAt(i);
    if (isIdChar(c)) {
      if (out.length === 0) {
        if (!isAlnum(c)) continue;
      } else if (pending && isAlnum(out.charCodeAt(out.length - 1))) {
        // `amp.[Amplitude] X` -> `amp.Amplitude_X`: no `_` right after a separator that is already there.
        out += '_';
      }
      pending = false;
      out += src[i];
    } else {
      if (c > 127) lostNonAscii = true;
      pending = true;
    }
  }
  if (out.length === 0) out = FALLBACK_EVENT_TYPE_ID;
  if (lostNonAscii || out.length > MAX_EVENT_TYPE_ID_LENGTH) {
    out = `${out.slice(0, MAX_EVENT_TYPE_ID_LENGTH - 9)}_${shortHash(name)}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// trafficTypeName and key

/** SDKs lowercase the traffic type; surrounding spaces are never intended. */
export function normalizeTrafficType(s: string): string {
  return s.trim().toLowerCase();
}

export function isValidTrafficType(s: unknown): s is string {
  return typeof s === 'string' && s.length > 0 && s.trim() === s && s.toLowerCase() === s;
}

export type KeyProblem = 'missing' | 'too_long' | 'not_a_string' | 'inexact_number';

/**
 * Turns an identity value into an FME key, or says why it cannot be one. Strings are trimmed, as the SDKs
 * trim the key of getTreatment (so an impression's key never has surrounding spaces), and must then be
 * non-empty (specs/fme.md); whole numbers become their decimal text, but not one of 2^53 or more (or a fraction):
 * JSON.parse has rounded it, maybe to another user's id (`inexact_number`). A key over 250 characters is refused,
 * not truncated: a cut key never matches getTreatment. null/undefined are `missing`: never the string "null".
 */
export type KeyResult = { key: string; problem?: undefined } | { key?: undefined; problem: KeyProblem };

export function toFmeKey(v: unknown): KeyResult {
  if (typeof v === 'string') {
    const key = v.trim();
    if (key.length === 0) return { problem: 'missing' };
    return key.length > MAX_KEY_LENGTH ? { problem: 'too_long' } : { key };
  }
  if (typeof v === 'number') return Number.isSafeInteger(v) ? { key: String(v) } : { problem: Number.isFinite(v) ? 'inexact_number' : 'not_a_string' };
  if (v === null || v === undefined) return { problem: 'missing' };
  return { problem: 'not_a_string' };
}

export function isValidKey(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_KEY_LENGTH && s.trim().length > 0;
}

// ---------------------------------------------------------------------------------------------------------
// properties

/** Cuts a string to 256 UTF-16 units without splitting a surrogate pair. */
export function capString(s: string): string {
  let end = MAX_PROPERTY_STRING_LENGTH;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return s.slice(0, end);
}

/**
 * Collects properties into a flat, legal record. `add(key, value)` flattens nested objects to dot keys
 * (`address.city`), writes arrays as JSON text, cuts strings to 256 characters, turns illegal values into
 * null, and keeps at most 300 keys (the first 300 added; later adds of an existing key overwrite it).
 * Keys like `__proto__` and `constructor` are ordinary own keys. The record is a plain object rather than
 * one without prototype: V8 keeps those in dictionary mode, which made `JSON.stringify` of every event's
 * properties about twice as slow (benchmark profile); own-key checks keep the prototype out of the way.
 */
export class PropertyBag {
  readonly values: Record<string, FmePropertyValue> = {};
  size = 0;
  constructor(readonly counts: TrimCounts) {}

  add(key: string, value: unknown, depth = 0): void {
    switch (typeof value) {
      case 'string':
        if (value.length > MAX_PROPERTY_STRING_LENGTH) {
          countTrim(this.counts, 'string_truncated');
          this.put(key, capString(value));
        } else {
          this.put(key, value);
        }
        return;
      case 'number':
        if (Number.isFinite(value)) {
          this.put(key, value);
        } else {
          countTrim(this.counts, 'value_not_legal');
          this.put(key, null);
        }
        return;
      case 'boolean':
        this.put(key, value);
        return;
      case 'undefined':
        return;
      case 'object':
        if (value === null) {
          this.put(key, null);
        } else if (Array.isArray(value)) {
          this.addText(key, value);
        } else if (depth >= MAX_FLATTEN_DEPTH) {
          countTrim(this.counts, 'depth_limit');
          this.addText(key, value);
        } else {
          const obj = value as Record<string, unknown>;
          for (const k of Object.keys(obj)) this.add(key === '' ? k : `${key}.${k}`, obj[k], depth + 1);
        }
        return;
      default:
        // bigint, function, symbol: the SDKs send null for anything that is not a legal value.
        countTrim(this.counts, 'value_not_legal');
        this.put(key, null);
    }
  }

  private addText(key: string, value: unknown): void {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      text = undefined;
    }
    if (text === undefined) {
      countTrim(this.counts, 'value_not_legal');
      this.put(key, null);
    } else {
      this.add(key, text);
    }
  }

  private put(key: string, v: FmePropertyValue): void {
    if (!Object.prototype.hasOwnProperty.call(this.values, key)) {
      if (this.size >= MAX_PROPERTIES) {
        countTrim(this.counts, 'key_limit');
        return;
      }
      this.size++;
      if (key === '__proto__') {
        // Plain assignment would set the prototype; define it as an own data property instead.
        Object.defineProperty(this.values, key, { value: v, enumerable: true, writable: true, configurable: true });
        return;
      }
    } else if (!Object.is(this.values[key], v)) {
      countTrim(this.counts, 'key_collision');
    }
    this.values[key] = v;
  }
}

/** Flattens and legalises a whole properties object (keys keep their names; nested objects become dot keys). */
export function legalizeProperties(input: Record<string, unknown>, counts: TrimCounts): Record<string, FmePropertyValue> {
  const bag = new PropertyBag(counts);
  bag.add('', input);
  return bag.values;
}

/**
 * Drops properties, largest serialised entry first (ties: the later one), until the event JSON
 * `bytes` long fits under MAX_EVENT_BYTES. Returns the bytes removed. Deterministic for a given input.
 */
export function shrinkProperties(props: Record<string, FmePropertyValue>, bytes: number, counts: TrimCounts): number {
  const over = bytes - (MAX_EVENT_BYTES - 1);
  if (over <= 0) return 0;
  const keys = Object.keys(props);
  const sizes = keys.map((k, i) => ({ k, i, n: Buffer.byteLength(JSON.stringify(k)) + Buffer.byteLength(JSON.stringify(props[k])) + 2 }));
  sizes.sort((a, b) => b.n - a.n || b.i - a.i);
  let removed = 0;
  for (const s of sizes) {
    if (removed >= over) break;
    delete props[s.k];
    removed += s.n;
    countTrim(counts, 'size_limit');
  }
  return removed;
}

/**
 * Serialises an event, shrinking its properties if the JSON would reach 32 KB. Returns the JSON and its
 * UTF-8 length, or undefined when even without properties the event is too large (cannot happen with
 * legal keys and ids; checked for safety).
 */
export function serializeFitted(event: FmeEvent, counts: TrimCounts): { json: string; bytes: number } | undefined {
  let json = JSON.stringify(event);
  let bytes = Buffer.byteLength(json);
  while (bytes >= MAX_EVENT_BYTES) {
    const props = event.properties;
    if (!props || Object.keys(props).length === 0) return undefined;
    shrinkProperties(props, bytes, counts);
    if (Object.keys(props).length === 0) delete event.properties;
    json = JSON.stringify(event);
    bytes = Buffer.byteLength(json);
  }
  return { json, bytes };
}
