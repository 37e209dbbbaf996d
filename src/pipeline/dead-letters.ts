import { createHash, type Hash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, rmSync, statSync, truncateSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { redact } from '../http/redact.js';
import { withPath } from '../io/file-errors.js';
import { makeDirs } from '../io/make-dirs.js';
import { shellArg } from '../io/shell-quote.js';
import { writeAllSync } from '../io/write-all.js';
import type { Logger } from '../log/logger.js';
import { acquireLock, type HeldLock } from '../state/lock.js';

/** Where a dead letter came from: the input file and line, an export window and zip entry, a batch... */
export type SourcePosition = Record<string, string | number>;

export interface DeadLetter {
  /** Stable machine-readable reason, e.g. `invalid_json`, `fme_rejected`, `amplitude_invalid_field`. */
  reason: string;
  /** Human-readable detail (status, response body excerpt, field). */
  detail?: string;
  /** HTTP status when a service rejected it. */
  status?: number;
  source?: SourcePosition;
  /** Whether `amp-fme retry` may re-send `payload` as is. */
  retriable: boolean;
  /** The record itself: the unparsed line, the FME event, the Amplitude event... */
  payload: unknown;
}

/** A run's own dead-letter file and its size, as the progress it recorded covers it (DeadLetterWriter.mark). */
export interface DeadLetterMark {
  file: string;
  bytes: number;
  /**
   * SHA-256 (hex) of those first `bytes` bytes as the run wrote them. A file whose start no longer matches was changed
   * since (a payload corrected by hand, as the README suggests before a retry): its end is then not that run's tail, and
   * cutting it back would cut records the user still needs. Absent for an empty file and in marks of earlier versions.
   */
  sha256?: string;
}

/** A recorded mark, or undefined for anything else (an older progress or state file has none). */
export function readMark(value: unknown): DeadLetterMark | undefined {
  const d = value as { file?: unknown; bytes?: unknown; sha256?: unknown } | null | undefined;
  if (!(d && typeof d.file === 'string' && typeof d.bytes === 'number' && Number.isSafeInteger(d.bytes) && d.bytes >= 0)) return undefined;
  if (d.sha256 !== undefined && (typeof d.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(d.sha256))) return undefined;
  return { file: d.file, bytes: d.bytes, ...(d.sha256 !== undefined ? { sha256: d.sha256 } : {}) };
}

/** Whether the first `mark.bytes` bytes of `file` are still those the run that recorded `mark` wrote (see DeadLetterMark.sha256). */
function startUnchanged(file: string, mark: DeadLetterMark): boolean {
  if (mark.sha256 === undefined || mark.bytes === 0) return true;
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(Math.min(mark.bytes, 1 << 20));
    let at = 0;
    while (at < mark.bytes) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, mark.bytes - at), at);
      if (n === 0) return false;
      hash.update(buf.subarray(0, n));
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex') === mark.sha256;
}

/** The warning for a file changed since the run that recorded `mark` wrote it: left whole (see DeadLetterMark.sha256). */
function changedWarning(file: string, mark: DeadLetterMark, command: string): string {
  return (
    `${file} was changed since the ${command} that wrote it recorded its first ${mark.bytes} bytes (edited by hand?): it is not cut back to them. ` +
    `If that ${command} was killed, records after them may also be handled again by the next run of it`
  );
}

/**
 * `mark` as a file in `folder` keeps it (a state file, a retry's progress): its file named relative to that folder when
 * it is inside it (`dead-letters/<name>` beside a state), so that it is still found when state.dir is reached by another
 * path: moved or renamed, or a volume that hosts sharing state.dir mount at different places. Named absolute, a killed
 * run's file would then not be found, and nothing cut back: its tail left in two files, silently.
 */
export function storedMark(mark: DeadLetterMark, folder: string): DeadLetterMark {
  const rel = relative(folder, mark.file);
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? mark : { ...mark, file: rel };
}

/** A mark read from a file in `folder` (see storedMark), its file as a path from here; an absolute one (earlier versions) as it is. */
export function resolvedMark(mark: DeadLetterMark, folder: string): DeadLetterMark {
  return { ...mark, file: resolve(folder, mark.file) };
}

/** The bytes of `mark.file` past `mark.bytes` (0 when none, or when the file is gone: retried and renamed, or removed by hand). */
function tailBytes(mark: DeadLetterMark): number {
  try {
    return Math.max(0, statSync(mark.file).size - mark.bytes);
  } catch {
    return 0;
  }
}

