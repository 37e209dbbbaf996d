import { accessSync, constants, createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { chunksOf } from '../io/chunks.js';
import { currentFolder } from '../io/current-folder.js';
import picomatch from 'picomatch';
import { BadDataError, UsageError } from '../errors.js';

/** One dump to read: a file, or stdin (`-`). */
export interface InputSource {
  /** What dead letters and logs call it: the path as given, or `stdin`. */
  name: string;
  /** Size in bytes on disk (compressed size for gzip), unknown for stdin. */
  size: number | undefined;
  /** The file's real path (symlinks resolved), undefined for stdin. */
  path?: string;
  open(): Readable;
}

const GLOB_CHARS = /[*?[\]{}]/;

/**
 * Expands the command's file arguments: plain paths, globs (matched against a walk of the glob's base
 * directory; Node 20 has no fs.glob) and `-` for stdin. Each file once, in argument order, globs sorted.
 * Fails with a UsageError before anything is read when a path does not exist or a glob matches nothing.
 */
export async function resolveInputs(args: string[], cwd = currentFolder(), stdin: () => Readable = () => process.stdin): Promise<InputSource[]> {
  const out: InputSource[] = [];
  const seen = new Set<string>();
  let stdinUsed = false;
  const addFile = (name: string, abs: string, size: number): void => {
    if (seen.has(abs)) return;
    seen.add(abs);
    try {
      accessSync(abs, constants.R_OK);
    } catch (err) {
      // Found out now, not after the files before it were sent.
      throw new UsageError(`cannot read ${name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}. Check its permissions; nothing was sent.`);
    }
    out.push({ name, size, path: realpathSync(abs), open: () => createReadStream(abs, { highWaterMark: 1 << 20 }) });
  };
  for (const arg of args) {
    if (arg === '-') {
      if (stdinUsed) throw new UsageError('`-` (stdin) can be given only once');
      stdinUsed = true;
      out.push({ name: 'stdin', size: undefined, open: stdin });
      continue;
    }
    if (!GLOB_CHARS.test(arg)) {
      const abs = resolve(cwd, arg);
      let st;
      try {
        st = statSync(abs);
      } catch {
        throw new UsageError(`input file not found: ${arg}`);
      }
      if (st.isDirectory()) throw new UsageError(`${arg} is a directory: give files or a glob such as '${join(arg, '*.json.gz')}'`);
      addFile(arg, abs, st.size);
      continue;
    }
    const { base, glob } = picomatch.scan(arg);
    const baseAbs = resolve(cwd, base || '.');
    const isMatch = picomatch(glob, { dot: false });
    let entries: string[];
    try {
      entries = await readdir(baseAbs, { recursive: true });
    } catch {
      throw new UsageError(`no files match ${arg} (directory ${base || '.'} cannot be read)`);
    }
    const matches = entries
      .map((e) => e.split('\\').join('/'))
      .filter((e) => isMatch(e))
      .sort();
    let added = 0;
    for (const rel of matches) {
      const abs = join(baseAbs, rel);
      let st;
      try {
        st = statSync(abs);
      } catch {
        throw new UsageError(`${relative(cwd, abs) || abs} (matched by ${arg}) cannot be read: a symbolic link to a file that is gone? Remove it, or give a narrower glob`);
      }
      if (!st.isFile()) continue;
      addFile(relative(cwd, abs) || abs, abs, st.size);
      added++;
    }
    if (added === 0) throw new UsageError(`no files match ${arg}`);
  }
  if (out.length === 0) throw new UsageError('give at least one impressions file, glob, or - for stdin');
  return out;
}

/**
 * A tar archive's first header holds its magic at byte 257: `ustar\0` (POSIX) or `ustar  \0` (GNU). Both end
 * in a NUL byte, which no JSON text holds, so a dump that happens to say `ustar` there is not taken for one.
 */
const TAR_MAGIC_AT = 257;
const TAR_MAGICS = ['ustar\0', 'ustar  \0'];
/** Bytes of decoded content looked at for a format given by mistake: up to the end of the longer tar magic. */
const FORMAT_HEAD_BYTES = TAR_MAGIC_AT + 8;

/**
 * Compressions other than gzip, by their magic bytes (none can start a JSON text), with the command that
 * streams the dump out of them: read as text, each would be a few `invalid_json` dead letters of binary.
 */
const OTHER_COMPRESSIONS: { magic: Buffer; name: string; decompress: string }[] = [
  { magic: Buffer.from('BZh', 'latin1'), name: 'bzip2', decompress: 'bzip2 -dc' },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), name: 'xz', decompress: 'xz -dc' },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), name: 'zstd', decompress: 'zstd -dc' },
  { magic: Buffer.from([0x04, 0x22, 0x4d, 0x18]), name: 'lz4', decompress: 'lz4 -dc' },
];

