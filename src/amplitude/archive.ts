/**
 * Reads an Export API archive spooled on disk: a zip whose entries are gzip'd JSON-lines files
 * (specs/amplitude.md). The zip is read through its central directory (yauzl), so STORED or DEFLATED
 * entries, data descriptors and zip64 all work, and memory holds a bounded read-ahead, never the archive.
 *
 * Entries are read in file-name order and lines in file order: the pipeline numbers batches by position
 * and checkpoints them, so the same archive must always give the same sequence.
 */
import type { Readable, TransformOptions } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { BadDataError } from '../errors.js';
import { chunksOf } from '../io/chunks.js';
import type { RecordSink } from '../workers/record-batch.js';

/** Consecutive lines of one entry. Blank lines are kept as "" so that numbering stays right. */
export interface LineChunk {
  /** The entry's file name inside the zip. */
  entry: string;
  /** 1-based line number of `lines[0]` within the entry. */
  firstLine: number;
  lines: string[];
}

export interface ReadArchiveOptions {
  /** Most lines per chunk. */
  chunkLines?: number;
  /** A chunk is also closed once its lines add up to this many characters. */
  chunkChars?: number;
}

const DEFAULT_CHUNK_LINES = 1000;
const DEFAULT_CHUNK_CHARS = 256 * 1024;
// A line longer than this is not an Amplitude event (rows are kilobytes): stop before the string limit.
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** Opens the zip and lists its file entries (directories skipped), sorted by name. */
async function openSorted(path: string): Promise<{ zip: ZipFile; entries: Entry[] }> {
  let zip: ZipFile;
  try {
    zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false });
  } catch (err) {
    throw new BadDataError(`Export archive ${path} is not a readable zip: ${(err as Error).message}`, 'BAD_ARCHIVE', { cause: err });
  }
  try {
    const entries: Entry[] = [];
    for await (const entry of zip.eachEntry()) {
      if (!entry.fileName.endsWith('/')) entries.push(entry);
    }
    // Plain code-unit comparison: the same on every machine, unlike localeCompare.
    entries.sort((a, b) => (a.fileName < b.fileName ? -1 : a.fileName > b.fileName ? 1 : 0));
    return { zip, entries };
  } catch (err) {
    zip.close();
    throw new BadDataError(`Export archive ${path} has a broken central directory: ${(err as Error).message}`, 'BAD_ARCHIVE', { cause: err });
  }
}

/**
 * Yields the lines of every entry, entry by entry (sorted by name), in chunks. An entry that is not valid
 * gzip (or whose zip data is damaged) throws BadDataError naming the entry. The zip is closed however the
 * iteration ends, including when the consumer stops early.
 */
export async function* readArchiveLines(path: string, options: ReadArchiveOptions = {}): AsyncGenerator<LineChunk> {
  const chunkLines = options.chunkLines ?? DEFAULT_CHUNK_LINES;
  const chunkChars = options.chunkChars ?? DEFAULT_CHUNK_CHARS;
  let chunk: LineChunk = { entry: '', firstLine: 1, lines: [] };
  let chars = 0;
  let ready: LineChunk[] = [];
  const close = (): void => {
    if (chunk.lines.length > 0) ready.push(chunk);
    chunk = { entry: chunk.entry, firstLine: 1, lines: [] };
    chars = 0;
  };
  const sink: LineSink = {
    entry(name) {
      chunk = { entry: name, firstLine: 1, lines: [] };
      chars = 0;
    },
    record(bytes, start, end, line) {
      if (chunk.lines.length === 0) chunk.firstLine = line;
      const text = bytes.toString('utf8', start, end);
      chunk.lines.push(text);
      chars += text.length;
      if (chunk.lines.length >= chunkLines || chars >= chunkChars) close();
    },
  };
  for await (const entryEnded of readArchiveRecords(path, sink)) {
    if (entryEnded) close();
    const out = ready;
    ready = [];
    yield* out;
  }
}

/** Receives each line (bytes without the line break, see RecordSink) and, first, the entry it belongs to. */
export interface LineSink extends RecordSink {
  entry(name: string): void;
  /**
   * An entry that cannot be read to its end (see DamagedEntryError): reading goes on with the next entry.
   * Without this, the error ends the reading.
   */
  damaged?(error: DamagedEntryError): void;
}

/**
 * An entry that cannot be read to its end: not gzip, damaged inside, or not JSON lines. Lines before `line`
 * were read and handed over; nothing from `line` on can be.
 */
export class DamagedEntryError extends BadDataError {
  constructor(
    readonly entry: string,
    readonly line: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, 'BAD_ARCHIVE_ENTRY', options);
  }
}

