import type { OutputScratch } from '../workers/batch-pool.js';
import { ByteWriter } from '../workers/byte-writer.js';
import { SPAN_FIELDS, type RecordBatch } from '../workers/record-batch.js';
import type { AmplitudeExportRow } from '../amplitude/types.js';
import { emptyMapperStats, type Mapper, type MapperStats } from './amplitude-to-fme.js';

/**
 * The CPU-heavy part of export-events, with no I/O: parse a batch of export lines and map each row to its
 * FME events. It runs on worker threads (pipeline/export-rows-pool.ts) or on the main thread; the pipeline
 * applies the results in line order, with positions, checkpoints and dead letters (pipeline/export-events.ts).
 */

/** What became of one line. */
export const LineOutcome = { Blank: 0, InvalidJson: 1, NotAnObject: 2, Skipped: 3, Invalid: 4, Events: 5 } as const;

/** Per line, LINE_FIELDS numbers: line number, LineOutcome, index of its first event, number of events. */
export const LINE_FIELDS = 4;

/** A line that becomes a dead letter (unless an earlier run already reported it). */
export interface RowReject {
  /** The line's index in the batch. */
  at: number;
  reason: string;
  detail: string;
  /** The line's text (not JSON) or the parsed row. */
  payload: unknown;
}

/** Per FME event, EVENT_FIELDS numbers: start and size of its JSON in `bytes`, the identity rule it is for. */
export const EVENT_FIELDS = 3;

export interface DecodedRows {
  /** The archive entry the lines are from. */
  entry: string;
  count: number;
  lines: Float64Array;
  /** The FME events' JSON, UTF-8, back to back, in line order (a view over a scratch buffer). */
  bytes: Uint8Array;
  /** Per FME event, EVENT_FIELDS numbers (see above). */
  items: Float64Array;
  eventCount: number;
  rejects: RowReject[];
  /** What the mapper counted for these lines. */
  stats: MapperStats;
  /** The batch's own buffers, handed back for reuse. */
  spent: { records: ArrayBuffer; spans: ArrayBuffer };
}

export function decodeRows(batch: RecordBatch, mapper: Mapper, scratch: OutputScratch): DecodedRows {
  const text = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
  const lines = new Float64Array(batch.count * LINE_FIELDS);
  const writer = new ByteWriter(scratch.events);
  let events = new Float64Array(scratch.items);
  let eventCount = 0;
  const out: DecodedRows = {
    entry: batch.file,
    count: batch.count,
    lines,
    bytes: new Uint8Array(0),
    items: events,
    eventCount: 0,
    rejects: [],
    stats: emptyMapperStats(),
    spent: { records: batch.bytes.buffer as ArrayBuffer, spans: batch.spans.buffer as ArrayBuffer },
  };
  for (let i = 0; i < batch.count; i++) {
    const start = batch.spans[i * SPAN_FIELDS] as number;
    const end = batch.spans[i * SPAN_FIELDS + 1] as number;
    const f = i * LINE_FIELDS;
    lines[f] = batch.spans[i * SPAN_FIELDS + 2] as number;
    lines[f + 2] = eventCount;
    const line = text.toString('utf8', start, end);
    if (line.trim().length === 0) {
      lines[f + 1] = LineOutcome.Blank;
      continue;
    }
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (err) {
      lines[f + 1] = LineOutcome.InvalidJson;
      out.rejects.push({ at: i, reason: 'invalid_json', detail: (err as Error).message, payload: line });
      continue;
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      lines[f + 1] = LineOutcome.NotAnObject;
      out.rejects.push({ at: i, reason: 'not_an_object', detail: 'the line is JSON but not an event object', payload: line });
      continue;
    }
    const result = mapper.map(row as AmplitudeExportRow);
    if (result.kind === 'skipped') {
      lines[f + 1] = LineOutcome.Skipped;
    } else if (result.kind === 'invalid') {
      lines[f + 1] = LineOutcome.Invalid;
      out.rejects.push({ at: i, reason: result.reason, detail: result.detail, payload: result.keepText ? line : row });
    } else {
      lines[f + 1] = LineOutcome.Events;
      lines[f + 3] = result.events.length;
      for (const e of result.events) {
        if ((eventCount + 1) * EVENT_FIELDS > events.length) {
          const next = new Float64Array(Math.max(1024, events.length * 2));
          next.set(events);
          events = next;
        }
        events[eventCount * EVENT_FIELDS] = writer.at;
        events[eventCount * EVENT_FIELDS + 1] = writer.write(e.json);
        events[eventCount * EVENT_FIELDS + 2] = e.identityIndex;
        eventCount++;
      }
    }
  }
  out.bytes = writer.take();
  out.items = events.subarray(0, eventCount * EVENT_FIELDS);
  out.eventCount = eventCount;
  // This batch's counts, handed over with it (the mapper counts on for the next batch from zero).
  out.stats = mapper.takeStats();
  return out;
}
