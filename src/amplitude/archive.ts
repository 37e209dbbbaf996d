/**
 * Reads an Export API archive spooled on disk: a zip whose entries are gzip'd JSON-lines files
 * (specs/amplitude.md). The zip is read through its central directory (yauzl), so STORED or DEFLATED
 * entries, data descriptors and zip64 all work, and nothing but the current chunk is held in memory.
 *
 * Entries are read in file-name order and lines in file order: the pipeline numbers batches by position
 * and checkpoints them, so the same archive must always give the same sequence.
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
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

const DEFAULT_CHUNK_LINES = 2000;
const DEFAULT_CHUNK_CHARS = 4 * 1024 * 1024;
// A line longer than this is not an Amplitude event (rows are kilobytes): stop before the string limit.
const MAX_LINE_CHARS = 64 * 1024 * 1024;

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
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  // A damaged zip stream must fail the gunzip iteration below rather than leave it waiting.
  raw.on('error', (err) => gunzip.destroy(err));
  raw.pipe(gunzip);

  const decoder = new StringDecoder('utf8');
  let pending = '';
  let lines: string[] = [];
  let chars = 0;
  let firstLine = 1;
  let nextLine = 1;
  try {
    for await (const buf of gunzip as AsyncIterable<Buffer>) {
      const text = pending + decoder.write(buf);
      let start = 0;
      let nl = text.indexOf('\n', start);
      while (nl !== -1) {
        const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
        const line = text.slice(start, end);
        lines.push(line);
        chars += line.length;
        nextLine++;
        if (lines.length >= chunkLines || chars >= chunkChars) {
          yield { entry: name, firstLine, lines };
          lines = [];
          chars = 0;
          firstLine = nextLine;
        }
        start = nl + 1;
        nl = text.indexOf('\n', start);
      }
      pending = text.slice(start);
      if (pending.length > MAX_LINE_CHARS) {
        throw new BadDataError(`Export archive entry "${name}" has a line longer than ${MAX_LINE_CHARS} characters at line ${nextLine}: not JSON lines`, 'BAD_ARCHIVE_ENTRY');
      }
    }
  } catch (err) {
    throw fail(err);
  } finally {
    raw.unpipe(gunzip);
    raw.destroy();
    gunzip.destroy();
  }
  pending += decoder.end();
  // The last line may lack its newline; a trailing "\r" alone is the end of a CRLF file cut after CR.
  if (pending.endsWith('\r')) pending = pending.slice(0, -1);
  if (pending.length > 0) lines.push(pending);
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
