import { parentPort, workerData } from 'node:worker_threads';
import type { TaskResponse, WorkerReady } from './task-pool.js';

/**
 * The worker side of a TaskPool: runs each task posted by the main thread, in arrival order, and posts the
 * output back with `transfer(output)` moved rather than copied. `setup` runs once with the pool's workerData;
 * then the worker says it is ready (WorkerReady), and only then does the pool give it tasks.
 */
export function serveTasks<S, I, O>(setup: (data: unknown) => S, task: (state: S, input: I) => O, transfer: (output: O) => ArrayBuffer[]): void {
  const port = parentPort;
  if (!port) return;
  // A setup that throws (a bug, not a dying thread) fails each task with its message, as a task would.
  let state: { ok: S } | { error: unknown };
  try {
    state = { ok: setup(workerData) };
  } catch (error) {
    state = { error };
  }
  const ready: WorkerReady = { ready: true };
  port.postMessage(ready);
  port.on('message', ({ id, input }: { id: number; input: I }) => {
    let res: TaskResponse<O>;
    try {
      if ('error' in state) throw state.error;
      const output = task(state.ok, input);
      res = { id, output };
      port.postMessage(res, transfer(output));
    } catch (err) {
      res = { id, error: { message: (err as Error).message, stack: (err as Error).stack } };
      port.postMessage(res);
    }
  });
}
