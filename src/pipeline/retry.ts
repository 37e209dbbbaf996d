import { closeSync, createReadStream, existsSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { IdentifyClient, IDENTIFY_LIMITS, identifyItem } from '../amplitude/identify-client.js';
import { INGESTION_LIMITS, IngestionClient } from '../amplitude/ingestion-client.js';
import { requireSecrets } from '../config/load.js';
import { ingestionBaseUrl, type Config } from '../config/types.js';
import { ConfigError, UsageError, withSummary } from '../errors.js';
import { FmeEventsClient, refusalDetail } from '../fme/events-client.js';
import { createHttp } from '../http/client.js';
import { withPath } from '../io/file-errors.js';
import type { Logger } from '../log/logger.js';
import { removeStaleTemps, writeFileAtomic } from '../state/atomic-write.js';
import { cutBack, cutTail, readMark, resolvedMark, storedMark, type DeadLetter, type DeadLetterMark, type DeadLetterWriter } from './dead-letters.js';

export interface RetryOptions {
  config: Config;
  file: string;
  logger: Logger;
  /** Where what still fails goes (a new dead-letter file). */
  deadLetters: DeadLetterWriter;
  /** Allow a file already marked `.retried`. */
  force: boolean;
  signal?: AbortSignal | undefined;
  /** The folder searched when no config file was found there: the retry then runs on the defaults, and says so. */
  noConfigFileIn?: string | undefined;
}

export interface RetrySummary {
  file: string;
  records: number;
  /** Records skipped because an earlier, interrupted retry of this file handled them. */
  alreadyHandled: number;
  resent: { fme: number; amplitudeEvents: number; amplitudeIdentifications: number };
  /** Records that still failed, by reason (now in the new dead-letter file). */
  stillFailing: Record<string, number>;
  /** Records that cannot be re-sent as they are, carried over to the new file. */
  carriedOver: number;
  /** Records read but not sent because the retry was stopped: in the new dead-letter file, retriable. */
  notSent: number;
  /**
   * Of `carriedOver`, the lines that are no dead-letter record amp-fme can judge (not JSON, no `reason`, a
   * `retriable` neither true nor false): carried over as `unreadable_dead_letter`, the line as it was.
   */
  invalid: number;
  renamedTo: string | undefined;
  durationMs: number;
}

/** A dead-letter record as DeadLetterWriter writes it. */
interface StoredLetter extends DeadLetter {
  command?: string;
}

type Target = 'fme' | 'amplitude-event' | 'amplitude-identify';

/**
 * The order of a flush's requests. A flush records its lines as done only once the batch of every target is
 * handled, so when one fails, the next retry sends the flush's other batches again: Amplitude deduplicates
 * events (insert_id) and an identification set twice changes nothing, but FME stores every copy. FME goes last.
 */
const SEND_ORDER: readonly Target[] = ['amplitude-event', 'amplitude-identify', 'fme'];

interface Pending {
  json: string;
  /** UTF-8 bytes of `json` (WireItem.size). */
  size: number;
  id: string;
  line: number;
  letter: StoredLetter;
}

/**
 * What a retriable record is re-sent to, judged by the command that wrote it and the payload's shape. A
 * retry writes what still fails with the payload it re-sent, so its own records go where that payload goes.
 */
function targetOf(letter: StoredLetter): Target | undefined {
  const p = letter.payload;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return undefined;
  const o = p as Record<string, unknown>;
  const by = (command: string): boolean => letter.command === command || letter.command === 'retry';
  if (by('export-events') && typeof o.eventTypeId === 'string') return 'fme';
  if (by('push-impressions') && typeof o.event_type === 'string') return 'amplitude-event';
  if (by('push-impressions') && typeof o.user_properties === 'object') return 'amplitude-identify';
  return undefined;
}

/**
 * One line of a dead-letter file as a record retry can use, or why it is none (not JSON, no `reason`, a `retriable`
 * neither true nor false). Only `true` means "may be re-sent": a "yes" or a 1 (a file edited by hand, or not written
 * by amp-fme) is not guessed at, as FME stores every copy of what is sent. Of a wrong `retriable`, only its type is
 * said: the value may be anything.
 */
function readLetter(text: string): { letter: StoredLetter } | { problem: string; notJson: boolean } {
  let letter: StoredLetter;
  try {
    letter = JSON.parse(text) as StoredLetter;
  } catch (err) {
    return { problem: (err as Error).message, notJson: true };
  }
  if (letter === null || typeof letter !== 'object' || typeof letter.reason !== 'string') return { problem: 'it is not a JSON object with a string "reason"', notJson: false };
  const r: unknown = letter.retriable;
  if (typeof r !== 'boolean') {
    const what = r === undefined ? 'missing' : r === null ? 'null' : Array.isArray(r) ? 'an array' : typeof r === 'object' ? 'an object' : `a ${typeof r}`;
    return { problem: `its "retriable" is ${what}, not true or false`, notJson: false };
  }
  return { letter };
}

/** The key a target's records are sent with. */
function keyOf(target: Target): 'fmeEvents' | 'amplitudeIngestion' {
  return target === 'fme' ? 'fmeEvents' : 'amplitudeIngestion';
}

function idOf(payload: unknown): string {
  const o = payload as Record<string, unknown>;
  return String(o.user_id ?? o.device_id ?? o.key ?? '');
}

/** The first line of a file read to tell a dead-letter file: far more than any record amp-fme writes. */
const FIRST_LINE_MAX = 64 * 1024 * 1024;

/**
 * Refuses (UsageError, exit 2) a path that is not a dead-letter file, before anything is locked, sent,
 * written or renamed: a retry renames its file and copies every line it cannot use into a new dead-letter
 * file, so a config file, an impressions dump or a folder given by mistake would be moved out of the way and
 * its content (secrets included) copied. A dead-letter file's first non-blank line is a JSON object with a
 * string `reason` and a boolean `retriable`, as DeadLetterWriter has written since its first version; `time`
 * and `command` are not required, so hand-made files pass too. Later lines are judged one by one as the retry goes.
 * The messages never quote the file's content: it may hold secrets.
 */
export function checkDeadLetterFile(file: string, opts: { force: boolean; deadLetterDir?: string | undefined }): void {
  const what =
    'A dead-letter file is the NDJSON file a run writes to state.dir/dead-letters/' +
    `${opts.deadLetterDir ? ` (here ${opts.deadLetterDir}/)` : ''} when it cannot deliver some records, one JSON record per line ` +
    'with its "reason", "retriable" and "payload"; the run\'s last warning names it. Nothing was sent, written or renamed.';
  let stat: Stats;
  try {
    stat = statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A path mistyped or made up: part of it a file (ENOTDIR), a name too long, a loop of symbolic links. Said
    // as a usage error, not as a bug with a stack trace.
    if (code === 'ENOENT' && existsSync(`${file}.retried`)) {
      throw new UsageError(
        `${file} was retried already: it is now ${basename(file)}.retried, and what still failed, if anything, went to the new dead-letter file that retry named. ` +
          `Retry that one, or add --force and give ${file}.retried to send this file's records again (they may then be sent twice). Nothing was sent, written or renamed.`,
      );
    }
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UsageError(`dead-letter file not found: ${file}. ${what}`);
    if (code === 'ENAMETOOLONG') throw new UsageError(`${file} is not a dead-letter file: its name is too long for the file system. ${what}`);
    if (code === 'ELOOP') throw new UsageError(`${file} is not a dead-letter file: its path goes round a loop of symbolic links. ${what}`);
    throw err;
  }
  if (stat.isDirectory()) throw new UsageError(`${file} is a folder, not a dead-letter file. ${what}`);
  if (!stat.isFile()) throw new UsageError(`${file} is not a regular file. ${what}`);
  if (file.endsWith('.retried') && !opts.force) {
    throw new UsageError(`${file} was already retried; its failures are in a newer dead-letter file. Add --force to re-send it anyway.`);
  }
  const first = firstNonBlankLine(file);
  const not = (why: string): UsageError => new UsageError(`${file} is not a dead-letter file: ${why}. ${what}`);
  if (first === undefined) throw not('it is empty');
  if (first.problem !== undefined) throw not(`line ${first.line} ${first.problem}`);
  let record: unknown;
  try {
    record = JSON.parse(first.text);
  } catch {
    throw not(`line ${first.line} is not JSON`);
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) throw not(`line ${first.line} is not a JSON object`);
  const r = record as Record<string, unknown>;
  if (typeof r.reason !== 'string' || typeof r.retriable !== 'boolean') {
    throw not(`line ${first.line} is a JSON object without a string "reason" and a boolean "retriable"`);
  }
}

/**
 * The file's first non-blank line and its number, or why it cannot be a record without reading it whole (it
 * does not start with `{`, or is longer than FIRST_LINE_MAX): a gzip or a 4 GB dump is not read to its end.
 */
function firstNonBlankLine(file: string): { line: number; text: string; problem?: undefined } | { line: number; problem: string } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw withPath(err, file);
  }
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let line = 1;
    let pieces: Buffer[] | undefined;
    let size = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        throw withPath(err, file);
      }
      if (got === 0) return pieces ? { line, text: Buffer.concat(pieces).toString('utf8') } : undefined;
      let i = 0;
      if (!pieces) {
        // Blank lines and the whitespace before the record.
        for (; i < got; i++) {
          const b = chunk[i];
          if (b === 0x0a) line++;
          else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) break;
        }
        if (i === got) continue;
        if (chunk[i] !== 0x7b) return { line, problem: 'is not a JSON object' };
        pieces = [];
      }
      const end = chunk.indexOf(0x0a, i);
      const piece = Buffer.from(chunk.subarray(i, end === -1 || end >= got ? got : end));
      pieces.push(piece);
      size += piece.length;
      if (end !== -1 && end < got) return { line, text: Buffer.concat(pieces).toString('utf8') };
      if (size > FIRST_LINE_MAX) return { line, problem: `is longer than ${FIRST_LINE_MAX / 1024 / 1024} MB` };
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * `amp-fme retry <file>`: re-sends the retriable records of a dead-letter file with the current config, in
 * file order, one batch at a time; writes what still fails (and what cannot be re-sent) to a new dead-letter
 * file. Progress is recorded beside the file after each acknowledged batch, so an interrupted retry goes on
 * where it stopped instead of re-sending to FME, which does not deduplicate. When done, the file is renamed
 * `<file>.retried`.
 */
