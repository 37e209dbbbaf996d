/** Entry point of an export-rows worker thread (see export-rows-pool.ts). */
import { compileMapper, type MapperConfig } from '../mapping/amplitude-to-fme.js';
import { decodeRows } from '../mapping/export-rows.js';
import { serveTasks } from '../workers/serve-tasks.js';
import { rowsBuffers, type RowsRequest } from './export-rows-pool.js';

serveTasks(
  (data) => compileMapper(data as MapperConfig),
  (mapper, req: RowsRequest) => decodeRows(req.batch, mapper, req.scratch),
  (d) => [d.lines.buffer as ArrayBuffer, ...rowsBuffers(d).map(([, buf]) => buf)],
);
