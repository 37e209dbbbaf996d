/**
 * Cuts a stream of serialised events into request batches by count and by bytes. Deterministic: the same
 * input in the same order gives the same batches, which the checkpoint logic relies on (design.md).
 */
export interface Batch {
  /** Serialised events, in input order. */
  jsons: string[];
  /** Request body size: the events plus `[`, `]` and commas. */
  bytes: number;
  /** Source position of each event (see pipeline/positions.ts), parallel to `jsons`. */
  positions: number[];
}

export class Batcher {
  private jsons: string[] = [];
  private positions: number[] = [];
  private bytes = 2;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  /**
   * Adds one event; returns the batch that was full before it, if the event did not fit.
   * An event larger than maxBytes on its own still forms a batch of one (the API decides).
   */
  add(json: string, bytes: number, position: number): Batch | undefined {
    let full: Batch | undefined;
    const extra = bytes + (this.jsons.length > 0 ? 1 : 0);
    if (this.jsons.length > 0 && (this.jsons.length >= this.maxCount || this.bytes + extra > this.maxBytes)) {
      full = this.take();
    }
    this.bytes += bytes + (this.jsons.length > 0 ? 1 : 0);
    this.jsons.push(json);
    this.positions.push(position);
    return full;
  }

  /** The partial batch, if any. */
  flush(): Batch | undefined {
    return this.jsons.length > 0 ? this.take() : undefined;
  }

  get size(): number {
    return this.jsons.length;
  }

  private take(): Batch {
    const batch = { jsons: this.jsons, bytes: this.bytes, positions: this.positions };
    this.jsons = [];
    this.positions = [];
    this.bytes = 2;
    return batch;
  }
}
