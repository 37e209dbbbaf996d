import type { Readable } from 'node:stream';

/**
 * The chunks of a byte stream one by one, as the stream produced them. `for await` over a Readable reads
 * everything buffered at once, joined into a new buffer: with a read-ahead of a megabyte that is a fresh
 * megabyte of garbage per read, which piles up outside the heap while worker threads do the parsing.
 * Backpressure: the stream is paused while `highWater` chunks wait. Errors end the iteration by throwing.
 */
export async function* chunksOf(stream: Readable, highWater = 16): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let ended = false;
  let failed: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    if (queue.length >= highWater) stream.pause();
    notify();
  };
  const onEnd = (): void => {
    ended = true;
    notify();
  };
  const onError = (error: unknown): void => {
    failed ??= { error };
    notify();
  };
  const onClose = (): void => {
    // Destroyed without 'end': an error (reported first) or a premature close.
    if (!ended) failed ??= { error: new Error('the stream closed before its end') };
    notify();
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('close', onClose);
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        if (queue.length < highWater / 2 && stream.isPaused()) stream.resume();
        yield chunk;
        continue;
      }
      if (failed) throw failed.error;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onClose);
  }
}
