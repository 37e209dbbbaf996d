import { BadDataError } from '../errors.js';

/** One top-level value cut out of the input, not yet parsed. */
export interface RawRecord {
  text: string;
  /** 1-based line where the value starts. */
  line: number;
  /** Index in the enclosing top-level array, when the input is (or the line holds) a JSON array. */
  index: number | undefined;
  /** Set when the splitter already knows the text cannot be a complete value (cut off, broken line). */
  broken?: string;
}

const LF = 0x0a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;
const BOM = [0xef, 0xbb, 0xbf];

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
 * Outside an array, a raw newline inside a string or a `{` at the start of a line while a value is still open
 * ends the broken value there, so one cut-off NDJSON line costs one dead letter, not the rest of the file.
 */
export class RecordSplitter {
  private line = 1;
  private inArray = false;
  private arrayIndex = 0;
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

  /** Feeds one chunk; complete records are appended to `out`. */
  push(chunk: Buffer, out: RawRecord[]): void {
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
    for (; i < n; i++) {
      const c = chunk[i] as number;
      if (this.inValue) {
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (c === BACKSLASH) this.escape = true;
          else if (c === QUOTE) this.inString = false;
          else if (c === LF) {
            this.line++;
            // JSON strings cannot hold a raw newline: outside an array this is a cut-off line.
            if (!this.inArray) {
              this.finish(chunk, start, i, out, 'line ends inside a string');
              continue;
            }
          } else {
            // Plain string content (most of a record's bytes): skip to the next byte that can end the
            // string, start an escape or end the line, without the per-byte state checks.
            while (i + 1 < n) {
              const d = chunk[i + 1];
              if (d === QUOTE || d === BACKSLASH || d === LF) break;
              i++;
            }
          }
          continue;
        }
        if (this.lineStart) {
          this.lineStart = false;
          if (c === OPEN_OBJ && !this.inArray && this.depth > 0) {
            this.finish(chunk, start, i, out, 'value not closed before the next line');
            start = this.begin(i, undefined);
            this.depth = 1;
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
              if (c === CLOSE_ARR && this.inArray) this.inArray = false;
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
        if (c === LF) this.line++;
        continue;
      }
      if (this.inArray) {
        if (c === COMMA) continue;
        if (c === CLOSE_ARR) {
          this.inArray = false;
          continue;
        }
        start = this.begin(i, this.arrayIndex++);
      } else {
        if (c === OPEN_ARR) {
          this.inArray = true;
          this.arrayIndex = 0;
          continue;
        }
        if (c === OPEN_OBJ) {
          // NDJSON fast path: a line that starts with `{` and ends with `}` is taken whole, without a
          // byte-by-byte scan; JSON.parse validates it. Anything else (a line cut by the chunk boundary,
          // a pretty-printed object, a broken line) falls back to the scan below.
          const lf = chunk.indexOf(LF, i);
          if (lf !== -1) {
            let end = lf - 1;
            while (end > i && isSpace(chunk[end] as number)) end--;
            if (chunk[end] === CLOSE_OBJ && end > i) {
              out.push({ text: chunk.toString('utf8', i, end + 1), line: this.line, index: undefined });
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
          `a record starting at line ${this.valueLine} is larger than ${Math.round(this.maxRecordBytes / 1048576)} MB: ` +
            'the input is not a JSON array or newline-delimited JSON of impressions (or a bracket is missing)',
          'RECORD_TOO_LARGE',
        );
      }
    }
  }

  /** Call at end of input: a value still open is reported as cut off. */
  end(out: RawRecord[]): void {
    if (this.inValue) {
      const text = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.partBytes = 0;
      this.inValue = false;
      const rec: RawRecord = { text, line: this.valueLine, index: this.valueIndex };
      // A scalar line without a trailing newline is complete; an open object or string is not.
      if (this.depth > 0 || this.inString) rec.broken = 'input ends inside this record (truncated file?)';
      out.push(rec);
    } else if (this.inArray) {
      out.push({ text: '', line: this.line, index: this.arrayIndex, broken: 'input ends before the JSON array is closed (truncated file?)' });
    }
    this.inArray = false;
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

  private finish(chunk: Buffer, start: number, end: number, out: RawRecord[], broken?: string): void {
    let text: string;
    if (this.parts.length === 0) {
      text = chunk.toString('utf8', start, end);
    } else {
      this.parts.push(chunk.subarray(start, end));
      text = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.partBytes = 0;
    }
    this.inValue = false;
    this.inString = false;
    this.escape = false;
    this.depth = 0;
    this.lineStart = false;
    // The line counter has already moved past a terminating newline; records keep their starting line.
    const rec: RawRecord = { text, line: this.valueLine, index: this.valueIndex };
    if (broken) rec.broken = broken;
    out.push(rec);
  }
}