/**
 * Cuts `mark.file` back to `mark.bytes`, for a caller that holds `<mark.file>.lock` (no retry rewrites or renames it
 * meanwhile). A file whose start changed since the mark was taken (DeadLetterMark.sha256) is left whole, with a
 * warning: its end is not a killed run's tail. Returns the bytes cut; throws what truncating throws.
 */
export function cutTail(mark: DeadLetterMark, logger: Logger, command: string): number {
  const tail = tailBytes(mark);
  if (tail === 0) return 0;
  if (!startUnchanged(mark.file, mark)) {
    logger.warn(changedWarning(mark.file, mark, command));
    return 0;
  }
  truncateSync(mark.file, mark.bytes);
  return tail;
}

/**
 * Cuts an interrupted run's dead-letter file back to the size its recorded progress covers. A run killed (kill -9,
 * power cut) after dead letters went into its file but before the progress that covers them was written leaves them
 * there, and the run that goes on from that progress handles their events again: left in the old file too, a refused
 * event would sit in two files (retrying both sends it to FME twice), or be delivered now and still be retried. The
 * file's tail past the mark is exactly those records. `command`: the command going on (retry, export-events).
 */
export function cutBack(mark: DeadLetterMark, logger: Logger, command: string): void {
  if (tailBytes(mark) === 0) return;
  const cannot = (why: string): void =>
    logger.warn(
      `could not cut back ${mark.file} to the ${mark.bytes} bytes the progress of an interrupted ${command} covers (${why}): this run handles the records after them again, ` +
        `so they will be in two dead-letter files and retrying both sends them twice. Cut that file first: truncate -s ${mark.bytes} ${shellArg(mark.file)}`,
    );
  let lock: HeldLock;
  try {
    lock = acquireLock(`${mark.file}.lock`, `${command} (cutting back an interrupted run's dead letters)`);
  } catch (err) {
    cannot((err as Error).message);
    return;
  }
  try {
    if (cutTail(mark, logger, command) > 0) {
      logger.info(`${mark.file}: removed the dead letters written after the last progress an interrupted ${command} recorded (this run handles their records again)`);
    }
  } catch (err) {
    cannot((err as Error).message);
  } finally {
    lock.release();
  }
}

/** Pending text is written out once it reaches this size, so memory stays bounded on a run full of rejects. */
const WRITE_AT = 64 * 1024;

/**
 * Dead letters as NDJSON, one record per line. The file is created on the first record written out, so a
 * clean run leaves nothing behind. Counts by reason, and of retriable records, feed the run summary.
 *
 * A run records progress past an event only once that event is delivered or here: `sync()` puts every
 * record so far on disk (fsync), and the pipelines call it before they record progress (a checkpoint, a
 * retry's lines done). Otherwise a crash or power cut right after the state moved on would lose the record
 * for good, since the next run does not read that event again. Writes are synchronous: dead letters are
 * rare, and a write that has returned cannot be lost by the process dying.
 */
export class DeadLetterWriter {
  private file: string;
  /** Whether this writer has created its file (after that, a reopen appends to it). */
  private created = false;
  private fd: number | undefined;
  private pending: string[] = [];
  private pendingSize = 0;
  /** Written to the file since the last fsync. */
  private unsynced = false;
  private readonly byReason = new Map<string, number>();
  private total = 0;
  /** Records written to the file (the others are pending, or their write failed). */
  private recordsInFile = 0;
  private retriableTotal = 0;
  private readonly command: string;
  /** `<file>.lock`, held while the file is open (see writeOut). */
  private lock: HeldLock | undefined;
  /** Of every byte written to the file so far, for `mark` (DeadLetterMark.sha256). */
  private readonly digest: Hash = createHash('sha256');

  /** Called once, when this writer has created its (empty) file and before any record goes into it. */
  onCreated: ((file: string) => void) | undefined;

  constructor(path: string, command: string) {
    this.file = path;
    this.command = command;
  }

  /** This writer's own file and its size once everything written so far is on disk (`sync` first); undefined before it has a file. */
  mark(): DeadLetterMark | undefined {
    if (!this.created || this.fd === undefined) return undefined;
    const bytes = fstatSync(this.fd).size;
    return { file: this.file, bytes, ...(bytes > 0 ? { sha256: this.digest.copy().digest('hex') } : {}) };
  }

  /**
   * The file's path: the one given, unless another run had already created a file of that name when this one
   * wrote its first record; then the first free `<name>-2.ndjson`, `-3`... (see `open`).
   */
  get path(): string {
    return this.file;
  }