/**
 * Reads every entry (sorted by name) into `sink`, line by line, and yields after each chunk of input that
 * was read (false) and after each entry's last line (true), so the caller can take what `sink` collected.
 * Blank lines are records too (empty), so line numbers stay right. An entry that is not valid gzip (or
 * whose zip data is damaged) is a DamagedEntryError: passed to `sink.damaged` if it has one, else thrown.
 * The zip is closed however the iteration ends, including when the consumer stops early.
 */
export async function* readArchiveRecords(path: string, sink: LineSink): AsyncGenerator<boolean> {
  const { zip, entries } = await openSorted(path);
  try {
    for (const entry of entries) {
      sink.entry(entry.fileName);
      try {
        yield* readEntryLines(zip, entry, sink);
      } catch (err) {
        if (!(err instanceof DamagedEntryError) || !sink.damaged) throw err;
        sink.damaged(err);
      }
      yield true;
    }
  } finally {
    zip.close();
  }
}

async function* readEntryLines(zip: ZipFile, entry: Entry, sink: RecordSink): AsyncGenerator<false> {
  const name = entry.fileName;
  // The first line not handed over yet: when the data fails, every line before it was.
  let nextLine = 1;
  // gzip checks its data as a whole only at the end of the entry: damage found there may have begun earlier.
  const fail = (err: unknown): DamagedEntryError =>
    new DamagedEntryError(
      name,
      nextLine,
      `Export archive entry "${name}" is not valid gzip or is damaged (found at line ${nextLine}: ${(err as Error).message}); ` +
        `gzip verifies an entry only as a whole, so the lines read before it may be damaged too`,
      { cause: err },
    );

  let raw: Readable;
  try {
    raw = await zip.openReadStreamPromise(entry);
  } catch (err) {
    throw fail(err);
  }
  // Inflating runs on libuv's thread pool: a read-ahead of 1 MB keeps it busy on another core while this
  // thread splits lines and sends, instead of waiting for each 64 KB chunk.
  const gunzipOptions: ZlibOptions & TransformOptions = { chunkSize: 64 * 1024, readableHighWaterMark: 1024 * 1024 };
  const gunzip = createGunzip(gunzipOptions);
  // A damaged zip stream must fail the gunzip iteration below rather than leave it waiting.
  raw.on('error', (err) => gunzip.destroy(err));
  raw.pipe(gunzip);

  // Lines are found in the bytes (a "\n" byte never occurs inside a UTF-8 sequence) and handed over as
  // byte ranges: decoding them is the consumer's business (often on another thread).
  // The start of a line that continues in the next buffer(s).
  let head: Buffer[] = [];
  let headBytes = 0;
  const push = (bytes: Buffer, start: number, end: number): void => {
    // A CRLF file: the "\r" belongs to the line break.
    const stop = end > start && bytes[end - 1] === 13 ? end - 1 : end;
    // A file written with a UTF-8 byte order mark: JSON.parse refuses it, and the entry's first event would become a
    // dead letter that no retry can send. It is no part of the line (push-impressions and the config skip it too).
    if (nextLine === 1 && stop - start >= 3 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf) start += 3;
    sink.record(bytes, start, stop, nextLine, undefined);
    nextLine++;
  };
  const chunks = chunksOf(gunzip);
  try {
    for (;;) {
      // Only the zip and gunzip streams' errors mean damaged data; the sink's own errors go up as they are.
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (err) {
        throw fail(err);
      }
      if (next.done) break;
      const buf = next.value;
      let start = 0;
      let nl = buf.indexOf(10);
      if (headBytes > 0 && nl !== -1) {
        const joined = Buffer.concat([...head, buf.subarray(0, nl)]);
        head = [];
        headBytes = 0;
        push(joined, 0, joined.length);
        start = nl + 1;
        nl = buf.indexOf(10, start);
      }
      while (nl !== -1) {
        push(buf, start, nl);
        start = nl + 1;
        nl = buf.indexOf(10, start);
      }
      if (start < buf.length) {
        head.push(buf.subarray(start));
        headBytes += buf.length - start;
        if (headBytes > MAX_LINE_BYTES) {
          throw new DamagedEntryError(name, nextLine, `Export archive entry "${name}" has a line longer than ${MAX_LINE_BYTES} bytes at line ${nextLine}: not JSON lines`);
        }
      }
      yield false;
    }
  } finally {
    await chunks.return(undefined);
    raw.unpipe(gunzip);
    raw.destroy();
    gunzip.destroy();
  }
  // The last line may lack its newline; a trailing "\r" alone is the end of a CRLF file cut after CR.
  if (headBytes > 0) {
    const last = Buffer.concat(head);
    push(last, 0, last.length);
  }
}
