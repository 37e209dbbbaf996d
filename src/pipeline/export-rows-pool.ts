import type { ExportEventsConfig } from '../config/types.js';
import { compileMapper, type MapperConfig } from '../mapping/amplitude-to-fme.js';
import { decodeRows, EVENT_FIELDS, type DecodedRows } from '../mapping/export-rows.js';
import { createBatchPool, type BatchPool } from '../workers/batch-pool.js';
import { BATCH_BYTES } from '../workers/record-batch.js';
import type { ScratchBuffers } from '../workers/scratch-buffers.js';

/**
 * decodeRows on worker threads (workers/batch-pool.ts): parsing and mapping export rows use the machine's
 * other cores while the main thread unzips, batches, sends and checkpoints.
 */
export type RowsPool = BatchPool<DecodedRows>;

const WORKER_URL = new URL('./export-rows-worker.js', import.meta.url);

/** The mapping settings a worker compiles its own mapper from. */
export function mapperConfig(ec: ExportEventsConfig): MapperConfig {
  const { identities, eventTypePrefix, valueFrom, properties, includeEventTypes, excludeEventTypes } = ec;
  return { identities, eventTypePrefix, valueFrom, properties, includeEventTypes, excludeEventTypes };
}

/** Checks the mapping settings as the pool will (ConfigError naming each problem), before a run changes any state. */
export function checkMappingSettings(ec: ExportEventsConfig): void {
  compileMapper(mapperConfig(ec));
}

export function createRowsPool(ec: ExportEventsConfig, threads: number, scratch: ScratchBuffers, workerUrl: URL = WORKER_URL): RowsPool {
  const config = mapperConfig(ec);
  // This thread's own mapper, for the batches it decodes itself (and it checks the settings first).
  const mapper = compileMapper(config);
  return createBatchPool(
    {
      threads,
      workerUrl,
      workerData: config,
      inline: (batch, out) => decodeRows(batch, mapper, out),
      // Mapped events are about as large as the rows they come from; buffers grow when not.
      eventsBytes: BATCH_BYTES + 64 * 1024,
      itemsBytes: EVENT_FIELDS * 8 * 2048,
      what: 'mapping export rows',
      setting: 'exportEvents.workers',
    },
    scratch,
  );
}
