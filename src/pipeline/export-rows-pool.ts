import type { ExportEventsConfig } from '../config/types.js';
import { compileMapper, type MapperConfig } from '../mapping/amplitude-to-fme.js';
import { decodeRows, EVENT_FIELDS, type DecodedRows, type RowsScratch } from '../mapping/export-rows.js';
import { BATCH_BYTES, type RecordBatch } from '../workers/record-batch.js';
import type { ScratchBuffers, ScratchKind } from '../workers/scratch-buffers.js';
import { createTaskPool } from '../workers/task-pool.js';

/**
 * decodeRows on worker threads (workers/task-pool.ts): parsing and mapping export rows use the machine's
 * other cores while the main thread unzips, batches, sends and checkpoints. Results come back in the order
 * the batches were given; their buffers go back to the scratch pool.
 */
export interface RowsPool {
  readonly threads: number;
  /** Decodes `batch`; its buffers are handed over: do not use `batch` afterwards. */
  decode(batch: RecordBatch): Promise<DecodedRows>;
  /** Gives a decoded batch's buffers back, once nothing reads them any more. */
  recycle(d: DecodedRows): void;
  close(): Promise<void>;
}

const WORKER_URL = new URL('./export-rows-worker.js', import.meta.url);

/** The mapping settings a worker compiles its own mapper from. */
export function mapperConfig(ec: ExportEventsConfig): MapperConfig {
  const { identities, eventTypePrefix, valueFrom, properties, includeEventTypes, excludeEventTypes } = ec;
  return { identities, eventTypePrefix, valueFrom, properties, includeEventTypes, excludeEventTypes };
}

export function createRowsPool(ec: ExportEventsConfig, threads: number, scratch: ScratchBuffers, workerUrl: URL = WORKER_URL): RowsPool {
  const config = mapperConfig(ec);
  // This thread's own mapper, for the batches it decodes itself (and it checks the settings first).
  const mapper = compileMapper(config);
  const tasks = createTaskPool<RowsRequest, DecodedRows>({
    threads,
    workerUrl,
    workerData: config,
    inline: (req) => decodeRows(req.batch, mapper, req.scratch),
    what: 'mapping export rows',
  });
  return {
    threads: tasks.threads,
    decode(batch) {
      const req: RowsRequest = { batch, scratch: { events: scratch.take('events', EVENTS_ROOM), items: scratch.take('items', ITEMS_ROOM) } };
      return tasks.run(req, [batch.bytes.buffer as ArrayBuffer, batch.spans.buffer as ArrayBuffer, req.scratch.events, req.scratch.items]);
    },
    recycle(d) {
      for (const [kind, buf] of rowsBuffers(d)) scratch.give(kind, buf);
    },
    close: () => tasks.close(),
  };
}

export interface RowsRequest {
  batch: RecordBatch;
  scratch: RowsScratch;
}

// Mapped events are about as large as the rows they come from; buffers grow when not.
const EVENTS_ROOM = BATCH_BYTES + 64 * 1024;
const ITEMS_ROOM = EVENT_FIELDS * 8 * 2048;

/** The buffers of a decoded batch that go back to the main thread (and then to the scratch pool). */
export function rowsBuffers(d: DecodedRows): [ScratchKind, ArrayBuffer][] {
  return [
    ['events', d.bytes.buffer as ArrayBuffer],
    ['items', d.events.buffer as ArrayBuffer],
    ['records', d.spent.records],
    ['spans', d.spent.spans],
  ];
}