export async function runRetry(opts: RetryOptions): Promise<RetrySummary> {
  const { config, file, logger, deadLetters } = opts;
  const started = Date.now();
  checkDeadLetterFile(file, { force: opts.force, deadLetterDir: dirname(deadLetters.path) });
  const progressPath = `${file}.retry-progress.json`;
  // The caller holds the file's lock: temp files of its progress that killed retries left are nobody's.
  removeStaleTemps(progressPath);
  const progress = existsSync(progressPath) ? readProgress(progressPath) : { linesDone: 0, deadLetters: undefined };
  const linesDone = progress.linesDone;
  await requireKeysOfRecords(config, file, linesDone);
  if (opts.noConfigFileIn !== undefined) {
    // The records go to the hosts and region of the config found here, not of the run that wrote the file: pasted
    // from another folder than that run's (cron cd's to its own), the retry would send to the defaults' production hosts.
    logger.warn(
      `no config file found in ${opts.noConfigFileIn}: re-sending with the defaults (production hosts, amplitude.region "${config.amplitude.region}"), not with the config of the run that wrote ${file}. Give that run's config with --config <file> (or cd to its folder).`,
    );
  }
  if (linesDone > 0) logger.info(`continuing an interrupted retry of ${file} after line ${linesDone}`);
  // A retry killed (kill -9, power cut) after its new dead-letter file got the records of lines past its recorded
  // progress, but before that progress was written: this retry handles those lines again and writes their records
  // again. Left in the old file too, a refused event would sit in two files, and retrying both sends it to FME twice
  // (or, if FME takes it now, once more after this retry delivered it). The old file's tail is exactly those records.
  if (progress.deadLetters) cutBack(resolvedMark(progress.deadLetters, dirname(progressPath)), logger, 'retry');
  // This file may itself be an interrupted run's, with records past that run's recorded progress: cut them first.
  cutBackOthersTail(file, progressPath, logger);
  // The progress names this retry's new file before any record goes into it, so that such a tail is found even
  // when the retry is killed before its first progress write.
  let recordedLines = linesDone;
  deadLetters.onCreated = (created) =>
    writeFileAtomic(progressPath, JSON.stringify({ version: 1, linesDone: recordedLines, deadLetters: storedMark({ file: created, bytes: 0 }, dirname(progressPath)) }));

  const summary: RetrySummary = {
    file,
    records: 0,
    alreadyHandled: 0,
    resent: { fme: 0, amplitudeEvents: 0, amplitudeIdentifications: 0 },
    stillFailing: {},
    carriedOver: 0,
    invalid: 0,
    notSent: 0,
    renamedTo: undefined,
    durationMs: 0,
  };
  const fail = (letter: StoredLetter, reason: string, detail: string, status?: number, retriable = true): void => {
    summary.stillFailing[reason] = (summary.stillFailing[reason] ?? 0) + 1;
    deadLetters.write({
      reason,
      detail,
      ...(status !== undefined ? { status } : {}),
      ...(letter.source ? { source: letter.source } : {}),
      retriable,
      payload: letter.payload,
    });
  };

  const http = await createHttp({ timeoutMs: config.http.timeoutMs });
  const retry = { retries: config.http.retries, baseDelayMs: config.http.retryBaseDelayMs, maxDelayMs: config.http.retryMaxDelayMs };
  const pc = config.pushImpressions;
  let fme: FmeEventsClient | undefined;
  let ingestion: IngestionClient | undefined;
  let identify: IdentifyClient | undefined;
  const limits: Record<Target, { count: number; bytes: number }> = {
    fme: { count: config.exportEvents.batchSize, bytes: config.exportEvents.batchBytes },
    'amplitude-event': { count: Math.min(pc.batchSize, INGESTION_LIMITS[pc.api].maxEvents), bytes: INGESTION_LIMITS[pc.api].maxBytes - 1000 },
    'amplitude-identify': { count: Math.min(pc.batchSize, IDENTIFY_LIMITS.maxIdentifications), bytes: IDENTIFY_LIMITS.maxBytes - 1000 },
  };
  const pending: Record<Target, Pending[]> = { fme: [], 'amplitude-event': [], 'amplitude-identify': [] };
  const sizes: Record<Target, number> = { fme: 0, 'amplitude-event': 0, 'amplitude-identify': 0 };

  // A stop lets a request already sent finish, and ends the waits between attempts (http/retry.ts `pause`).
  const send = async (target: Target): Promise<void> => {
    const batch = pending[target];
    if (batch.length === 0) return;
    pending[target] = [];
    sizes[target] = 0;
    if (target === 'fme') {
      fme ??= new FmeEventsClient({ baseUrl: config.fme.eventsBaseUrl, sdkKey: config.fme.sdkKey ?? '', http, retry, logger, ...(opts.signal ? { signal: opts.signal } : {}) });
      const jsons = batch.map((b) => b.json);
      const outcome = await fme.send({ jsons });
      if (outcome.delivered) summary.resent.fme += batch.length;
      else {
        // Only the events FME refuses on their own stay failing: the rest of the batch is delivered.
        const split = await fme.deliverSplitting(
          jsons,
          outcome,
          (i, o, part) => fail((batch[i] as Pending).letter, 'fme_rejected', refusalDetail(o, part), o.status),
          // Part of the batch is in FME: the rest goes to the new file, and its lines count as done (below).
          (i, err) => fail((batch[i] as Pending).letter, 'fme_not_sent', `its batch was refused and being sent in parts when the retry stopped: ${(err as Error).message}`),
        );
        summary.resent.fme += split.delivered;
        if (split.error !== undefined) stopAfterProgress ??= split.error;
      }
    } else if (target === 'amplitude-event') {
      ingestion ??= new IngestionClient({ baseUrl: ingestionBaseUrl(config.amplitude), apiKey: config.amplitude.apiKey ?? '', http, api: pc.api, minIdLength: config.amplitude.minIdLength, retry, throttleDelayMs: pc.throttleDelayMs[pc.api], logger, signal: opts.signal });
      // Counted as acknowledged: a batch split by a 413 that then fails has still delivered its first parts.
      await ingestion.deliver(batch, (item, r) => fail(item.letter, r.reason, r.detail, r.status, r.retriable), { onAcknowledged: (n) => (summary.resent.amplitudeEvents += n) });
    } else {
      identify ??= new IdentifyClient({ baseUrl: ingestionBaseUrl(config.amplitude), apiKey: config.amplitude.apiKey ?? '', http, retry, throttleDelayMs: pc.throttleDelayMs.identify, logger, signal: opts.signal });
      const items = batch.map((b) => ({ ...identifyItem(b.id, b.json), pending: b }));
      await identify.deliver(items, (item, r) => fail(item.pending.letter, r.reason, r.detail, r.status, r.retriable), { onAcknowledged: (n) => (summary.resent.amplitudeIdentifications += n) });
    }
  };

  /**
   * After a stop nothing more goes out, not even the batch that was about to: its records go to the new file (as
   * a batch FME refused and sent in part does), so that the progress can count their lines as done, and the
   * records carried over next to them are not carried over a second time by the next retry.
   */
  const setAside = (target: Target): void => {
    const batch = pending[target];
    pending[target] = [];
    sizes[target] = 0;
    for (const p of batch) {
      summary.notSent++;
      deadLetters.write({
        reason: target === 'fme' ? 'fme_not_sent' : 'amplitude_not_sent',
        detail: `${file} line ${p.line}: not sent, the retry was stopped (${String(opts.signal?.reason)}) before its batch went out`,
        ...(p.letter.source ? { source: p.letter.source } : {}),
        retriable: true,
        payload: p.letter.payload,
      });
    }
  };

  /** An error that ends the retry once the lines it concerns are recorded as done (a batch FME refused, sent in part). */
  let stopAfterProgress: unknown;
  const flushAll = async (line: number): Promise<void> => {
    // A missing key stops the flush before any of its batches goes out (and is sent again by the next retry).
    const busy = SEND_ORDER.filter((t) => pending[t].length > 0);
    if (busy.length > 0) requireSecrets(config, busy.map(keyOf));
    for (const t of SEND_ORDER) {
      if (opts.signal?.aborted) setAside(t);
      else await send(t);
    }
    // What still fails is on disk before the progress says its lines are done (dead-letters.ts).
    deadLetters.sync();
    const mark = deadLetters.mark();
    writeFileAtomic(progressPath, JSON.stringify({ version: 1, linesDone: line, ...(mark ? { deadLetters: storedMark(mark, dirname(progressPath)) } : {}) }));
    recordedLines = line;
    if (stopAfterProgress !== undefined) throw stopAfterProgress;
  };

  let line = 0;
  let warnedIdentify = false;
  try {
    const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const text of rl) {
      // Stop before counting the line: the progress written below must not cover a line nobody handled.
      if (opts.signal?.aborted) break;
      line++;
      if (line <= linesDone) {
        summary.alreadyHandled++;
        continue;
      }
      if (text.trim() === '') continue;
      summary.records++;
      const read = readLetter(text);
      if ('problem' in read) {
        summary.carriedOver++;
        if (summary.invalid++ === 0) {
          // JSON.parse's message quotes the line, which may hold secrets: the log does not.
          logger.warn(
            `${file} line ${line} is not a dead-letter record retry can use (${read.notJson ? 'it is not JSON' : read.problem}): it is not re-sent, ` +
              'and goes to the new dead-letter file as unreadable_dead_letter with the line as it was. Any more such lines are counted in the summary (invalid) and named in that file.',
          );
        }
        deadLetters.write({ reason: 'unreadable_dead_letter', detail: `${file} line ${line}: ${read.problem}`, source: { file, line }, retriable: false, payload: text });
        continue;
      }
      const letter = read.letter;
      const target = letter.retriable ? targetOf(letter) : undefined;
      if (!target) {
        summary.carriedOver++;
        // Carried over as it was: a record marked retriable stays so, in case a later amp-fme can re-send it.
        deadLetters.write({ reason: letter.reason, ...(letter.detail ? { detail: letter.detail } : {}), ...(letter.status ? { status: letter.status } : {}), ...(letter.source ? { source: letter.source } : {}), retriable: letter.retriable === true, payload: letter.payload });
        continue;
      }
      if (target === 'amplitude-identify' && !warnedIdentify) {
        warnedIdentify = true;
        logger.warn(
          `${file} holds identifications: each sets a user's flags to the treatments of the dump it came from. If a later identify run has ` +
            'set newer treatments for these users, this retry puts the older ones back: then re-run the dumps in order instead.',
        );
      }
      const json = JSON.stringify(letter.payload);
      // An identification goes form-encoded (`"` is 3 bytes on the wire, a non-ASCII character up to 9): its size in
      // the request, as push-impressions counts it, not its JSON's, or a full batch would be well over the limit.
      const size = target === 'amplitude-identify' ? identifyItem('', json).size : Buffer.byteLength(json);
      const lim = limits[target];
      // Each record adds its bytes and a separator to a request.
      if (pending[target].length >= lim.count || sizes[target] + size + 1 > lim.bytes) await flushAll(line - 1);
      pending[target].push({ json, size, id: idOf(letter.payload), line, letter });
      sizes[target] += size + 1;
    }
    await flushAll(line);
  } catch (err) {
    // What the retry did before it stopped, for the summary the CLI prints with the error.
    throw withSummary(err, summary);
  } finally {
    summary.durationMs = Date.now() - started;
  }
  if (!opts.signal?.aborted) {
    const done = file.endsWith('.retried') ? file : `${file}.retried`;
    if (done !== file) renameSync(file, done);
    rmSync(progressPath, { force: true });
    summary.renamedTo = done;
  }
  return summary;
}

