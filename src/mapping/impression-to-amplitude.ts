import * as crypto from 'node:crypto';
import type { AmplitudeIdentification, AmplitudeUploadEvent } from '../amplitude/ingestion-types.js';
import type { ImpressionIdentity, ImpressionPropertyNames } from '../config/types.js';
import type { Impression } from '../impressions/types.js';
import { jsonString, numberText } from './json-text.js';

/**
 * Pure mapping from FME impressions to what Amplitude's ingestion and Identify APIs take. No I/O.
 */

export interface EventMapping {
  eventType: string;
  identity: ImpressionIdentity;
  propertyNames: ImpressionPropertyNames;
  /** `amp-fme/<version>`. */
  library: string;
}

/** Amplitude's default minimum id length (specs/amplitude.md). */
export const AMPLITUDE_MIN_ID_LENGTH = 5;
/** Every string value is capped at 1024 characters (specs/amplitude.md). */
export const AMPLITUDE_MAX_STRING = 1024;

/** Placeholder ids Amplitude rejects (specs/amplitude.md), compared case-insensitively after trimming. */
const PLACEHOLDER_IDS = new Set(['anonymous', 'nil', 'none', 'null', 'n/a', 'na', 'undefined', 'unknown', '', '0', '-1', '00000000-0000-0000-0000-000000000000']);

export function isPlaceholderId(id: string): boolean {
  return PLACEHOLDER_IDS.has(id.trim().toLowerCase());
}

export interface IdProblem {
  reason: 'placeholder_id' | 'id_too_short' | 'id_too_long';
  detail: string;
}

/**
 * Why Amplitude would refuse this id, if it would: placeholders always, ids shorter than the minimum
 * (5, or `amplitude.minIdLength` when set, sent as `options.min_id_length`), and ids over 1024 characters.
 */
export function checkId(id: string, minIdLength: number | undefined): IdProblem | undefined {
  if (isPlaceholderId(id)) return { reason: 'placeholder_id', detail: `key ${JSON.stringify(id)} is a placeholder id that Amplitude rejects` };
  const min = minIdLength ?? AMPLITUDE_MIN_ID_LENGTH;
  if (id.length < min) {
    const hint = minIdLength === undefined ? '; set amplitude.minIdLength to accept shorter ids' : '';
    return { reason: 'id_too_short', detail: `key is ${id.length} characters, Amplitude's minimum is ${min}${hint}` };
  }
  if (id.length > AMPLITUDE_MAX_STRING) return { reason: 'id_too_long', detail: `key is ${id.length} characters, Amplitude caps strings at ${AMPLITUDE_MAX_STRING}` };
  return undefined;
}

/**
 * One-shot `crypto.hash` (Node >= 20.12) where it exists, else createHash: the same digest either way.
 * The digest comes back as text directly: a Buffer result then converted cost twice as much per impression.
 */
const digest: (algorithm: string, data: string, encoding: crypto.BinaryToTextEncoding) => string =
  typeof crypto.hash === 'function'
    ? (algorithm, data, encoding) => crypto.hash(algorithm, data, encoding)
    : (algorithm, data, encoding) => crypto.createHash(algorithm).update(data).digest(encoding);

/**
 * A deterministic `insert_id` from the impression's content: the same impression always gets the same id,
 * so replaying a dump (or overlapping dumps) is deduplicated by Amplitude within 7 days (specs/amplitude.md).
 * Fields are JSON-encoded as a list, so no separator inside a value can make two impressions collide.
 */
export function impressionInsertId(imp: Impression): string {
  return insertIdOf(impressionTexts(imp));
}

/** An impression's fields as JSON text (undefined: absent), each made once for both the insert_id and the event. */
interface ImpressionTexts {
  key: string;
  flag: string;
  treatment: string;
  time: string;
  changeNumber: string | undefined;
  label: string | undefined;
  bucketingKey: string | undefined;
  environment: string | undefined;
}

function impressionTexts(imp: Impression): ImpressionTexts {
  return {
    key: jsonString(imp.key),
    flag: jsonString(imp.flag),
    treatment: jsonString(imp.treatment),
    time: numberText(imp.time),
    changeNumber: imp.changeNumber === undefined ? undefined : numberText(imp.changeNumber),
    label: imp.label === undefined ? undefined : jsonString(imp.label),
    bucketingKey: imp.bucketingKey === undefined ? undefined : jsonString(imp.bucketingKey),
    environment: imp.environment === undefined ? undefined : jsonString(imp.environment),
  };
}

/**
 * The insert_id: the hashed text is exactly `JSON.stringify([key, flag, treatment, time, changeNumber ?? null,
 * label ?? null, bucketingKey ?? null, environment ?? null])`, assembled from the texts the event's JSON uses too.
 */
function insertIdOf(t: ImpressionTexts): string {
  const content = `[${t.key},${t.flag},${t.treatment},${t.time},${t.changeNumber ?? 'null'},${t.label ?? 'null'},${t.bucketingKey ?? 'null'},${t.environment ?? 'null'}]`;
  return `fme-${digest('sha256', content, 'hex').slice(0, 40)}`;
}

/**
 * Identity of an impression for `--coalesce first`: key, flag, treatment and change number, hashed to 16
 * bytes and kept as a 16-character latin1 string, so a run-wide Set stays ~100 bytes per distinct tuple.
 */
export function coalesceKey(imp: Impression): string {
  const content = JSON.stringify([imp.key, imp.flag, imp.treatment, imp.changeNumber ?? null]);
  return digest('md5', content, 'binary'); // 'binary' is latin1
}

