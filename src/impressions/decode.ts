import type { PushMode } from '../config/types.js';
import { checkId, coalesceKey, compileEventJson, type EventMapping } from '../mapping/impression-to-amplitude.js';
import type { OutputScratch } from '../workers/batch-pool.js';
import { ByteWriter } from '../workers/byte-writer.js';
import { SPAN_FIELDS, type RecordBatch } from '../workers/record-batch.js';
import { readRecord, type ShapeSink } from './shapes.js';
import { IMPRESSION_SHAPES, type Impression, type ImpressionShape } from './types.js';

/**
 * The CPU-heavy part of push-impressions, with no I/O: parse a batch of raw records, recognise the
 * impressions in them, check them, and (event mode) map each one to its Amplitude event's JSON, written
 * into one byte buffer. It runs on decode worker threads (decode-worker.ts) or, with no workers, on the
 * main thread; either way the run applies the results in input order (pipeline/push-impressions.ts).
 */

export interface DecodeSettings {
  mode: PushMode;
  mapping: EventMapping;
  /** `amplitude.minIdLength` in event mode; identify always uses Amplitude's default. */
  minIdLength: number | undefined;
  /** `--coalesce first`: hand back each impression's coalescing key (the run-wide set is the caller's). */
  coalesce: boolean;
  /** Sending lanes: each event gets the lane of its user (`laneOf`). */
  lanes: number;
}

/** The sending lane of a user: FNV-1a over UTF-16 code units, cheap and stable. */
export function laneOf(id: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % lanes;
}

/** Where in the input a record or impression sits, as dead letters show it. */
export type DecodedSource = {
  file: string;
  line: number;
  /** Index in the file's JSON array, if it is one. */
  index?: number;
  /** Index of the impression inside its record, when a record holds several. */
  item?: number;
};

/** A DecodedSource from numbers kept in typed arrays: index and item -1 mean none. */
export function impressionPosition(file: string, line: number, index: number, item: number): DecodedSource {
  const s: DecodedSource = { file, line };
  if (index >= 0) s.index = index;
  if (item >= 0) s.item = item;
  return s;
}

/** A record or impression that cannot be sent, and why (a dead letter, never retriable as it is). */
export interface DecodeReject {
  reason: string;
  detail: string;
  source: DecodedSource;
  payload: unknown;
}

/**
 * Per accepted impression, ITEM_FIELDS numbers: start and size of its event JSON in `bytes` (event mode;
 * unset in identify mode), line, index (-1: none), item (-1: none), time, sending lane.
 */
export const ITEM_FIELDS = 7;

export interface DecodedBatch {
  file: string;
  records: number;
  impressions: number;
  byShape: Record<ImpressionShape, number>;
  /** Oldest and newest impression time read (Infinity and 0 when none). */
  oldest: number;
  newest: number;
  rejects: DecodeReject[];
  /** Impressions accepted, in input order. */
  count: number;
  /** Event mode: the accepted impressions' Amplitude events as UTF-8 JSON, back to back. */
  bytes: Uint8Array;
  items: Float64Array;
  /** Identify mode: the user or device id of each accepted impression (events carry theirs in their JSON). */
  keys: string[];
  /** `coalesce`: each accepted impression's coalescing key. */
  coalesceKeys: string[] | undefined;
  /** Identify mode: each accepted impression's flag and treatment (events are not built). */
  flags: string[];
  treatments: string[];
  /** The batch's own buffers, handed back for reuse. */
  spent: { records: ArrayBuffer; spans: ArrayBuffer };
}

/** A decoder for these settings; the event template is compiled once, not per batch. */
export function createDecoder(s: DecodeSettings): (batch: RecordBatch, scratch: OutputScratch) => DecodedBatch {
  const eventJson = compileEventJson(s.mapping);
  return (batch, scratch) => decodeBatch(batch, s, scratch, eventJson);
}

/** Decodes one batch of records (see the module comment). Throws only on a programming error. */
function decodeBatch(batch: RecordBatch, s: DecodeSettings, scratch: OutputScratch, eventJson: (imp: Impression) => string): DecodedBatch {
  const out: DecodedBatch = {
    file: batch.file,
    records: batch.count,
    impressions: 0,
    byShape: Object.fromEntries(IMPRESSION_SHAPES.map((k) => [k, 0])) as Record<ImpressionShape, number>,
    oldest: Number.POSITIVE_INFINITY,
    newest: 0,
    rejects: [],
    count: 0,
    bytes: new Uint8Array(0),
    items: new Float64Array(0),
    keys: [],
    coalesceKeys: s.coalesce ? [] : undefined,
    flags: [],
    treatments: [],
    spent: { records: batch.bytes.buffer as ArrayBuffer, spans: batch.spans.buffer as ArrayBuffer },
  };
  const text = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
  const writer = s.mode === 'event' ? new ByteWriter(scratch.events) : undefined;
  let items = new Float64Array(scratch.items);
  const broken = new Map(batch.broken);

  // The record being decoded: set per record, so the per-impression path allocates no closures.
  let line = 0;
  let index = -1;
  const sourceOf = (item: number | undefined): DecodedSource => impressionPosition(batch.file, line, index, item ?? -1);

  const accept = (imp: Impression, item: number | undefined): void => {
    if (imp.time < out.oldest) out.oldest = imp.time;
    if (imp.time > out.newest) out.newest = imp.time;
    const problem = checkId(imp.key, s.minIdLength);
    if (problem) {
      const detail = s.mode === 'identify' && problem.reason === 'id_too_short' ? `key is ${imp.key.length} characters; the Identify API takes ids of 5 or more` : problem.detail;
      out.rejects.push({ reason: problem.reason, detail, source: sourceOf(item), payload: imp });
      return;
    }
    if ((out.count + 1) * ITEM_FIELDS > items.length) {
      const next = new Float64Array(Math.max(64 * ITEM_FIELDS, items.length * 2));
      next.set(items);
      items = next;
    }
    const f = out.count * ITEM_FIELDS;
    if (writer) {
      const start = writer.at;
      items[f] = start;
      items[f + 1] = writer.write(eventJson(imp));
    } else {
      out.keys.push(imp.key);
      out.flags.push(imp.flag);
      out.treatments.push(imp.treatment);
    }
    items[f + 2] = line;
    items[f + 3] = index;
    items[f + 4] = item ?? -1;
    items[f + 5] = imp.time;
    items[f + 6] = laneOf(imp.key, s.lanes);
    out.coalesceKeys?.push(coalesceKey(imp));
    out.count++;
  };

  const sink: ShapeSink = {
    impression: (imp, shape, item) => {
      out.impressions++;
      out.byShape[shape]++;
      accept(imp, item);
    },
    invalid: (reason, detail, payload, item) => {
      out.rejects.push({ reason, detail, source: sourceOf(item), payload });
    },
  };

  for (let r = 0; r < batch.count; r++) {
    const at = r * SPAN_FIELDS;
    const json = text.toString('utf8', batch.spans[at], batch.spans[at + 1]);
    line = batch.spans[at + 2] as number;
    index = batch.spans[at + 3] as number;
    const why = broken.get(r);
    if (why !== undefined) {
      out.rejects.push({ reason: 'invalid_json', detail: why, source: sourceOf(undefined), payload: json });
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch (err) {
      out.rejects.push({ reason: 'invalid_json', detail: (err as Error).message, source: sourceOf(undefined), payload: json });
      continue;
    }
    readRecord(value, sink);
  }
  out.items = items.subarray(0, out.count * ITEM_FIELDS);
  out.bytes = writer ? writer.take() : new Uint8Array(scratch.events, 0, 0);
  return out;
}
