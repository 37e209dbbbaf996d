/** Entry point of a decode worker thread (see decode-pool.ts). */
import { outputBuffers, type BatchTask } from '../workers/batch-pool.js';
import { serveTasks } from '../workers/serve-tasks.js';
import { decodeBatch, type DecodeSettings } from './decode.js';

serveTasks(
  (data) => data as DecodeSettings,
  (settings, task: BatchTask) => decodeBatch(task.batch, settings, task.scratch),
  (d) => outputBuffers(d).map(([, buf]) => buf),
);
