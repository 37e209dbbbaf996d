import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { UsageError } from '../errors.js';
import { withPath } from './file-errors.js';

/**
 * Opens the `--output` file for writing, and waits until it is open: a path that cannot be written (no such
 * folder, no permission) is a usage error naming it, not a crash from an unhandled stream error later.
 */
export async function openOutputFile(path: string): Promise<WriteStream> {
  // stdout carries the --json summary: the events go to a file of their own.
  if (path === '-') throw new UsageError('--output needs a file path: - (stdout) is not supported, give e.g. --output events.ndjson');
  const out = createWriteStream(path);
  try {
    await once(out, 'open');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`cannot write the --output file ${path}: ${e.code ?? e.message}. Give a path in a folder that exists and that you can write to.`);
  }
  // A write that fails later (a full disk, `ulimit -f`) must not be an unhandled 'error' event: it is kept in
  // `out.errored` and thrown, naming the file, by the next writeOutput or by closeOutput.
  out.on('error', () => undefined);
  return out;
}

/** The error a write to `out` failed with, naming the file; undefined while it is fine. */
function outputError(out: WriteStream): Error | null | undefined {
  return out.errored ? withPath(out.errored, String(out.path)) : undefined;
}

/**
 * Writes `chunk` to the `--output` file, waiting for room. Throws once a write has failed: the stream is then
 * destroyed and never drains, so waiting for 'drain' would wait for ever (export-events hung; push-impressions
 * exited 0 with the file cut short and no message).
 */
export async function writeOutput(out: WriteStream, chunk: Uint8Array): Promise<void> {
  const failed = outputError(out);
  if (failed) throw failed;
  if (out.write(chunk)) return;
  // Either it drains, or it fails (and `finished` rejects, also for an error that came before this call). The
  // wait that loses is called off: its listeners would otherwise pile up on the stream, one set per wait.
  const done = new AbortController();
  const drained = once(out, 'drain', { signal: done.signal });
  const ended = finished(out, { signal: done.signal });
  drained.catch(() => undefined);
  ended.catch(() => undefined);
  try {
    await Promise.race([drained, ended]);
  } catch {
    // A failed write: outputError below says which.
  } finally {
    done.abort();
  }
  const late = outputError(out);
  if (late) throw late;
}

/** Ends the `--output` file and waits until it is written and closed; throws if any write failed. */
export async function closeOutput(out: WriteStream): Promise<void> {
  out.end();
  try {
    await finished(out);
  } catch (err) {
    throw withPath(err, String(out.path));
  }
  const failed = outputError(out);
  if (failed) throw failed;
}
