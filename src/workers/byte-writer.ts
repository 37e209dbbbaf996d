/**
 * Text written as UTF-8 into one growing buffer, in place: the mapped events of a decode step, handed back
 * to the main thread as a view over a (transferable) buffer lent by the scratch pool.
 */
export class ByteWriter {
  private buf: Buffer;
  /** Bytes written so far: where the next text starts. */
  at = 0;

  constructor(start: ArrayBuffer) {
    this.buf = Buffer.from(start);
  }

  /** Appends `text` as UTF-8; returns its size in bytes. */
  write(text: string): number {
    // A UTF-16 unit is at most 3 UTF-8 bytes: measure exactly only when the cheap bound does not fit.
    if (this.at + text.length * 3 > this.buf.length) {
      const needed = this.at + Buffer.byteLength(text);
      if (needed > this.buf.length) {
        const next = Buffer.from(new ArrayBuffer(Math.max(this.buf.length * 2, needed)));
        this.buf.copy(next, 0, 0, this.at);
        this.buf = next;
      }
    }
    const size = this.buf.write(text, this.at, 'utf8');
    this.at += size;
    return size;
  }

  /** The bytes written, as a view over the writer's (transferable) buffer. */
  take(): Uint8Array {
    return new Uint8Array(this.buf.buffer, 0, this.at);
  }
}
