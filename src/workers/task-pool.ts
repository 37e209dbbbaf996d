import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AmpFmeError } from '../errors.js';

/**
 * CPU-heavy steps (parsing and mapping records) on worker threads, so that they use the machine's other
 * cores while the main thread reads, batches and sends. Each `run` returns its own promise; callers await
 * them in the order they made them, which keeps the input order whichever worker finishes first. When
 * every worker already has QUEUE tasks, or none has started yet, or there are no workers, the calling
 * thread runs the task itself: it would otherwise only wait. (A worker takes a few hundred ms to start, and
 * its results are applied in input order: tasks queued to it meanwhile would hold up the whole run.)
 */
export interface TaskPool<I, O> {
  /** Worker threads in use (0: the calling thread runs every task). */
  readonly threads: number;
  /** Runs one task. Buffers in `transfer` move to the worker: the caller must not touch them afterwards. */
  run(input: I, transfer: ArrayBuffer[]): Promise<O>;
  /** Resolves once every worker is ready, or as soon as one fails (every task fails then): tests wait for it to know that tasks go to the workers. */
  started(): Promise<void>;
  close(): Promise<void>;
}

/** What a worker posts once it has started and set up (see serveTasks): it gets no task before. */
export interface WorkerReady {
  ready: true;
}

/** What a worker posts back for one task (see serveTasks). */
export type TaskResponse<O> = { id: number; output: O; error?: undefined } | { id: number; output?: undefined; error: { message: string; stack?: string | undefined } };

export interface TaskPoolOptions<I, O> {
  threads: number;
  /** The compiled worker script (it calls serveTasks). Workers are not used when it does not exist. */
  workerUrl: URL;
  /** Handed to each worker as `workerData` (structured-cloned). */
  workerData: unknown;
  /** The same task on the calling thread. */
  inline(input: I): O;
  /** Names the step in errors, e.g. `decoding impressions`. */
  what: string;
  /** The setting that sets `threads` (named when a worker dies), e.g. `pushImpressions.workers`. */
  setting: string;
}

/**
 * Worker threads by default: one per core but one (the main thread reads, batches and sends, and decodes
 * too when the workers are busy), at least one, at most four (past that the main thread is the bottleneck).
 */
export function defaultWorkerThreads(cores: number): number {
  return Math.min(4, Math.max(1, cores - 1));
}

/**
 * A worker's records die young (each is parsed, mapped and dropped): a small young generation is enough,
 * and V8's default lets each worker grow it to tens of MB (about 9 MB of peak RSS saved per worker in the
 * benchmark, for about 3% of speed).
 */
const WORKER_YOUNG_GENERATION_MB = 4;

/** Tasks a worker may have at once: one at work, one waiting, so it never idles between them. */
const QUEUE = 2;

interface Pending<O> {
  resolve(output: O): void;
  reject(err: Error): void;
}

/** Whether `url` is a script a worker can run: compiled JavaScript exists only in dist/, not next to the TypeScript sources tests run. */
function workerScriptExists(url: URL): boolean {
  return existsSync(fileURLToPath(url));
}

export function createTaskPool<I, O>(o: TaskPoolOptions<I, O>): TaskPool<I, O> {
  if (o.threads <= 0 || !workerScriptExists(o.workerUrl)) {
    return {
      threads: 0,
      run: (input) => runInline(o, input),
      started: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
  }
  return new WorkerTaskPool(o);
}

function runInline<I, O>(o: TaskPoolOptions<I, O>, input: I): Promise<O> {
  try {
    return Promise.resolve(o.inline(input));
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

class WorkerTaskPool<I, O> implements TaskPool<I, O> {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly pending: Map<number, Pending<O>>[] = [];
  /** Per worker: whether it has said it is ready (WorkerReady). */
  private readonly ready: boolean[] = [];
  private readonly allStarted: Promise<void>;
  private markStarted: () => void = () => undefined;
  private nextId = 0;
  /** Set once a worker failed: every later task fails with it. */
  private failure: Error | undefined;
  private closing = false;

  constructor(private readonly o: TaskPoolOptions<I, O>) {
    this.threads = o.threads;
    this.allStarted = new Promise((resolve) => (this.markStarted = resolve));
    for (let w = 0; w < o.threads; w++) {
      const worker = new Worker(o.workerUrl, { workerData: o.workerData, resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
      const pending = new Map<number, Pending<O>>();
      const index = w;
      worker.on('message', (res: TaskResponse<O> | WorkerReady) => {
        if ('ready' in res) {
          this.ready[index] = true;
          if (this.ready.every(Boolean)) this.markStarted();
          return;
        }
        const p = pending.get(res.id);
        if (!p) return;
        pending.delete(res.id);
        if (res.error) {
          const err = new Error(`${o.what} failed: ${res.error.message}`);
          if (res.error.stack) err.stack = res.error.stack;
          p.reject(err);
        } else {
          p.resolve(res.output);
        }
      });
      // A worker that dies (out of memory, killed) fails the run, as a known error: the run stops where
      // its last batch was acknowledged, and the message says how to do without workers.
      const fail = (why: string, cause?: unknown): void => {
        const err = new AmpFmeError('WORKER_FAILED', `the worker thread ${o.what} stopped (${why}); run again to go on, or set ${o.setting} to 0 to do this work on the main thread`, { cause });
        this.failure ??= err;
        for (const p of pending.values()) p.reject(err);
        pending.clear();
        this.markStarted();
      };
      worker.on('error', (err) => fail(err.message, err));
      worker.on('exit', (code) => {
        if (!this.closing) fail(`exit code ${code}`);
      });
      this.workers.push(worker);
      this.pending.push(pending);
      this.ready.push(false);
    }
  }

  run(input: I, transfer: ArrayBuffer[]): Promise<O> {
    if (this.failure) return Promise.reject(this.failure);
    // The ready worker with the fewest tasks; none with room: the calling thread.
    let w = -1;
    for (let i = 0; i < this.pending.length; i++) {
      if (this.ready[i] && (w === -1 || (this.pending[i] as Map<number, Pending<O>>).size < (this.pending[w] as Map<number, Pending<O>>).size)) w = i;
    }
    const pending = this.pending[w];
    if (!pending || pending.size >= QUEUE) return runInline(this.o, input);
    const id = this.nextId++;
    return new Promise<O>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      (this.workers[w] as Worker).postMessage({ id, input }, transfer);
    });
  }

  started(): Promise<void> {
    return this.allStarted;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const p of this.pending) {
      for (const q of p.values()) q.reject(new Error(`${this.o.what}: the worker pool was closed`));
      p.clear();
    }
  }
}
