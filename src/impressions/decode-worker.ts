/** Entry point of a decode worker thread (see decode-pool.ts). */
import { serveTasks } from '../workers/serve-tasks.js';
import { decodeBatch, type DecodeSettings } from './decode.js';
import { decodedBuffers, type DecodeRequest } from './decode-pool.js';

serveTasks(
  (data) => data as DecodeSettings,
  (settings, req: DecodeRequest) => decodeBatch(req.batch, settings, req.scratch),
  decodedBuffers,
);