/**
 * Refuses (ConfigError, exit 2) a retry whose file holds records to re-send with a key the config lacks, before
 * anything is sent, written or renamed. Found at the flush that needs it, the key would stop the retry after
 * records were carried over to a new dead-letter file (and, in a file with both, FME batches sent), so the next
 * retry would carry them over a second time. The file is read for it only when a key is missing, and only the
 * lines an earlier, interrupted retry has not handled. Only records marked `retriable: true` are re-sent.
 */
async function requireKeysOfRecords(config: Config, file: string, linesDone: number): Promise<void> {
  // The error each missing key gives, found once; the file is read only if there is one.
  const missing = new Map<ReturnType<typeof keyOf>, ConfigError>();
  for (const need of ['fmeEvents', 'amplitudeIngestion'] as const) {
    try {
      requireSecrets(config, [need]);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      missing.set(need, err);
    }
  }
  if (missing.size === 0) return;
  const input = createReadStream(file, { encoding: 'utf8' });
  // Every missing key the file needs is named at once (with the first line that needs it), as config problems are:
  // one at a time, a file with records for both services would be refused once per key.
  const problems: ConfigError['problems'] = [];
  let source: ConfigError['source'];
  try {
    let line = 0;
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      line++;
      if (line <= linesDone || text.trim() === '') continue;
      // Only what the retry would re-send: the lines it carries over need no key.
      const read = readLetter(text);
      const target = 'letter' in read && read.letter.retriable ? targetOf(read.letter) : undefined;
      const err = target === undefined ? undefined : missing.get(keyOf(target));
      if (target === undefined || err === undefined) continue;
      missing.delete(keyOf(target));
      const to = target === 'fme' ? 'FME' : 'Amplitude';
      problems.push(...err.problems.map((p) => ({ ...p, message: `${p.message} (${file} line ${line} is a record to re-send to ${to}); nothing was sent, written or renamed` })));
      source ??= err.source;
      if (missing.size === 0) break;
    }
  } finally {
    input.destroy();
  }
  if (problems.length > 0) throw new ConfigError(problems, source);
}

