import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { UsageError } from '../errors.js';

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
  return out;
}