/** One impression as one Amplitude event. The impression's own properties override built-ins of the same name, as FME's native integration does (specs/fme.md). */
export function impressionToEvent(imp: Impression, m: EventMapping): AmplitudeUploadEvent {
  const names = m.propertyNames;
  // No prototype: a property named `__proto__` (an impression's own, or a configured name) is then a property
  // like any other, where on a plain object assigning it would set the prototype and the property would be lost.
  const props: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  props[names.flag] = imp.flag;
  props[names.treatment] = imp.treatment;
  if (imp.label !== undefined) props[names.label] = imp.label;
  if (imp.changeNumber !== undefined) props[names.changeNumber] = imp.changeNumber;
  if (imp.environment !== undefined) props[names.environment] = imp.environment;
  if (imp.bucketingKey !== undefined) props[names.bucketingKey] = imp.bucketingKey;
  if (imp.properties) Object.assign(props, imp.properties);
  const event: AmplitudeUploadEvent = {
    event_type: m.eventType,
    time: imp.time,
    insert_id: impressionInsertId(imp),
    library: m.library,
    event_properties: props,
  };
  if (m.identity === 'user_id') event.user_id = imp.key;
  else event.device_id = imp.key;
  return event;
}

/**
 * `JSON.stringify(impressionToEvent(imp, m))`, the same text, written from a template compiled once per
 * mapping: building the event object and serialising it generically cost more than twice as much per
 * impression. Property names that collide, or that JavaScript objects would reorder (integer-like) or
 * treat specially (`__proto__`), take the generic path, in the mapping or in an impression's properties.
 */
const INTEGER_KEY = /^(0|[1-9]\d*)$/;

export function compileEventJson(m: EventMapping): (imp: Impression) => string {
  const n = m.propertyNames;
  const names = [n.flag, n.treatment, n.label, n.changeNumber, n.environment, n.bucketingKey];
  const nameSet = new Set(names);
  const plainName = (k: string): boolean => k !== '__proto__' && !INTEGER_KEY.test(k);
  const templated = nameSet.size === names.length && names.every(plainName);
  /** The impression's own properties as `,"k":v...` after the built-ins, or undefined when they need the generic path. */
  const ownProperties = (p: Record<string, unknown>): string | undefined => {
    for (const k of Object.keys(p)) if (nameSet.has(k) || !plainName(k)) return undefined;
    const text = JSON.stringify(p);
    return text.length > 2 ? `,${text.slice(1, -1)}` : '';
  };
  const key = (name: string): string => `,${JSON.stringify(name)}:`;
  const head = `{"event_type":${JSON.stringify(m.eventType)},"time":`;
  const props = `,"library":${JSON.stringify(m.library)},"event_properties":{${JSON.stringify(n.flag)}:`;
  const treatment = key(n.treatment);
  const label = key(n.label);
  const changeNumber = key(n.changeNumber);
  const environment = key(n.environment);
  const bucketingKey = key(n.bucketingKey);
  const id = m.identity === 'user_id' ? '},"user_id":' : '},"device_id":';
  return (imp) => {
    const own = imp.properties === undefined ? '' : ownProperties(imp.properties);
    if (!templated || own === undefined) return JSON.stringify(impressionToEvent(imp, m));
    const t = impressionTexts(imp);
    let s = `${head}${t.time},"insert_id":"${insertIdOf(t)}"${props}${t.flag}${treatment}${t.treatment}`;
    if (t.label !== undefined) s += label + t.label;
    if (t.changeNumber !== undefined) s += changeNumber + t.changeNumber;
    if (t.environment !== undefined) s += environment + t.environment;
    if (t.bucketingKey !== undefined) s += bucketingKey + t.bucketingKey;
    return `${s}${own}${id}${t.key}}`;
  };
}

/** The latest treatment per flag for one user, as folded so far. */
export type FoldedFlags = Map<string, { treatment: string; time: number }>;

/**
 * Identify mode's fold: the latest treatment per (user, flag) by impression time; on equal times the one
 * read later wins. Memory grows with distinct (user, flag) pairs (~150 bytes each), not with impressions.
 */
export class IdentifyFold {
  private readonly users = new Map<string, FoldedFlags>();
  private pairs = 0;

  add(imp: Impression): void {
    let flags = this.users.get(imp.key);
    if (!flags) {
      flags = new Map();
      this.users.set(imp.key, flags);
    }
    const cur = flags.get(imp.flag);
    if (!cur) {
      flags.set(imp.flag, { treatment: imp.treatment, time: imp.time });
      this.pairs++;
    } else if (imp.time >= cur.time) {
      cur.treatment = imp.treatment;
      cur.time = imp.time;
    }
  }

  get userCount(): number {
    return this.users.size;
  }

  get pairCount(): number {
    return this.pairs;
  }

  entries(): IterableIterator<[string, FoldedFlags]> {
    return this.users.entries();
  }
}

/** One user's folded flags as one identification: `{<prefix><flag>: treatment}` plain user properties. */
export function toIdentification(key: string, flags: FoldedFlags, identity: ImpressionIdentity, prefix: string): AmplitudeIdentification {
  const props: Record<string, string> = {};
  for (const [flag, v] of flags) props[`${prefix}${flag}`] = v.treatment;
  return identity === 'user_id' ? { user_id: key, user_properties: props } : { device_id: key, user_properties: props };
}