/** Formats people give by mistake, known by their first bytes, with what to do instead. */
function formatProblem(head: Buffer): string | undefined {
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304) return 'it is a zip archive: unzip it and give the files inside';
  if (head.length >= 6 && head.readUInt32BE(0) === 0x377abcaf && head.readUInt16BE(4) === 0x271c) return 'it is a 7z archive: extract it (7z x <file>) and give the files inside';
  const compressed = OTHER_COMPRESSIONS.find((c) => head.length >= c.magic.length && head.subarray(0, c.magic.length).equals(c.magic));
  if (compressed) {
    return `it is ${compressed.name}-compressed, and amp-fme reads gzip only: stream it in (${compressed.decompress} <file> | amp-fme push-impressions ... -) or decompress it first`;
  }
  if (head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff))) {
    return 'it is UTF-16 text: convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8 <file>)';
  }
  // Read as text, a tar's headers and padding would become dead letters and each member's first line with them,
  // while the rest of its members' lines were sent: refuse it whole instead.
  if (TAR_MAGICS.some((m) => head.toString('latin1', TAR_MAGIC_AT, TAR_MAGIC_AT + m.length) === m)) {
    return 'it is a tar archive: extract it (tar xf <file>) and give the files inside';
  }
  return undefined;
}

/**
 * `chunks` as they are, once their first FORMAT_HEAD_BYTES (or all of them, if fewer) have passed
 * `formatProblem`: a tar archive shows only that far in, and a gzip'd one only once gunzipped.
 */
async function* checkedHead(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  const check = (b: Buffer): void => {
    const problem = formatProblem(b);
    if (problem) throw new BadDataError(problem, 'NOT_A_DUMP');
  };
  try {
    for await (const chunk of chunks) {
      if (head === undefined) {
        yield chunk;
        continue;
      }
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.length < FORMAT_HEAD_BYTES) continue;
      check(head);
      const first = head;
      head = undefined;
      yield first;
    }
  } catch (err) {
    // The read ended early (a stop on a stalled stdin destroys it; a gzip cut short or damaged): what it gave before
    // is still read and counted, as without this check, before the error goes on.
    if (head !== undefined && head.length > 0) {
      const partial = head;
      head = undefined;
      check(partial);
      yield partial;
    }
    throw err;
  }
  if (head !== undefined && head.length > 0) {
    check(head);
    yield head;
  }
}

/**
 * Refuses an `--output` file that is one of the inputs: opening it for writing would empty the dump before
 * a line of it is read.
 */
export function checkOutputNotInput(output: string, inputs: InputSource[], cwd = currentFolder()): void {
  const abs = resolve(cwd, output);
  if (!existsSync(abs)) return;
  const real = realpathSync(abs);
  const same = inputs.find((i) => i.path === real);
  if (same) throw new UsageError(`--output ${output} is the input ${same.name}: writing it would empty it. Give another file for --output.`);
}

/**
 * The decoded bytes of a dump: gunzipped when it starts with the gzip magic bytes 1f 8b (names lie, and
 * stdin has none), as is otherwise. `onRaw` sees the size of every raw chunk read, for progress by bytes.
 * Concatenated gzip members (`cat a.gz b.gz`) are read as one stream, as zlib does by default.
 */
export async function* decodedChunks(raw: Readable, onRaw?: (bytes: number) => void): AsyncGenerator<Buffer> {
  const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const toBuf = (v: Buffer | string): Buffer => (typeof v === 'string' ? Buffer.from(v) : v);
  let head: Buffer = Buffer.alloc(0);
  let done = false;
  // Enough for the longest magic formatProblem knows (xz and 7z: 6 bytes).
  while (head.length < 6) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = toBuf(r.value);
    onRaw?.(b.length);
    head = head.length === 0 ? b : Buffer.concat([head, b]);
  }
  const notADump = formatProblem(head);
  if (notADump) throw new BadDataError(notADump, 'NOT_A_DUMP');
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  /** The bytes read to sniff the format, then the rest of the input. */
  const all = async function* (): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      const b = toBuf(r.value);
      onRaw?.(b.length);
      yield b;
    }
  };
  if (!gzip) {
    yield* checkedHead(all());
    return;
  }
  const rest = Readable.from(all(), { objectMode: false });
  // Chunk by chunk (io/chunks.ts): reading the buffered output at once joined it into fresh buffers.
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  pipeline(rest, gunzip, () => {
    // Errors surface through chunksOf below: pipeline destroys `gunzip` with the error.
  });
  yield* checkedHead(chunksOf(gunzip));
}
