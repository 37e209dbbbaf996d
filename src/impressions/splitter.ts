import { BadDataError } from '../errors.js';
import type { RecordSink } from '../workers/record-batch.js';

const LF = 0x0a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;
const BOM = [0xef, 0xbb, 0xbf];

const EMPTY = Buffer.alloc(0);
/** Bytes of string content scanned one by one before switching to native searches. */
const SHORT_STRING = 32;

/** Where the next newline at or after `from` is, or the chunk's length when there is none. */
function lfAfter(chunk: Buffer, from: number): number {
  const at = chunk.indexOf(LF, from);
  return at === -1 ? chunk.length : at;
}

/** Whether an odd number of backslashes stands right before `at` (not looking before `from`). */
function oddBackslashesBefore(chunk: Buffer, at: number, from: number): boolean {
  let k = at - 1;
  while (k >= from && chunk[k] === BACKSLASH) k--;
  return (at - 1 - k) % 2 === 1;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === LF || c === 0x0d || c === 0x09;
}

/**
 * Cuts a byte stream into top-level JSON values without parsing them, so memory holds one record at a time
 * whatever the file size. Understands:
 *  - a JSON array (`[ {...}, {...} ]`): each element is a record, with its index;
 *  - newline-delimited JSON (`{...}\n{...}`), including lines that are themselves arrays (one webhook body per
 *    line): each element of such a line is a record;
 *  - pretty-printed objects one after another.
 * Outside an array, a raw newline inside a string or a `{` or `[` at the start of a line while a value is still
 * open ends the broken value there, so one cut-off NDJSON line costs one dead letter, not the rest of the file.
 * The same holds inside an array that is one NDJSON line: one that opens after another top-level value, with
 * its first element on the line of its `[` (`[{...},{...}]`). The input's first array, and any array whose `[` ends
 * its line (`[\n{...},\n...`, also when dumps are concatenated), is a whole-file array: newlines between and
 * inside its elements are layout there, not cuts.
 */
export class RecordSplitter {
  private line = 1;
  private inArray = false;
  private arrayIndex = 0;
  /** The open array is one NDJSON line (see the class comment), so a newline it does not close before is a cut. */
  private lineArray = false;
  /** Line the open array began on. */
  private arrayLine = 0;
  /** Whether a top-level value has begun: an array after one may be an NDJSON line, not the file's array. */
  private sawValue = false;
  private inValue = false;
  private depth = 0;
  private inString = false;
  private escape = false;
  private lineStart = false;
  private valueLine = 0;
  private valueIndex: number | undefined;
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes of a UTF-8 byte order mark matched so far at the start of input; -1 once past it. */
  private bomPos = 0;

  /** @param maxRecordBytes a record larger than this is not a dump record: fail instead of buffering it. */
  constructor(private readonly maxRecordBytes = 64 * 1024 * 1024) {}

  /** The line being read: records from it on have not been handed out yet. */
  get currentLine(): number {
    return this.inValue ? this.valueLine : this.line;
  }