/**
 * The marks other runs recorded on `file` (DeadLetterMark): the export-events states of the state folder the file's
 * dead-letters folder is in, and the progress of retries beside it (a retry's new file is named in the progress of the
 * retry that writes it). `ownProgress` is left out: it names this retry's own new file, never `file`.
 */
function marksOn(file: string, ownProgress: string): DeadLetterMark[] {
  const target = resolve(file);
  const dlDir = dirname(target);
  const candidates: string[] = [];
  const list = (dir: string, match: RegExp): void => {
    try {
      for (const f of readdirSync(dir)) if (match.test(f)) candidates.push(join(dir, f));
    } catch {
      // No such folder (a file retried from elsewhere): nothing recorded there.
    }
  };
  list(dirname(dlDir), /^export-events-[0-9a-f]+\.json$/);
  list(dlDir, /\.retry-progress\.json$/);
  const marks: DeadLetterMark[] = [];
  for (const c of candidates) {
    if (resolve(c) === resolve(ownProgress)) continue;
    try {
      const m = readMark((JSON.parse(readFileSync(c, 'utf8')) as { deadLetters?: unknown } | null)?.deadLetters);
      // Named relative to the file that holds the mark (storedMark), or absolute by earlier versions.
      if (m && resolve(dirname(c), m.file) === target) marks.push(m);
    } catch {
      // Unreadable: the run that owns it says so; a mark it may hold cannot be used.
    }
  }
  return marks;
}