  write(letter: DeadLetter): void {
    this.total++;
    if (letter.retriable) this.retriableTotal++;
    this.byReason.set(letter.reason, (this.byReason.get(letter.reason) ?? 0) + 1);
    const record = { time: new Date().toISOString(), command: this.command, ...letter };
    const line = `${redact(JSON.stringify(record))}\n`;
    this.pending.push(line);
    this.pendingSize += line.length;
    if (this.pendingSize >= WRITE_AT) this.writeOut();
  }

  get count(): number {
    return this.total;
  }

  /** Records in the file: `count` once `sync` or `close` has succeeded, fewer if a write failed. */
  get inFile(): number {
    return this.recordsInFile;
  }

  /** Records written with `retriable: true`: those `amp-fme retry` may re-send. */
  get retriableCount(): number {
    return this.retriableTotal;
  }

  counts(): Record<string, number> {
    return Object.fromEntries(this.byReason);
  }

  /** Every record written so far is on disk when this returns (a no-op when there is nothing new). */
  sync(): void {
    this.writeOut();
    if (this.unsynced && this.fd !== undefined) {
      try {
        fsyncSync(this.fd);
      } catch (err) {
        throw withPath(err, this.path);
      }
      this.unsynced = false;
    }
  }

  /** Syncs and closes the file; safe to call more than once (a later record opens it again, appending). */
  async close(): Promise<void> {
    try {
      this.sync();
      if (this.fd !== undefined) closeSync(this.fd);
      this.fd = undefined;
    } finally {
      this.lock?.release();
      this.lock = undefined;
    }
  }

  /**
   * Takes `<file>.lock`, the lock `amp-fme retry` takes on the file it re-sends, so that a retry of this file
   * while the run still writes it exits 75. Otherwise the retry would re-send the records written so far and
   * rename the file `.retried`, and the run would go on appending to the renamed file: its later records would
   * sit in a file marked as retried, under a name the run's last warning no longer gives. Best effort: a lock
   * that cannot be taken never stops a run from writing its dead letters.
   */
  private takeLock(): void {
    if (this.lock) return;
    try {
      this.lock = acquireLock(`${this.path}.lock`, `${this.command} (writing this dead-letter file)`);
    } catch {
      // A folder where the lock cannot be made, or (after close) a retry of the file already under way.
    }
  }

  /**
   * Opens the file for appending. The first time it must be a new file: names are per command, second and pid, and
   * two containers sharing state.dir both run as pid 1, so two runs started in the same second would otherwise mix
   * their records (each retried with one config's keys). Another run's file of that name is left alone.
   */
  private open(): number {
    makeDirs(dirname(this.file));
    if (this.created) {
      this.takeLock();
      return openSync(this.file, 'a');
    }
    const base = this.file.replace(/\.ndjson$/, '');
    for (let n = 1; ; n++) {
      const candidate = n === 1 ? this.file : `${base}-${n}.ndjson`;
      let fd: number;
      try {
        fd = openSync(candidate, 'ax');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && n < 100) continue;
        throw withPath(err, candidate);
      }
      this.file = candidate;
      this.created = true;
      this.takeLock();
      try {
        this.onCreated?.(candidate);
      } catch (err) {
        closeSync(fd);
        // Not named where the run records its progress (that write failed): records put in it later (close, on the
        // way out) would sit there with nothing to cut them back, and the next run, which handles their lines again,
        // would write them a second time: a refused event in two files, sent twice by retrying both. Removed, the
        // next attempt creates it again and names it first, or says its records could not be written.
        rmSync(candidate, { force: true });
        this.created = false;
        this.lock?.release();
        this.lock = undefined;
        throw err;
      }
      return fd;
    }
  }

  private writeOut(): void {
    if (this.pending.length === 0) return;
    if (this.fd === undefined) this.fd = this.open();
    const before = fstatSync(this.fd).size;
    const text = this.pending.join('');
    try {
      writeAllSync(this.fd, text);
    } catch (err) {
      // Part may be written (a disk filling up): cut the file back, so that it holds whole records only and a
      // later attempt (close) writes these records once, not after a cut copy of them.
      try {
        ftruncateSync(this.fd, before);
      } catch {
        // The write's own error says what is wrong.
      }
      throw withPath(err, this.path);
    }
    this.digest.update(text);
    this.recordsInFile += this.pending.length;
    this.pending = [];
    this.pendingSize = 0;
    this.unsynced = true;
  }
}
