/**
 * Request bodies made of pre-serialised pieces: `prefix`, the items joined by `separator`, then `suffix`,
 * as UTF-8. Each piece is written straight into one Buffer: joining thousands of strings first and letting
 * the HTTP layer encode (and measure) the result cost several times more, and twice the memory, in the
 * benchmark's profiles.
 */
export interface BodyFrame {
  prefix: string;
  separator: string;
  suffix: string;
}

/** A JSON array of already-serialised values: `[a,b,c]`. */
export const JSON_ARRAY: BodyFrame = { prefix: '[', separator: ',', suffix: ']' };

/**
 * The body `prefix + items.join(separator) + suffix` as UTF-8. `bytes` is the caller's count of its size
 * (batchers count it as they go); a missing or wrong count costs one measuring pass, never a cut body.
 */
export function joinedBody(frame: BodyFrame, items: readonly string[], bytes?: number): Buffer {
  if (bytes !== undefined) {
    const body = writeBody(frame, items, bytes);
    if (body) return body;
  }
  let exact = Buffer.byteLength(frame.prefix) + Buffer.byteLength(frame.suffix) + Math.max(0, items.length - 1) * Buffer.byteLength(frame.separator);
  for (const s of items) exact += Buffer.byteLength(s);
  return writeBody(frame, items, exact) as Buffer;
}

/**
 * Writes the body into `bytes` bytes, or returns undefined when that is not its size. Four spare bytes
 * (the longest UTF-8 character) make the check exact: `Buffer.write` stops before a character that does
 * not fit, so a body larger than `bytes` always ends past `bytes`, never exactly on it.
 */
function writeBody(frame: BodyFrame, items: readonly string[], bytes: number): Buffer | undefined {
  const room = bytes + 4;
  const body = Buffer.allocUnsafe(room);
  let at = body.write(frame.prefix, 0, 'utf8');
  for (let i = 0; i < items.length && at < room; i++) {
    if (i > 0) at += body.write(frame.separator, at, 'utf8');
    if (at < room) at += body.write(items[i] as string, at, 'utf8');
  }
  if (at < room) at += body.write(frame.suffix, at, 'utf8');
  return at === bytes ? body.subarray(0, bytes) : undefined;
}

/**
 * A body built while its items arrive: each item's bytes (encoded by a decode step) are copied into one
 * growing Buffer at once, so a batch being filled holds bytes outside the JS heap rather than thousands of
 * strings that every young-generation GC copies (that copying cost ~1 s per 1M events in the
 * push-impressions benchmark).
 */
export class BodyBuilder {
  private buf: Buffer;
  private at: number;
  private items = 0;
  private readonly separatorBytes: number;
  private readonly suffixBytes: number;

  /** @param initial the starting size in bytes, or a buffer to write into (reused from an earlier body); it grows as needed. */
  constructor(
    private readonly frame: BodyFrame,
    initial: number | ArrayBuffer = 512 * 1024,
  ) {
    this.separatorBytes = Buffer.byteLength(frame.separator);
    this.suffixBytes = Buffer.byteLength(frame.suffix);
    const prefixBytes = Buffer.byteLength(frame.prefix);
    this.buf = typeof initial === 'number' || initial.byteLength < prefixBytes ? Buffer.allocUnsafeSlow(Math.max(Number(initial) || 0, prefixBytes)) : Buffer.from(initial);
    this.at = this.buf.write(frame.prefix, 0, 'utf8');
  }

  /** Appends one item already encoded as UTF-8 (`bytes[start, end)`); returns where it starts here. */
  addBytes(bytes: Uint8Array, start: number, end: number): number {
    this.reserve(this.separatorBytes + end - start);
    if (this.items > 0) this.at += this.buf.write(this.frame.separator, this.at, 'utf8');
    const at = this.at;
    this.buf.set(bytes.subarray(start, end), at);
    this.at += end - start;
    this.items++;
    return at;
  }

  /**
   * Appends the suffix and returns the body: a view from the start of a buffer of its own (allocUnsafeSlow,
   * never Node's shared pool), so `body.buffer` can be reused for another body once this one is sent.
   */
  finish(): Buffer {
    this.reserve(this.suffixBytes);
    this.at += this.buf.write(this.frame.suffix, this.at, 'utf8');
    return this.buf.subarray(0, this.at);
  }

  private reserve(bytes: number): void {
    // Room for the suffix is kept too, so `finish` never has to copy the body.
    const needed = this.at + bytes + this.suffixBytes;
    if (needed <= this.buf.length) return;
    const next = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, needed));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
}
