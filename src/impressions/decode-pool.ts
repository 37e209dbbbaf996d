import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { decodeBatch, ITEM_FIELDS, type DecodedBatch, type DecodeScratch, type DecodeSettings } from './decode.js';
import { BATCH_BYTES, type RecordBatch } from './record-batch.js';
import type { ScratchBuffers } from './scratch-buffers.js';

/**
 * Runs decodeBatch on worker threads, so that parsing and mapping impressions use the machine's other
 * cores while the main thread reads, batches and sends. Batches go round-robin to the workers; each
 * `decode` call returns its own promise, and the caller awaits them in the order it made them, which
 * keeps the input order. With no workers, batches are decoded on the calling thread.
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
  id: number;
  batch: RecordBatch;
  scratch: DecodeScratch;
}

const EVENTS_ROOM = BATCH_BYTES + 64 * 1024;
/** Batches a worker may have at once: one being decoded, one waiting, so it never idles between them. */
const WORKER_QUEUE = 2;
const ITEMS_ROOM = ITEM_FIELDS * 8 * 4096;

function lend(scratch: ScratchBuffers): DecodeScratch {
  return { events: scratch.take('events', EVENTS_ROOM), items: scratch.take('items', ITEMS_ROOM) };
}

function recycle(scratch: ScratchBuffers, d: DecodedBatch): void {
  scratch.give('events', d.bytes.buffer as ArrayBuffer);
  scratch.give('items', d.items.buffer as ArrayBuffer);
  scratch.give('records', d.spent.records);
  scratch.give('spans', d.spent.spans);
}

export type DecodeResponse = { id: number; decoded: DecodedBatch; error?: undefined } | { id: number; decoded?: undefined; error: { message: string; stack?: string | undefined } };

interface Pending {
  resolve(d: DecodedBatch): void;
  reject(err: Error): void;
}

/** The compiled worker next to this module; absent when running from the TypeScript sources (tests). */
const WORKER_URL = new URL('./decode-worker.js', import.meta.url);

/** Whether worker threads can be used here: the worker script is compiled JavaScript, so not under a TS runner. */
export function decodeWorkersAvailable(): boolean {
  return existsSync(fileURLToPath(WORKER_URL));
}

/**
 * A pool of `threads` decode workers (0, or when running from the TypeScript sources: the calling thread).
 * `workerUrl`, for tests that run from the sources: the compiled worker script to use instead.
 */
export function createDecodePool(settings: DecodeSettings, threads: number, scratch: ScratchBuffers, workerUrl?: URL): DecodePool {
  if (threads <= 0 || (!workerUrl && !decodeWorkersAvailable())) return inlinePool(settings, scratch);
  return new WorkerPool(settings, threads, scratch, workerUrl ?? WORKER_URL);
}

function inlinePool(settings: DecodeSettings, scratch: ScratchBuffers): DecodePool {
  return {
    threads: 0,
    decode: (batch) => {
      try {
        return Promise.resolve(decodeBatch(batch, settings, lend(scratch)));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },
    recycle: (d) => recycle(scratch, d),
    close: () => Promise.resolve(),
  };
}

class WorkerPool implements DecodePool {
  private readonly workers: Worker[] = [];
  private readonly pending: Map<number, Pending>[] = [];
  private nextId = 0;
  /** Set once a worker failed: every later call fails with it. */
  private failure: Error | undefined;
  private closing = false;

  constructor(
    private readonly settings: DecodeSettings,
    readonly threads: number,
    private readonly scratch: ScratchBuffers,
    workerUrl: URL,
  ) {
    for (let w = 0; w < threads; w++) {
      const worker = new Worker(workerUrl, { workerData: settings });
      const pending = new Map<number, Pending>();
      worker.on('message', (res: DecodeResponse) => {
        const p = pending.get(res.id);
        if (!p) return;
        pending.delete(res.id);
        if (res.error) {
          const err = new Error(`decoding impressions failed: ${res.error.message}`);
          if (res.error.stack) err.stack = res.error.stack;
          p.reject(err);
        } else {
          p.resolve(res.decoded);
        }
      });
      const fail = (err: Error): void => {
        this.failure ??= err;
        for (const p of pending.values()) p.reject(err);
        pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (!this.closing) fail(new Error(`an impressions decode worker stopped unexpectedly (exit code ${code})`));
      });
      this.workers.push(worker);
      this.pending.push(pending);
    }
  }

  decode(batch: RecordBatch): Promise<DecodedBatch> {
    if (this.failure) return Promise.reject(this.failure);
    let w = 0;
    for (let i = 1; i < this.pending.length; i++) if ((this.pending[i] as Map<number, Pending>).size < (this.pending[w] as Map<number, Pending>).size) w = i;
    if ((this.pending[w] as Map<number, Pending>).size >= WORKER_QUEUE) {
      // Every worker has its hands full: the calling thread, otherwise waiting for them, decodes this one.
      try {
        return Promise.resolve(decodeBatch(batch, this.settings, lend(this.scratch)));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const id = this.nextId++;
    return new Promise<DecodedBatch>((resolve, reject) => {
      (this.pending[w] as Map<number, Pending>).set(id, { resolve, reject });
      const req: DecodeRequest = { id, batch, scratch: lend(this.scratch) };
      const transfer = [batch.bytes.buffer as ArrayBuffer, batch.spans.buffer as ArrayBuffer, req.scratch.events, req.scratch.items];
      (this.workers[w] as Worker).postMessage(req, transfer);
    });
  }

  recycle(d: DecodedBatch): void {
    recycle(this.scratch, d);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const p of this.pending) {
      for (const q of p.values()) q.reject(new Error('the decode pool was closed'));
      p.clear();
    }
  }
}
