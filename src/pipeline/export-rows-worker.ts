/** Entry point of an export-rows worker thread (see export-rows-pool.ts). */
import { compileMapper, type MapperConfig } from '../mapping/amplitude-to-fme.js';
import { decodeRows } from '../mapping/export-rows.js';
import { outputBuffers, type BatchTask } from '../workers/batch-pool.js';
import { serveTasks } from '../workers/serve-tasks.js';

serveTasks(
  (data) => compileMapper(data as MapperConfig),
  (mapper, task: BatchTask) => decodeRows(task.batch, mapper, task.scratch),
  (d) => [d.lines.buffer as ArrayBuffer, ...outputBuffers(d).map(([, buf]) => buf)],
);