  /** Feeds one chunk; complete records go to `out`. */
  push(chunk: Buffer, out: RecordSink): void {
    let i = 0;
    const n = chunk.length;
    // A UTF-8 byte order mark (EF BB BF), possibly split across chunks.
    while (this.bomPos >= 0 && i < n) {
      if (chunk[i] === BOM[this.bomPos]) {
        i++;
        this.bomPos = this.bomPos === 2 ? -1 : this.bomPos + 1;
      } else {
        this.bomPos = -1;
      }
    }
    let start = this.inValue ? 0 : -1;
    /** Position of the next newline at or after the scan (n: none left); found lazily, once per line. */
    let nextLf = -1;
    for (; i < n; i++) {
      if (this.inValue && this.depth > 0 && !this.inString && !this.lineStart) {
        i = this.skipNested(chunk, i, n);
        if (i === n) break;
      }
      const c = chunk[i] as number;
      if (this.inValue) {
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (c === BACKSLASH) this.escape = true;
          else if (c === QUOTE) this.inString = false;
          else if (c === LF) {
            this.line++;
            // JSON strings cannot hold a raw newline: outside an array, or in one that is an NDJSON line, this
            // is a cut-off line (in a whole-file array, the string goes on, and one element is lost at most).
            if (!this.inArray || this.lineArray) {
              this.cut(chunk, start, i, out, 'line ends inside a string');
              continue;
            }
          } else {
            // Plain string content (most of a record's bytes). Short strings: a byte loop to the next byte
            // that can end the string, start an escape or end the line.
            const shortEnd = Math.min(n - 1, i + SHORT_STRING);
            while (i < shortEnd) {
              const d = chunk[i + 1];
              if (d === QUOTE || d === BACKSLASH || d === LF) break;
              i++;
            }
            if (i < shortEnd || i === n - 1) continue;
            // Longer strings: jump to the byte before the quote that ends the string (or the next newline,
            // or the end of the chunk) with native searches. Escapes in between need no state: a quote is
            // escaped exactly when an odd run of backslashes precedes it.
            if (nextLf <= i) nextLf = lfAfter(chunk, i);
            let q = chunk.indexOf(QUOTE, i + 1);
            while (q !== -1 && q < nextLf && oddBackslashesBefore(chunk, q, i)) q = chunk.indexOf(QUOTE, q + 1);
            const stop = q === -1 ? Math.min(nextLf, n) : Math.min(q, nextLf);
            if (stop === n) {
              // The string goes on in the next chunk: carry an escape that the chunk's last byte opened.
              this.escape = oddBackslashesBefore(chunk, n, i);
              i = n - 1;
            } else {
              i = stop - 1;
            }
          }
          continue;
        }
        if (this.lineStart) {
          this.lineStart = false;
          if ((c === OPEN_OBJ || c === OPEN_ARR) && (this.inArray ? this.lineArray : this.depth > 0)) {
            // The next NDJSON line: end the broken value and read this byte again, between values.
            this.cut(chunk, start, i, out, 'value not closed before the next line');
            i--;
            continue;
          }
        }
        switch (c) {
          case QUOTE:
            this.inString = true;
            break;
          case OPEN_OBJ:
          case OPEN_ARR:
            this.depth++;
            break;
          case CLOSE_OBJ:
          case CLOSE_ARR:
            if (this.depth === 0) {
              // A scalar element ended by the array's `]`.
              this.finish(chunk, start, i, out);
              if (c === CLOSE_ARR && this.inArray) this.closeArray();
            } else if (--this.depth === 0) {
              this.finish(chunk, start, i + 1, out);
            }
            break;
          case COMMA:
            if (this.depth === 0 && this.inArray) this.finish(chunk, start, i, out);
            break;
          case LF:
            this.line++;
            if (this.depth === 0 && !this.inArray) this.finish(chunk, start, i, out);
            else this.lineStart = true;
            break;
          default:
            break;
        }
        continue;
      }
      // Between values.
      if (isSpace(c)) {
        if (c === LF) {
          this.line++;
          // `[` then a newline before any element: a multi-line array, not one NDJSON line.
          if (this.lineArray && this.arrayIndex === 0) this.lineArray = false;
          this.lineStart = this.lineArray;
        } else {
          this.lineStart = false;
        }
        continue;
      }
      if (this.inArray) {
        if (this.lineStart) {
          this.lineStart = false;
          if (c === OPEN_ARR || c === OPEN_OBJ) {
            // An NDJSON line array cut between elements: the next line begins here.
            out.record(EMPTY, 0, 0, this.arrayLine, this.arrayIndex, 'array not closed before the next line');
            this.closeArray();
            i--;
            continue;
          }
        }
        if (c === COMMA) continue;
        if (c === CLOSE_ARR) {
          this.closeArray();
          continue;
        }
        start = this.begin(i, this.arrayIndex++);
      } else {
        if (c === OPEN_ARR) {
          this.inArray = true;
          this.lineArray = this.sawValue;
          this.sawValue = true;
          this.arrayLine = this.line;
          this.arrayIndex = 0;
          continue;
        }
        this.sawValue = true;
        if (c === OPEN_OBJ) {
          // NDJSON fast path: a line that starts with `{` and ends with `}` is taken whole, without a
          // byte-by-byte scan; JSON.parse validates it. Anything else (a line cut by the chunk boundary,
          // a pretty-printed object, a broken line) falls back to the scan below.
          const lf = chunk.indexOf(LF, i);
          if (lf !== -1) {
            let end = lf - 1;
            while (end > i && isSpace(chunk[end] as number)) end--;
            if (chunk[end] === CLOSE_OBJ && end > i) {
              out.record(chunk, i, end + 1, this.line, undefined);
              this.line++;
              i = lf;
              continue;
            }
          }
        }
        start = this.begin(i, undefined);
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) this.depth = 1;
      else if (c === QUOTE) this.inString = true;
    }
    if (this.inValue) {
      const rest = chunk.subarray(start);
      this.parts.push(rest);
      this.partBytes += rest.length;
      if (this.partBytes > this.maxRecordBytes) {
        throw new BadDataError(
          `a record starting at line ${this.valueLine} is larger than ${Math.round(this.maxRecordBytes / 1048576)} MB, ` +
            'more than any impression record: a bracket or quote is probably missing there',
          'RECORD_TOO_LARGE',
        );
      }
    }
  }

  /** Call at end of input: a value still open is reported as cut off. */
  end(out: RecordSink): void {
    if (this.inValue) {
      const bytes = Buffer.concat(this.parts);
      this.parts = [];
      this.partBytes = 0;
      this.inValue = false;
      // A scalar line without a trailing newline is complete; an open object or string is not.
      const broken = this.depth > 0 || this.inString ? 'input ends inside this record (truncated file?)' : undefined;
      out.record(bytes, 0, bytes.length, this.valueLine, this.valueIndex, broken);
    } else if (this.inArray) {
      out.record(EMPTY, 0, 0, this.line, this.arrayIndex, 'input ends before the JSON array is closed (truncated file?)');
    }
    this.closeArray();
  }

  /**
   * The common case of the scan, in one tight loop: inside an object or array and outside a string, skips
   * the bytes that cannot end the value (nesting, and short strings that close on this line and in this
   * chunk) and returns where the byte-by-byte scan must look again: a newline, the bracket that closes the
   * value, a string it leaves to the scan (long, or crossing a newline or the chunk's end), or `n`.
   */
  private skipNested(chunk: Buffer, i: number, n: number): number {
    let depth = this.depth;
    while (i < n) {
      const c = chunk[i] as number;
      if (c === QUOTE) {
        // A short string only: longer ones are left to the scan, which jumps over them with native searches.
        const limit = Math.min(n, i + 1 + SHORT_STRING);
        let j = i + 1;
        while (j < limit) {
          const b = chunk[j] as number;
          if (b === QUOTE || b === LF) break;
          j += b === BACKSLASH ? 2 : 1;
        }
        if (j >= limit || chunk[j] !== QUOTE) break;
        i = j + 1;
        continue;
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) depth++;
      else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
        if (depth === 1) break;
        depth--;
      } else if (c === LF) break;
      i++;
    }
    this.depth = depth;
    return i;
  }

  private begin(i: number, index: number | undefined): number {
    this.inValue = true;
    this.depth = 0;
    this.inString = false;
    this.escape = false;
    this.lineStart = false;
    this.valueLine = this.line;
    this.valueIndex = index;
    return i;
  }

  private closeArray(): void {
    this.inArray = false;
    this.lineArray = false;
    this.lineStart = false;
  }

  /** Ends a value broken off by the end of its line; an NDJSON line array it belongs to ends with it. */
  private cut(chunk: Buffer, start: number, end: number, out: RecordSink, why: string): void {
    this.finish(chunk, start, end, out, why);
    if (this.inArray) this.closeArray();
  }

  private finish(chunk: Buffer, start: number, end: number, out: RecordSink, broken?: string): void {
    this.inValue = false;
    this.inString = false;
    this.escape = false;
    this.depth = 0;
    this.lineStart = false;
    // The line counter has already moved past a terminating newline; records keep their starting line.
    if (this.parts.length === 0) {
      out.record(chunk, start, end, this.valueLine, this.valueIndex, broken);
    } else {
      this.parts.push(chunk.subarray(start, end));
      const bytes = Buffer.concat(this.parts);
      this.parts = [];
      this.partBytes = 0;
      out.record(bytes, 0, bytes.length, this.valueLine, this.valueIndex, broken);
    }
  }
}
