/**
 * Entry point of a decode worker thread (see decode-pool.ts): decodes the batches the main thread posts,
 * one at a time, in the order they arrive, and posts each result back with its buffers transferred.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeBatch, type DecodeSettings } from './decode.js';
import type { DecodeRequest, DecodeResponse } from './decode-pool.js';

const settings = workerData as DecodeSettings;
const port = parentPort;
if (port) {
  port.on('message', (req: DecodeRequest) => {
    let res: DecodeResponse;
    try {
      const decoded = decodeBatch(req.batch, settings, req.scratch);
      res = { id: req.id, decoded };
      // Every buffer goes back to the main thread, moved rather than copied, to be used again.
      port.postMessage(res, [decoded.bytes.buffer as ArrayBuffer, decoded.items.buffer as ArrayBuffer, decoded.spent.records, decoded.spent.spans]);
    } catch (err) {
      res = { id: req.id, error: { message: (err as Error).message, stack: (err as Error).stack } };
      port.postMessage(res);
    }
  });
}
