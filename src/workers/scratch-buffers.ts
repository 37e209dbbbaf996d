/**
 * Byte buffers that go round between the reader, the decode workers and the sender, and come back to be
 * used again: a steady run allocates none. Fresh buffers for every batch would be garbage that the main
 * thread's (lazy) collector lets pile up outside the heap: tens of MB more at the peak on large dumps.
 */
export type ScratchKind = 'records' | 'spans' | 'events' | 'items' | 'bodies';

export class ScratchBuffers {
  private readonly free = new Map<ScratchKind, ArrayBuffer[]>();

  /**
   * @param keep how many spare buffers of each kind to keep (more are left to the collector).
   * @param maxBytes larger buffers (grown for one huge record) are not kept.
   */
  constructor(
    private readonly keep: number,
    private readonly maxBytes = 8 * 1024 * 1024,
  ) {}

  /** A spare buffer of this kind, if there is one (any size). */
  spare(kind: ScratchKind): ArrayBuffer | undefined {
    return this.free.get(kind)?.pop();
  }

  /** A buffer of at least `bytes` bytes (contents undefined). */
  take(kind: ScratchKind, bytes: number): ArrayBuffer {
    const list = this.free.get(kind);
    if (list) {
      for (let i = list.length - 1; i >= 0; i--) {
        const buf = list[i] as ArrayBuffer;
        if (buf.byteLength >= bytes) {
          list.splice(i, 1);
          return buf;
        }
      }
    }
    return new ArrayBuffer(bytes);
  }

  /** Hands a buffer back; views over it must no longer be used. Detached buffers (transferred away) are ignored. */
  give(kind: ScratchKind, buf: ArrayBuffer): void {
    if (buf.byteLength === 0 || buf.byteLength > this.maxBytes) return;
    let list = this.free.get(kind);
    if (!list) {
      list = [];
      this.free.set(kind, list);
    }
    if (list.length < this.keep) list.push(buf);
  }
}
