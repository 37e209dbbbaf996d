/** Entry point of a decode worker thread (see decode-pool.ts). */
import { outputBuffers, type BatchTask } from '../workers/batch-pool.js';
import { serveTasks } from '../workers/serve-tasks.js';
import { createDecoder, type DecodeSettings } from './decode.js';

serveTasks(
  (data) => createDecoder(data as DecodeSettings),
  (decode, task: BatchTask) => decode(task.batch, task.scratch),
  (d) => outputBuffers(d).map(([, buf]) => buf),
);
