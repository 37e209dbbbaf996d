import { createTaskPool, type TaskPool } from '../workers/task-pool.js';
import type { ScratchBuffers } from '../workers/scratch-buffers.js';
import { decodeBatch, ITEM_FIELDS, type DecodedBatch, type DecodeScratch, type DecodeSettings } from './decode.js';
import { BATCH_BYTES, type RecordBatch } from '../workers/record-batch.js';

/**
 * decodeBatch on worker threads (workers/task-pool.ts): parsing and mapping impressions use the machine's
 * other cores while the main thread reads, batches and sends. Results come back in the order batches were
 * given, and every buffer goes round (scratch-buffers.ts) instead of being allocated per batch.
 */
export interface DecodePool {
  /** Worker threads in use (0: the calling thread decodes). */
  readonly threads: number;
  /** Decodes `batch`. Its buffers are handed over to the worker: do not use `batch` afterwards. */
  decode(batch: RecordBatch): Promise<DecodedBatch>;
  /** Gives a decoded batch's buffers back to the scratch pool, once nothing reads them any more. */
  recycle(d: DecodedBatch): void;
  close(): Promise<void>;
}

export interface DecodeRequest {
  batch: RecordBatch;
  scratch: DecodeScratch;
}

const EVENTS_ROOM = BATCH_BYTES + 64 * 1024;
const ITEMS_ROOM = ITEM_FIELDS * 8 * 4096;

/** The compiled worker next to this module. */
const WORKER_URL = new URL('./decode-worker.js', import.meta.url);

/** The buffers of a decoded batch that go back to the main thread (and then to the scratch pool). */
export function decodedBuffers(d: DecodedBatch): ArrayBuffer[] {
  return [d.bytes.buffer as ArrayBuffer, d.items.buffer as ArrayBuffer, d.spent.records, d.spent.spans];
}

/**
 * A pool of `threads` decode workers (0, or when running from the TypeScript sources: the calling thread).
 * `workerUrl`, for tests that run from the sources: the compiled worker script to use instead.
 */
export function createDecodePool(settings: DecodeSettings, threads: number, scratch: ScratchBuffers, workerUrl: URL = WORKER_URL): DecodePool {
  const tasks: TaskPool<DecodeRequest, DecodedBatch> = createTaskPool({
    threads,
    workerUrl,
    workerData: settings,
    inline: (req) => decodeBatch(req.batch, settings, req.scratch),
    what: 'decoding impressions',
  });
  return {
    threads: tasks.threads,
    decode(batch) {
      const req: DecodeRequest = { batch, scratch: { events: scratch.take('events', EVENTS_ROOM), items: scratch.take('items', ITEMS_ROOM) } };
      return tasks.run(req, [batch.bytes.buffer as ArrayBuffer, batch.spans.buffer as ArrayBuffer, req.scratch.events, req.scratch.items]);
    },
    recycle(d) {
      scratch.give('events', d.bytes.buffer as ArrayBuffer);
      scratch.give('items', d.items.buffer as ArrayBuffer);
      scratch.give('records', d.spent.records);
      scratch.give('spans', d.spent.spans);
    },
    close: () => tasks.close(),
  };
}