/**
 * Cuts `file` back to the size an interrupted run that wrote it recorded (export-events, or a retry writing its new
 * file), before any of it is re-sent. A run killed (kill -9) after putting dead letters there but before recording
 * the batches they belong to leaves them past that size, and the run that goes on from its progress handles those
 * batches again: re-sent here first, their events would reach FME twice (FME stores every copy), and refused ones
 * would sit in two files. That run's own cut-back finds this file renamed `.retried` and cannot help. The caller
 * holds `<file>.lock`.
 */
function cutBackOthersTail(file: string, ownProgress: string, logger: Logger): void {
  const marks = marksOn(file, ownProgress);
  if (marks.length === 0) return;
  // A file corrected by hand (README) is the user's now: cutTail leaves it whole, its end not a killed run's tail.
  const mark = { ...marks.reduce((a, b) => (b.bytes < a.bytes ? b : a)), file };
  let cut: number;
  try {
    cut = cutTail(mark, logger, 'run');
  } catch (err) {
    throw withPath(err, file);
  }
  if (cut === 0) return;
  logger.info(
    `${file}: removed the dead letters written after the last progress the interrupted run that wrote this file recorded (${cut} bytes): ` +
      'the next run of that command handles their records again, so they are not re-sent here',
  );
}

interface RetryProgress {
  linesDone: number;
  /** The new dead-letter file of the retry that wrote this progress, and its size when the progress was written. */
  deadLetters: DeadLetterMark | undefined;
}

function readProgress(path: string): RetryProgress {
  try {
    const p = JSON.parse(readFileSync(path, 'utf8')) as { linesDone?: unknown; deadLetters?: unknown };
    const deadLetters = readMark(p.deadLetters);
    if (typeof p.linesDone === 'number' && Number.isInteger(p.linesDone) && p.linesDone >= 0) return { linesDone: p.linesDone, deadLetters };
  } catch {
    // fall through
  }
  throw new UsageError(`${path} (progress of an earlier retry) is unreadable: delete it only if you know nothing of that retry was sent`);
}
