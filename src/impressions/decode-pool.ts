import { createBatchPool, type BatchPool } from '../workers/batch-pool.js';
import { BATCH_BYTES } from '../workers/record-batch.js';
import type { ScratchBuffers } from '../workers/scratch-buffers.js';
import { createDecoder, ITEM_FIELDS, type DecodedBatch, type DecodeSettings } from './decode.js';

/**
 * The impressions decoder (decode.ts) on worker threads (workers/batch-pool.ts): parsing and mapping impressions use the machine's
 * other cores while the main thread reads, batches and sends.
 */
export type DecodePool = BatchPool<DecodedBatch>;

/** The compiled worker next to this module. */
const WORKER_URL = new URL('./decode-worker.js', import.meta.url);

/**
 * A pool of `threads` decode workers (0, or when running from the TypeScript sources: the calling thread).
 * `workerUrl`, for tests that run from the sources: the compiled worker script to use instead.
 */
export function createDecodePool(settings: DecodeSettings, threads: number, scratch: ScratchBuffers, workerUrl: URL = WORKER_URL): DecodePool {
  // Compiled on first use: with workers, this thread may never decode a batch.
  let decode: ReturnType<typeof createDecoder> | undefined;
  return createBatchPool(
    {
      threads,
      workerUrl,
      workerData: settings,
      inline: (batch, out) => (decode ??= createDecoder(settings))(batch, out),
      eventsBytes: BATCH_BYTES + 64 * 1024,
      itemsBytes: ITEM_FIELDS * 8 * 4096,
      what: 'decoding impressions',
      setting: 'pushImpressions.workers',
    },
    scratch,
  );
}
