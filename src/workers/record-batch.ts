import type { ScratchBuffers } from './scratch-buffers.js';

/**
 * Receives each record (a JSON value, a line) cut out of an input, not yet parsed: bytes `[start, end)` of
 * `bytes`, which is a chunk of the input as read (or a buffer of the reader's own for a record cut across
 * chunks). Neither is written to afterwards, so a sink may keep a reference and copy later.
 */
export interface RecordSink {
  /**
   * @param line 1-based line where the record starts.
   * @param index Index in the enclosing top-level array, when the input is (or the line holds) a JSON array.
   * @param broken Set when the reader already knows the bytes cannot be a complete record (cut off, broken line).
   */
  record(bytes: Buffer, start: number, end: number, line: number, index: number | undefined, broken?: string): void;
}

/**
 * Records cut out of one input (an impressions file, an export archive entry), not yet parsed, packed for
 * a decode worker: their bytes back to back in one ArrayBuffer of their own (so it can be transferred, not
 * copied, to a worker thread) and where each one starts, ends and came from.
 */
export interface RecordBatch {
  /** The input's name as the user gave it (for dead letters). */
  file: string;
  count: number;
  /** The records' bytes, back to back (a view over a scratch buffer). */
  bytes: Uint8Array;
  /** Per record, SPAN_FIELDS numbers: start, end, line, index in the top-level array (-1: none). */
  spans: Float64Array;
  /** Records the reader already knows are broken (cut off, broken line): record number and why. */
  broken: [number, string][];
}

export const SPAN_FIELDS = 4;

/** Around this many bytes of records per batch: big enough that handing one to a worker costs little. */
export const BATCH_BYTES = 512 * 1024;
const RECORD_ROOM = BATCH_BYTES + 64 * 1024;
const SPAN_ROOM = SPAN_FIELDS * 8 * 4096;

/**
 * Collects records from a reader (the impressions splitter, the archive reader) into RecordBatches, in
 * scratch buffers that come back once used.
 */
export class RecordBatchWriter implements RecordSink {
  private bytes: Uint8Array;
  private spans: Float64Array;
  /** Bytes copied into `bytes` so far. */
  private at = 0;
  private count = 0;
  private broken: [number, string][] = [];
  /**
   * Records of the current chunk not copied yet: `src[srcStart, srcEnd)` lands at `at`. Consecutive records
   * of a chunk are copied in one go (a copy per record cost more than the records' parsing on the main thread).
   */
  private src: Buffer | undefined;
  private srcStart = 0;
  private srcEnd = 0;

  constructor(
    private readonly file: string,
    private readonly scratch: ScratchBuffers,
  ) {
    this.bytes = new Uint8Array(scratch.take('records', RECORD_ROOM));
    this.spans = new Float64Array(scratch.take('spans', SPAN_ROOM));
  }

  /** Bytes collected so far: call `take` once this reaches BATCH_BYTES. */
  get size(): number {
    return this.at + (this.srcEnd - this.srcStart);
  }

  record(bytes: Buffer, start: number, end: number, line: number, index: number | undefined, broken?: string): void {
    if (bytes !== this.src || start < this.srcEnd) {
      this.copyPending();
      this.src = bytes;
      this.srcStart = start;
    }
    const at = this.at + (start - this.srcStart);
    this.srcEnd = end;
    if ((this.count + 1) * SPAN_FIELDS > this.spans.length) {
      const next = new Float64Array(this.scratch.take('spans', this.spans.byteLength * 2));
      next.set(this.spans.subarray(0, this.count * SPAN_FIELDS));
      this.scratch.give('spans', this.spans.buffer as ArrayBuffer);
      this.spans = next;
    }
    const s = this.count * SPAN_FIELDS;
    this.spans[s] = at;
    this.spans[s + 1] = at + (end - start);
    this.spans[s + 2] = line;
    this.spans[s + 3] = index ?? -1;
    if (broken !== undefined) this.broken.push([this.count, broken]);
    this.count++;
  }

  private copyPending(): void {
    const src = this.src;
    if (!src) return;
    const len = this.srcEnd - this.srcStart;
    if (this.at + len > this.bytes.length) {
      // More than a batch (a huge record): a bigger buffer for this batch only.
      const next = new Uint8Array(this.scratch.take('records', Math.max(this.bytes.length * 2, this.at + len)));
      next.set(this.bytes.subarray(0, this.at));
      this.scratch.give('records', this.bytes.buffer as ArrayBuffer);
      this.bytes = next;
    }
    src.copy(this.bytes, this.at, this.srcStart, this.srcEnd);
    this.at += len;
    this.src = undefined;
    this.srcStart = 0;
    this.srcEnd = 0;
  }

  /**
   * The records collected since the last call (undefined when there are none), in the writer's buffers;
   * the writer goes on in fresh ones. Give the batch's buffers back to the scratch pool once done with it.
   */
  take(): RecordBatch | undefined {
    if (this.count === 0) return undefined;
    this.copyPending();
    const batch: RecordBatch = {
      file: this.file,
      count: this.count,
      bytes: this.bytes.subarray(0, this.at),
      spans: this.spans.subarray(0, this.count * SPAN_FIELDS),
      broken: this.broken,
    };
    this.bytes = new Uint8Array(this.scratch.take('records', RECORD_ROOM));
    this.spans = new Float64Array(this.scratch.take('spans', SPAN_ROOM));
    this.at = 0;
    this.count = 0;
    this.broken = [];
    return batch;
  }

  /** Gives the writer's own buffers back (at the end of an input). */
  release(): void {
    this.scratch.give('records', this.bytes.buffer as ArrayBuffer);
    this.scratch.give('spans', this.spans.buffer as ArrayBuffer);
    this.bytes = new Uint8Array(0);
    this.spans = new Float64Array(0);
  }
}
