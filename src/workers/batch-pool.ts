import { availableParallelism } from 'node:os';
import type { RecordBatch } from './record-batch.js';
import { ScratchBuffers, type ScratchKind } from './scratch-buffers.js';
import { createTaskPool, defaultWorkerThreads } from './task-pool.js';

/**
 * A task pool (task-pool.ts) for the decode steps of both commands: each task takes a RecordBatch and two
 * buffers lent for its output (`events`, `items`), and its output hands every buffer back (BatchOutput), moved
 * between threads rather than copied and then reused for later batches (scratch-buffers.ts).
 */
export interface BatchPool<O extends BatchOutput> {
  readonly threads: number;
  /** Decodes `batch`; its buffers are handed over: do not use `batch` afterwards. */
  decode(batch: RecordBatch): Promise<O>;
  /** Gives a decoded batch's buffers back, once nothing reads them any more. */
  recycle(output: O): void;
  /** Resolves once every worker is ready, or one has failed (see TaskPool.started). */
  started(): Promise<void>;
  close(): Promise<void>;
}

/** Buffers lent to a task for its output; either may be replaced by a larger one. */
export interface OutputScratch {
  events: ArrayBuffer;
  items: ArrayBuffer;
}

/** What every decode step's output carries: bytes and per-item numbers written into the lent buffers, and the batch's own buffers. */
export interface BatchOutput {
  bytes: Uint8Array;
  items: Float64Array;
  spent: { records: ArrayBuffer; spans: ArrayBuffer };
}

/** Every buffer of an output, by kind: moved back to the main thread, then reused. */
export function outputBuffers(o: BatchOutput): [ScratchKind, ArrayBuffer][] {
  return [
    ['events', o.bytes.buffer as ArrayBuffer],
    ['items', o.items.buffer as ArrayBuffer],
    ['records', o.spent.records],
    ['spans', o.spent.spans],
  ];
}

/** What a worker receives for one task. */
export interface BatchTask {
  batch: RecordBatch;
  scratch: OutputScratch;
}

export interface BatchPoolOptions<O extends BatchOutput> {
  threads: number;
  workerUrl: URL;
  workerData: unknown;
  /** The task on the calling thread (the worker runs the same). */
  inline(batch: RecordBatch, scratch: OutputScratch): O;
  /** Sizes of the buffers lent for each task's output. */
  eventsBytes: number;
  itemsBytes: number;
  what: string;
  setting: string;
}

export function createBatchPool<O extends BatchOutput>(o: BatchPoolOptions<O>, scratch: ScratchBuffers): BatchPool<O> {
  const tasks = createTaskPool<BatchTask, O>({
    threads: o.threads,
    workerUrl: o.workerUrl,
    workerData: o.workerData,
    inline: (task) => o.inline(task.batch, task.scratch),
    what: o.what,
    setting: o.setting,
  });
  return {
    threads: tasks.threads,
    decode(batch) {
      const task: BatchTask = { batch, scratch: { events: scratch.take('events', o.eventsBytes), items: scratch.take('items', o.itemsBytes) } };
      return tasks.run(task, [batch.bytes.buffer as ArrayBuffer, batch.spans.buffer as ArrayBuffer, task.scratch.events, task.scratch.items]);
    },
    recycle(output) {
      for (const [kind, buf] of outputBuffers(output)) scratch.give(kind, buf);
    },
    started: () => tasks.started(),
    close: () => tasks.close(),
  };
}

/** What a command's decoding needs: its threads, how many batches may be decoding at once, and their buffers. */
export interface DecodingSetup {
  threads: number;
  /** Two per thread (one at work, one queued) and two more that the calling thread decodes itself when the threads are all busy. */
  maxDecoding: number;
  /** Spare buffers for those batches and for the request bodies in flight (two per sending slot), plus two. */
  scratch: ScratchBuffers;
}

/** @param workers the command's `workers` setting (undefined: one per core but one); @param sendingSlots requests in flight at once. */
export function decodingSetup(workers: number | undefined, sendingSlots: number): DecodingSetup {
  const threads = workers ?? defaultWorkerThreads(availableParallelism());
  const maxDecoding = threads * 2 + 2;
  return { threads, maxDecoding, scratch: new ScratchBuffers(Math.max(maxDecoding, sendingSlots * 2) + 2) };
}
