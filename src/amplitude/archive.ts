/**
 * Reads an Export API archive spooled on disk: a zip whose entries are gzip'd JSON-lines files
 * (specs/amplitude.md). The zip is read through its central directory (yauzl), so STORED or DEFLATED
 * entries, data descriptors and zip64 all work, and nothing but the current chunk is held in memory.
 *
 * Entries are read in file-name order and lines in file order: the pipeline numbers batches by position
 * and checkpoints them, so the same archive must always give the same sequence.
 */
import type { Readable, TransformOptions } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { BadDataError } from '../errors.js';

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
  const { zip, entries } = await openSorted(path);
  try {
    for (const entry of entries) {
      yield* readEntryLines(zip, entry, chunkLines, chunkChars);
    }
  } finally {
    zip.close();
  }
}

async function* readEntryLines(zip: ZipFile, entry: Entry, chunkLines: number, chunkChars: number): AsyncGenerator<LineChunk> {
  const name = entry.fileName;
  const fail = (err: unknown): BadDataError =>
    err instanceof BadDataError
      ? err
      : new BadDataError(`Export archive entry "${name}" is not valid gzip or is damaged: ${(err as Error).message}`, 'BAD_ARCHIVE_ENTRY', { cause: err });

  let raw: Readable;
  try {
    raw = await zip.openReadStreamPromise(entry);
  } catch (err) {
    throw fail(err);
  }
  // Inflating runs on libuv's thread pool: a read-ahead of 1 MB keeps it busy on another core while this
  // thread parses and maps, instead of waiting for each 64 KB chunk.
  const gunzipOptions: ZlibOptions & TransformOptions = { chunkSize: 64 * 1024, readableHighWaterMark: 1024 * 1024 };
  const gunzip = createGunzip(gunzipOptions);
  // A damaged zip stream must fail the gunzip iteration below rather than leave it waiting.
  raw.on('error', (err) => gunzip.destroy(err));
  raw.pipe(gunzip);

  // Lines are found in the bytes (a "\n" byte never occurs inside a UTF-8 sequence) and each is decoded on
  // its own: several times faster than decoding chunks to strings and scanning those (the benchmark's
  // floor went from about 50,000 to 350,000 lines/s), and every line is a compact string of its own
  // rather than a slice that keeps its whole chunk alive.
  let lines: string[] = [];
  let chars = 0;
  let firstLine = 1;
  let nextLine = 1;
  // The start of a line that continues in the next buffer(s).
  let head: Buffer[] = [];
  let headBytes = 0;
  const push = (bytes: Buffer, start: number, end: number): void => {
    // A CRLF file: the "\r" belongs to the line break.
    const stop = end > start && bytes[end - 1] === 13 ? end - 1 : end;
    const line = bytes.toString('utf8', start, stop);
    lines.push(line);
    chars += line.length;
    nextLine++;
  };
  const full = (): boolean => lines.length >= chunkLines || chars >= chunkChars;
  const take = (): LineChunk => {
    const chunk = { entry: name, firstLine, lines };
    lines = [];
    chars = 0;
    firstLine = nextLine;
    return chunk;
  };
  try {
    for await (const buf of gunzip as AsyncIterable<Buffer>) {
      let start = 0;
      let nl = buf.indexOf(10);
      if (headBytes > 0 && nl !== -1) {
        const joined = Buffer.concat([...head, buf.subarray(0, nl)]);
        head = [];
        headBytes = 0;
        push(joined, 0, joined.length);
        if (full()) yield take();
        start = nl + 1;
        nl = buf.indexOf(10, start);
      }
      while (nl !== -1) {
        push(buf, start, nl);
        if (full()) yield take();
        start = nl + 1;
        nl = buf.indexOf(10, start);
      }
      if (start < buf.length) {
        head.push(buf.subarray(start));
        headBytes += buf.length - start;
        if (headBytes > MAX_LINE_BYTES) {
          throw new BadDataError(`Export archive entry "${name}" has a line longer than ${MAX_LINE_BYTES} bytes at line ${nextLine}: not JSON lines`, 'BAD_ARCHIVE_ENTRY');
        }
      }
    }
  } catch (err) {
    throw fail(err);
  } finally {
    raw.unpipe(gunzip);
    raw.destroy();
    gunzip.destroy();
  }
  // The last line may lack its newline; a trailing "\r" alone is the end of a CRLF file cut after CR.
  if (headBytes > 0) {
    const last = Buffer.concat(head);
    push(last, 0, last.length);
  }
  if (lines.length > 0) yield { entry: name, firstLine, lines };
}

/** What `countArchiveLines` found. */
export interface ArchiveCounts {
  entries: number;
  /** Non-blank lines. */
  lines: number;
  /** Decompressed characters of all lines. */
  chars: number;
}

/**
 * Reads the whole archive and only counts: the floor for the benchmark (how fast reading, gunzipping and
 * splitting go on their own, before any parsing, mapping or sending).
 */
export async function countArchiveLines(path: string): Promise<ArchiveCounts> {
  const seen = new Set<string>();
  let lines = 0;
  let chars = 0;
  for await (const chunk of readArchiveLines(path)) {
    seen.add(chunk.entry);
    for (const line of chunk.lines) {
      if (line.length === 0) continue;
      lines++;
      chars += line.length;
    }
  }
  return { entries: seen.size, lines, chars };
}
