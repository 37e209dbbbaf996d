import { BodyBuilder, JSON_ARRAY } from '../http/body.js';

/**
 * Cuts a stream of serialised events into request batches by count and by bytes, writing each batch's
 * request body (`[e1,e2,...]`) as events arrive. Deterministic: the same input in the same order gives the
 * same batches, which the checkpoint logic relies on (design.md).
 */
export interface Batch {
  /** The request body: the events as a JSON array, UTF-8. */
  body: Buffer;
  count: number;
  /** Source position of each event (see pipeline/positions.ts). */
  positions: number[];
  /** Where each event's JSON starts in `body`, and its size: for the rare answers that need events one by one. */
  starts: number[];
  sizes: number[];
}

/** The JSON text of event `i` of a batch. */
export function eventJson(batch: Batch, i: number): string {
  const start = batch.starts[i] as number;
  return batch.body.toString('utf8', start, start + (batch.sizes[i] as number));
}

export class Batcher {
  private body: BodyBuilder | undefined;
  private positions: number[] = [];
  private starts: number[] = [];
  private sizes: number[] = [];
  private bytes = 2;

  /** @param spare a buffer of an earlier, delivered batch to write the next body into, if there is one. */
  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
    private readonly spare: () => ArrayBuffer | undefined = () => undefined,
  ) {}

  /**
   * Adds one event (its UTF-8 JSON is `src[start, start + size)`); returns the batch that was full before
   * it, if the event did not fit. An event larger than maxBytes on its own still forms a batch of one (the
   * API decides).
   */
  add(src: Uint8Array, start: number, size: number, position: number): Batch | undefined {
    let full: Batch | undefined;
    const n = this.positions.length;
    if (n > 0 && (n >= this.maxCount || this.bytes + size + 1 > this.maxBytes)) full = this.take();
    this.bytes += size + (this.positions.length > 0 ? 1 : 0);
    this.body ??= new BodyBuilder(JSON_ARRAY, this.spare() ?? Math.min(this.maxBytes + 1024, 1024 * 1024));
    this.starts.push(this.body.addBytes(src, start, start + size));
    this.sizes.push(size);
    this.positions.push(position);
    return full;
  }

  /** The partial batch, if any. */
  flush(): Batch | undefined {
    return this.positions.length > 0 ? this.take() : undefined;
  }

  private take(): Batch {
    const batch: Batch = { body: (this.body as BodyBuilder).finish(), count: this.positions.length, positions: this.positions, starts: this.starts, sizes: this.sizes };
    this.body = undefined;
    this.positions = [];
    this.starts = [];
    this.sizes = [];
    this.bytes = 2;
    return batch;
  }
}
