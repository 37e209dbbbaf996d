import type { WriteStream } from 'node:fs';
import pLimit from 'p-limit';
import { readArchiveRecords, type LineSink } from '../amplitude/archive.js';
import { ExportClient, exportWindows } from '../amplitude/export-client.js';
import { describeWindow, floorHour, formatHour, HOUR_MS, splitWindows, windowHours, type HourWindow } from '../amplitude/hours.js';
import { exportBaseUrl, type Config } from '../config/types.js';
import { FatalRemoteError, InterruptedError, withSummary } from '../errors.js';
import { FmeEventsClient, refusalDetail } from '../fme/events-client.js';
import { createHttp } from '../http/client.js';
import type { RetryPolicy } from '../http/retry.js';
import { closeOutput, openOutputFile, writeOutput } from '../io/output-file.js';
import type { Logger } from '../log/logger.js';
import { addMapperStats, emptyMapperStats, mergedEventTypes, type MapperStats } from '../mapping/amplitude-to-fme.js';
import { EVENT_FIELDS, LINE_FIELDS, LineOutcome, type DecodedRows, type RowReject } from '../mapping/export-rows.js';
import { InOrder } from '../workers/in-order.js';
import { BATCH_BYTES, RecordBatchWriter } from '../workers/record-batch.js';
import { decodingSetup } from '../workers/batch-pool.js';
import { Batcher, eventJson, type Batch } from './batcher.js';
import type { DeadLetter, DeadLetterWriter } from './dead-letters.js';
import { noCheckpoint, type ExportCheckpoint } from './export-checkpoint.js';
import { createRowsPool } from './export-rows-pool.js';
import { decodePosition, encodePosition, inRanges, MAX_IDENTITIES, type Ranges } from './positions.js';

export interface ExportEventsOptions {
  config: Config;
  /** First and last upload hour (inclusive), epoch ms of hour starts. */
  start: number;
  end: number;
  /** The windows to export, in order (see export-plan.ts); by default [start, end] cut by `windowHours`. */
  windows?: HourWindow[];
  /** Read and map, send nothing. */
  dryRun: boolean;
  /** Write the FME events as NDJSON to this file instead of sending them. */
  output?: string | undefined;
  logger: Logger;
  deadLetters: DeadLetterWriter;
  checkpoint?: ExportCheckpoint;
  /**
   * How to go on at an hour, past hours the Export API cannot deliver (named in that error): a `--skip-to` for the
   * cursor, a new range for an explicit one. Without it the error names both.
   */
  goOnAt?: (hour: number) => string;
  /** Stops reading at the next clean point; in-flight batches still finish. */
  signal?: AbortSignal;
  onProgress?: (p: ExportProgress) => void;
  tmpDir?: string;
}

export interface ExportProgress {
  windowsDone: number;
  windowsTotal: number;
  eventsRead: number;
  fmeEventsSent: number;
}

export interface ExportEventsSummary {
  start: string;
  end: string;
  windows: number;
  hoursExported: number;
  /** Archive entries that could not be read to their end (damaged or not gzip): each is one dead letter. */
  damagedEntries: number;
  archiveBytes: number;
  linesRead: number;
  blankLines: number;
  invalidLines: number;
  eventsRead: number;
  fmeEventsMapped: number;
  fmeEventsSent: number;
  /** FME events not sent again because an earlier interrupted run had delivered them. */
  fmeEventsAlreadyDelivered: number;
  fmeEventsWritten: number;
  batchesSent: number;
  /** Rows that yield no FME event on purpose (filtered event types, no identity), by reason. */
  skipped: Record<string, number>;
  /** Identities not sent for a row (e.g. `missing_user_id` for an anonymous event), by reason. */
  identitiesNotSent: Record<string, number>;
  /** Property changes made to fit FME's limits, by kind. */
  trimmed: Record<string, number>;
  /** Rows whose `value` field was present but not a number (left out). */
  valuesNotNumeric: number;
  /** Rows whose timestamp came from a fallback field because `event_time` was empty. */
  timestampFallbacks: Record<string, number>;
  renamedEventTypes: Record<string, string>;
  renamedEventTypesNotListed: number;
  /** eventTypeIds that several Amplitude event types became, with those names (only when there are some): FME counts them as one. */
  mergedEventTypes?: Record<string, string[]>;
  durationMs: number;
  eventsPerSecond: number;
  mode: 'send' | 'dry-run' | 'output';
}

/** Ends the iteration quietly when `signal` aborts it (the export client throws the abort reason). */
async function* interruptible<T>(source: AsyncGenerator<T>, signal: AbortSignal | undefined): AsyncGenerator<T> {
  try {
    for await (const item of source) yield item;
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  }
}

const NEWLINE = Buffer.from('\n');

/** Dead letters of invalid lines held at most (see recordHeld in runExportEvents): a few MB of rows. */
const MAX_HELD = 1000;

/**
 * How far this machine's clock may run ahead of Amplitude's (its answers' `Date` header) before a window the local
 * clock calls settled, but Amplitude's does not, stops the run. Response latency and the header's 1 s resolution
 * stay far below it, and the settling lag (3 h by default, for ~2 h of settling) absorbs the rest: a slightly fast
 * clock must not stop a run started at the top of an hour.
 */
export const CLOCK_AHEAD_TOLERANCE_MS = 10 * 60_000;

/**
 * A sending run must not record as delivered a window that has not settled by Amplitude's clock: an export of it
 * misses the events Amplitude adds later (or, hours that have not even begun, all of them), and the cursor would
 * move past them for good. The plan's settling lag is counted from this machine's clock, so a clock that jumped
 * ahead (a wrong hardware clock, NTP not yet synced after a boot) would do exactly that, and exit 0.
 */
function checkSettledByAmplitude(window: HourWindow, serverNow: number | undefined, lagHours: number): void {
  if (serverNow === undefined) return; // no Date header: nothing to compare with
  const settled = floorHour(serverNow + CLOCK_AHEAD_TOLERANCE_MS - lagHours * HOUR_MS) - HOUR_MS;
  if (window.end <= settled) return;
  const aheadMin = Math.round((Date.now() - serverNow) / 60_000);
  const ahead = aheadMin >= 120 ? `${Math.round(aheadMin / 60)} hours` : `${aheadMin} minutes`;
  throw new FatalRemoteError(
    'CLOCK_AHEAD',
    `this machine's clock (${new Date().toISOString()}) is about ${ahead} ahead of Amplitude's (${new Date(serverNow).toISOString()}, from its answer's Date header): ` +
      `by Amplitude's clock ${describeWindow(window)} has not settled (exportEvents.lagHours ${lagHours}), so it was not exported nor recorded as delivered, or its later events would never reach FME. ` +
      'Set the clock right (NTP) and run again: the run goes on from what was recorded.',
  );
}

function retryPolicy(c: Config): RetryPolicy {
  return { retries: c.http.retries, baseDelayMs: c.http.retryBaseDelayMs, maxDelayMs: c.http.retryMaxDelayMs };
}

/**
 * export-events: Amplitude Export API -> zip of gzipped JSON lines -> FME events -> FME events API.
 * Windows run one after another; inside a window, batches go out with bounded concurrency while reading
 * goes on. A window is complete (and the checkpoint moves past it) only when every batch is acknowledged.
 */
export async function runExportEvents(opts: ExportEventsOptions): Promise<ExportEventsSummary> {
  const { config, logger, deadLetters } = opts;
  const recorded = opts.checkpoint ?? noCheckpoint;
  /**
   * A run that records progress keeps the dead letters of a range of positions (its lines' and its batch's) until
   * that range is acknowledged: they go into the file, are synced and the range recorded in one synchronous step
   * (acknowledge), along with the file's size then. Written any earlier, another batch's acknowledge would put them
   * on disk while their own range is not recorded, and after a kill -9 the next run would handle them again: a
   * refused event in two files, or delivered and still retriable. The next run cuts the file back to the recorded
   * size (ExportStateStore.cutBackDeadLetters), which removes exactly what a kill left ahead of its progress.
   * A run that records nothing (--dry-run, --output) writes them at once.
   */
  const holding = opts.checkpoint !== undefined;
  // Progress is recorded only once the dead letters it covers are on disk (dead-letters.ts).
  const acknowledge = async (window: HourWindow, from: number, to: number, letters: readonly DeadLetter[]): Promise<void> => {
    for (const l of letters) deadLetters.write(l);
    deadLetters.sync();
    await recorded.acknowledge(window, from, to, deadLetters.mark());
  };
  const checkpoint: Pick<ExportCheckpoint, 'resumeRanges' | 'completeWindow'> = {
    resumeRanges: (window) => recorded.resumeRanges(window),
    completeWindow: async (window) => {
      deadLetters.sync();
      await recorded.completeWindow(window, deadLetters.mark());
    },
  };
  const started = Date.now();
  const ec = config.exportEvents;
  const mode: ExportEventsSummary['mode'] = opts.dryRun ? 'dry-run' : opts.output ? 'output' : 'send';
  // Rows are parsed and mapped on worker threads (and on this one when they are busy): see export-rows-pool.ts.
  const { threads, maxDecoding, scratch } = decodingSetup(ec.workers, ec.concurrency);
  // Created first: it checks the mapping settings (ConfigError) before anything else is touched.
  const rows = createRowsPool(ec, threads, scratch);
  const mapperStats = emptyMapperStats();
  const retry = retryPolicy(config);

  const connect = async (): Promise<{ exportClient: ExportClient; fme: FmeEventsClient | undefined }> => ({
    exportClient: new ExportClient({
      baseUrl: exportBaseUrl(config.amplitude),
      apiKey: config.amplitude.apiKey ?? '',
      secretKey: config.amplitude.secretKey ?? '',
      region: config.amplitude.region,
      baseUrlConfigured: config.amplitude.exportBaseUrl !== undefined,
      http: await createHttp({ timeoutMs: config.http.exportTimeoutMs }),
      timeoutMs: config.http.exportTimeoutMs,
      retry,
      logger,
      ...(opts.tmpDir ? { tmpDir: opts.tmpDir } : {}),
    }),
    fme:
      mode === 'send'
        ? new FmeEventsClient({
            baseUrl: config.fme.eventsBaseUrl,
            sdkKey: config.fme.sdkKey ?? '',
            http: await createHttp({ timeoutMs: config.http.timeoutMs, maxSockets: ec.concurrency }),
            retry,
            logger,
            // A stop ends a wait between attempts (that batch is not recorded: the next run sends it); a request already sent finishes.
            ...(opts.signal ? { signal: opts.signal } : {}),
          })
        : undefined,
  });
  let clients: Awaited<ReturnType<typeof connect>>;
  let output: WriteStream | undefined;
  try {
    clients = await connect();
    if (mode === 'output' && opts.output) output = await openOutputFile(opts.output);
  } catch (err) {
    // The row threads would keep the process alive.
    await rows.close();
    throw err;
  }
  const { exportClient, fme } = clients;

  const s = {
    linesRead: 0,
    blankLines: 0,
    invalidLines: 0,
    eventsRead: 0,
    fmeEventsMapped: 0,
    fmeEventsSent: 0,
    fmeEventsAlreadyDelivered: 0,
    fmeEventsWritten: 0,
    batchesSent: 0,
    archiveBytes: 0,
    hoursExported: 0,
    damagedEntries: 0,
  };
  const windows = opts.windows ?? splitWindows(opts.start, opts.end, ec.windowHours);
  let windowsDone = 0;
  const progress = (): void =>
    opts.onProgress?.({ windowsDone, windowsTotal: windows.length, eventsRead: s.eventsRead, fmeEventsSent: s.fmeEventsSent });

  const limit = pLimit(ec.concurrency);
  let fatal: unknown;

  /**
   * Sends one batch; records it as acknowledged, or dead-letters it when FME rejects it. After a stop, a batch
   * that has not gone out yet stays unsent and unrecorded (the next run sends it): only requests in flight finish.
   */
  const deliver = async (window: HourWindow, batch: Batch, coverFrom: number, entries: string[], letters: DeadLetter[]): Promise<void> => {
    const coverTo = batch.positions[batch.positions.length - 1] as number;
    if (fatal || opts.signal?.aborted) return;
    if (fme) {
      try {
        const outcome = await fme.sendBody(batch.body, batch.count);
        if (outcome.delivered) {
          s.fmeEventsSent += batch.count;
          s.batchesSent++;
        } else {
          // FME refuses a whole request for one bad event: halves go out until only the refused ones are left.
          const jsons = batch.positions.map((_, i) => eventJson(batch, i));
          const letter = (i: number, reason: string, detail: string, status?: number): void => {
            const pos = decodePosition(batch.positions[i] as number);
            const l: DeadLetter = {
              reason,
              detail,
              ...(status !== undefined ? { status } : {}),
              source: { window: describeWindow(window), entry: entries[pos.entryIndex] ?? '', line: pos.line },
              retriable: true,
              payload: JSON.parse(jsons[i] as string) as unknown,
            };
            if (holding) letters.push(l);
            else deadLetters.write(l);
          };
          let refused = 0;
          const unsent: [number, unknown][] = [];
          const split = await fme.deliverSplitting(
            jsons,
            outcome,
            (i, o, part) => {
              refused++;
              letter(i, 'fme_rejected', refusalDetail(o, part), o.status);
            },
            (i, err) => unsent.push([i, err]),
          );
          if (split.error !== undefined && split.delivered === 0 && refused === 0) {
            // None of it reached FME (which stores nothing of a refused request), and nothing was dead-lettered: it stays
            // unrecorded for the next run, like a batch not sent yet.
            logger.warn(`FME refused a batch of ${batch.count} events (HTTP ${outcome.status}) and the run stopped before any part of it was delivered: the next run sends it again`, {
              status: outcome.status,
              window: describeWindow(window),
            });
            fatal ??= split.error;
            return;
          }
          // Part of the batch is in FME: the rest is recorded as a dead letter, so that no run sends the batch again.
          for (const [i, err] of unsent) letter(i, 'fme_not_sent', `its batch was refused and being sent in parts when the run stopped: ${(err as Error).message}`);
          const notSent = unsent.length;
          s.fmeEventsSent += split.delivered;
          const rest = notSent > 0 ? `; ${notSent} were not sent when the run stopped (also dead letters, to retry)` : split.delivered > 0 ? `, the other ${split.delivered} were delivered` : '';
          logger.warn(`FME refused ${refused} of a batch of ${batch.count} events (HTTP ${outcome.status}); they are in the dead-letter file${rest}`, {
            status: outcome.status,
            window: describeWindow(window),
          });
          // The batch is handled (delivered or dead letters) and is recorded below; the run stops after it.
          if (split.error !== undefined) fatal ??= split.error;
        }
      } catch (err) {
        fatal ??= err;
        return;
      }
    } else if (output) {
      const lines: Buffer[] = [];
      for (let i = 0; i < batch.count; i++) lines.push(batch.body.subarray(batch.starts[i], (batch.starts[i] as number) + (batch.sizes[i] as number)), NEWLINE);
      await writeOutput(output, Buffer.concat(lines));
      s.fmeEventsWritten += batch.count;
    }
    // Nothing reads the body any more: its buffer serves a later batch.
    scratch.give('bodies', batch.body.buffer as ArrayBuffer);
    try {
      await acknowledge(window, coverFrom, coverTo, letters);
    } catch (err) {
      // Progress that cannot be recorded (a full disk) stops the run: each batch sent after it would be sent again.
      fatal ??= err;
      return;
    }
    progress();
  };

  try {
    await exportClient.removeStaleDownloads();
    for (const window of windows) {
      if (opts.signal?.aborted || fatal) break;
      logger.info(`exporting ${describeWindow(window)}`, { window: describeWindow(window), hours: windowHours(window) });
      const splittable = (w: HourWindow): boolean => checkpoint.resumeRanges(w).length === 0;
      for await (const part of interruptible(exportWindows(exportClient, window, opts.signal, splittable, opts.goOnAt), opts.signal)) {
        const sub = part.window;
        // Only a run that records what it delivered: a dry run or --output may read unsettled hours (it warns).
        if (opts.checkpoint && mode === 'send') {
          try {
            checkSettledByAmplitude(sub, exportClient.serverNow(), ec.lagHours);
          } catch (err) {
            await part.archive?.dispose();
            throw err;
          }
        }
        if (!part.archive) {
          logger.info(`no data in ${describeWindow(sub)}`, { window: describeWindow(sub) });
          await checkpoint.completeWindow(sub);
          s.hoursExported += windowHours(sub);
          continue;
        }
        const archive = part.archive;
        s.archiveBytes += archive.bytes;
        const resume: Ranges = checkpoint.resumeRanges(sub);
        const resuming = resume.length > 0;
        if (resuming) logger.info(`resuming ${describeWindow(sub)}: skipping what an earlier run delivered`, { window: describeWindow(sub) });
        try {
          await processArchive(sub, archive.path, resume);
        } finally {
          await archive.dispose();
        }
        if (fatal || opts.signal?.aborted) break;
        await checkpoint.completeWindow(sub);
        s.hoursExported += windowHours(sub);
      }
      if (fatal || opts.signal?.aborted) break;
      windowsDone++;
      progress();
    }
  } catch (err) {
    // Whatever stopped the run (an hour Amplitude cannot export, a state write), it ends below with the summary so far.
    fatal ??= err;
  } finally {
    await rows.close();
    // A write that failed (a full disk) ends the run with its error, like a failed request.
    if (output) await closeOutput(output).catch((err: unknown) => (fatal ??= err));
  }

  async function processArchive(window: HourWindow, path: string, resume: Ranges): Promise<void> {
    const batcher = new Batcher(ec.batchSize, ec.batchBytes, () => scratch.spare('bodies'));
    const inFlight = new Set<Promise<void>>();
    const entries: string[] = [];
    const label = describeWindow(window);
    let coverFrom = 0;
    let lastPos = -1;
    /** Dead letters of lines read that no dispatched range covers yet, in line order, with their positions (see `holding`). */
    let held: { pos: number; letter: DeadLetter }[] = [];
    /** The held letters of positions up to `to`: those of the range that ends there. */
    const take = (to: number): DeadLetter[] => {
      const n = held.findIndex((h) => h.pos > to);
      const out = n < 0 ? held : held.slice(0, n);
      held = n < 0 ? [] : held.slice(n);
      return out.map((h) => h.letter);
    };

    const dispatch = async (batch: Batch): Promise<void> => {
      const from = coverFrom;
      coverFrom = (batch.positions[batch.positions.length - 1] as number) + 1;
      const letters = take(coverFrom - 1);
      const p = limit(() => deliver(window, batch, from, entries, letters));
      inFlight.add(p);
      const done = (): boolean => inFlight.delete(p);
      p.then(done, done); // the rejection itself is seen by Promise.all below
      // Bounded read-ahead: memory stays flat however fast the export is read.
      while (inFlight.size >= ec.concurrency * 2) await Promise.race(inFlight);
    };

    try {
      await readAndDispatch();
    } catch (err) {
      // Let what is in flight finish (and be recorded) before the error ends the run.
      await Promise.allSettled(inFlight);
      throw err;
    }
    const rest = batcher.flush();
    if (rest && !fatal && !opts.signal?.aborted) await dispatch(rest);
    await Promise.all(inFlight);
    if (!fatal && !opts.signal?.aborted && lastPos >= coverFrom) {
      // Lines after the last batch (skipped, invalid) are handled too.
      await acknowledge(window, coverFrom, lastPos + MAX_IDENTITIES - 1, take(Infinity));
    }

    /**
     * Memory stays bounded on a window full of invalid lines: their held letters are recorded now, with the events
     * read before them sent as a batch of their own. Called between lines (after an invalid one, which has no events).
     */
    async function recordHeld(): Promise<void> {
      const rest = batcher.flush();
      if (rest) await dispatch(rest);
      if (fatal || opts.signal?.aborted || lastPos < coverFrom) return;
      const from = coverFrom;
      coverFrom = lastPos + MAX_IDENTITIES;
      try {
        await acknowledge(window, from, coverFrom - 1, take(Infinity));
      } catch (err) {
        fatal ??= err;
      }
    }

    async function readAndDispatch(): Promise<void> {
      /** Batches of lines handed to the decoders: applied in line order, whichever finishes first. */
      const decoding = new InOrder<DecodedRows>();
      let writer: RecordBatchWriter | undefined;
      const send = (): void => {
        const batch = writer?.take();
        if (batch) decoding.add(rows.decode(batch));
      };
      /** Applies decoded batches (see InOrder.drain) until the run stops. */
      const drain = (keep: number): Promise<void> =>
        decoding.drain(keep, async (d) => {
          await apply(d);
          rows.recycle(d);
          return !fatal && !opts.signal?.aborted;
        });
      const sink: LineSink = {
        entry(name) {
          send();
          writer?.release();
          writer = new RecordBatchWriter(name, scratch);
        },
        record(bytes, start, end, line, index) {
          writer?.record(bytes, start, end, line, index);
        },
        // Not a reason to stop: a download cut short fails the zip check and is fetched again, while damage inside
        // an entry shows only now, and every later run would stop at the same place.
        damaged(err) {
          s.damagedEntries++;
          // Written at once, not held: it has no position of its own (its entry may have no line read), and every run
          // that reads this window finds the damage and writes it again, recorded or not.
          deadLetters.write({
            reason: 'damaged_entry',
            detail: `${err.message}; nothing from line ${err.line} on can be read`,
            source: { window: label, entry: err.entry, line: err.line },
            retriable: false,
            payload: null,
          });
          logger.warn(`archive entry ${err.entry} of ${label} is damaged (found at line ${err.line}): its lines from there on cannot be read, and the lines before it may be damaged too (dead letter); going on with the next entry`, {
            window: label,
            entry: err.entry,
            line: err.line,
          });
        },
      };
      try {
        for await (const entryEnded of readArchiveRecords(path, sink)) {
          if (fatal || opts.signal?.aborted) break;
          if (entryEnded || (writer && writer.size >= BATCH_BYTES)) {
            send();
            await drain(maxDecoding - 1);
          }
        }
        if (!fatal && !opts.signal?.aborted) {
          send();
          await drain(0);
        }
      } finally {
        writer?.release();
        // Whatever stopped the reading, let the decoders finish what they hold (their results are dropped).
        await decoding.settle();
      }
    }

    /** One decoded batch of lines, in order: positions, dead letters, and its events into the batcher. */
    async function apply(d: DecodedRows): Promise<void> {
      addMapperStats(mapperStats, d.stats);
      let entryIndex = entries.length - 1;
      if (entries[entryIndex] !== d.entry) {
        entries.push(d.entry);
        entryIndex = entries.length - 1;
      }
      let reject = 0;
      for (let i = 0; i < d.count; i++) {
        const f = i * LINE_FIELDS;
        const lineNo = d.lines[f] as number;
        const outcome = d.lines[f + 1] as number;
        const base = encodePosition(entryIndex, lineNo, 0);
        lastPos = base;
        s.linesRead++;
        if (outcome === LineOutcome.Blank) {
          s.blankLines++;
          continue;
        }
        // Whether this line's own outcome (its dead letter) was recorded; each of its events is checked on its
        // own below, since a batch can end between the events of one line.
        const already = resume.length > 0 && inRanges(resume, base);
        if (outcome === LineOutcome.InvalidJson || outcome === LineOutcome.NotAnObject || outcome === LineOutcome.Invalid) {
          const r = d.rejects[reject++] as RowReject;
          if (outcome === LineOutcome.Invalid) s.eventsRead++;
          else s.invalidLines++;
          if (!already) {
            const letter: DeadLetter = { reason: r.reason, detail: r.detail, source: { window: label, entry: d.entry, line: lineNo }, retriable: false, payload: r.payload };
            if (!holding) deadLetters.write(letter);
            else {
              held.push({ pos: base, letter });
              if (held.length >= MAX_HELD) await recordHeld();
            }
          }
          continue;
        }
        s.eventsRead++;
        if (outcome === LineOutcome.Skipped) continue;
        const first = d.lines[f + 2] as number;
        const count = d.lines[f + 3] as number;
        for (let k = first; k < first + count; k++) {
          s.fmeEventsMapped++;
          const e = k * EVENT_FIELDS;
          const pos = base + (d.items[e + 2] as number);
          if (resume.length > 0 && inRanges(resume, pos)) {
            s.fmeEventsAlreadyDelivered++;
            continue;
          }
          if (mode === 'dry-run') continue;
          const full = batcher.add(d.bytes, d.items[e] as number, d.items[e + 1] as number, pos);
          if (full) await dispatch(full);
        }
      }
      progress();
    }
  }

  const durationMs = Date.now() - started;
  const mstats: MapperStats = mapperStats;
  const merged = mergedEventTypes(mstats);
  if (Object.keys(merged).length > 0) {
    const list = Object.entries(merged).map(([id, names]) => `${id} <- ${names.map((n) => JSON.stringify(n)).join(', ')}`);
    logger.warn(
      `several Amplitude event types became one FME eventTypeId, and FME counts them as one: ${list.slice(0, 10).join('; ')}${list.length > 10 ? ` (+${list.length - 10} more)` : ''}. ` +
        'If they must stay apart, leave one out (exportEvents.excludeEventTypes) or rename it in Amplitude',
      { mergedEventTypes: list.length },
    );
  }
  // A field name with a typo ("userId" for user_id) is no config error, as any path may be meant: it only finds no
  // value, every event is skipped (no_identity) and the hours are recorded as delivered, with nothing sent.
  const mappedRows = mstats.rows - (mstats.skipped.excluded_event_type ?? 0) - (mstats.invalid.no_event_type ?? 0);
  if (mappedRows > 0) {
    ec.identities.forEach((rule, i) => {
      // Rules reading the same field (two traffic types from user_id) each count a row it lacks: said once, for the first.
      const sharing = ec.identities.filter((r) => r.from === rule.from).length;
      if (ec.identities.findIndex((r) => r.from === rule.from) !== i || (mstats.identities[`missing_${rule.from}`] ?? 0) < mappedRows * sharing) return;
      logger.warn(
        `exportEvents.identities[${i}].from "${rule.from}" had no value in any of the ${mappedRows} events mapped: if that is not expected, check the field name ` +
          `(an Amplitude export row has user_id, device_id, amplitude_id, user_properties.<name>, ...)${mode === 'send' ? '; the hours are recorded as delivered all the same' : ''}`,
        { identity: i, from: rule.from, events: mappedRows },
      );
    });
  }
  const summary: ExportEventsSummary = {
    start: formatHour(opts.start),
    end: formatHour(opts.end),
    windows: windows.length,
    ...s,
    skipped: { ...mstats.skipped } as Record<string, number>,
    identitiesNotSent: { ...mstats.identities },
    trimmed: { ...mstats.trimmed },
    valuesNotNumeric: mstats.value.not_numeric,
    timestampFallbacks: { ...mstats.timestampFallback },
    renamedEventTypes: Object.fromEntries(mstats.renamed),
    renamedEventTypesNotListed: mstats.renamedNotListed,
    ...(Object.keys(merged).length > 0 ? { mergedEventTypes: merged } : {}),
    durationMs,
    eventsPerSecond: durationMs > 0 ? Math.round((s.eventsRead / durationMs) * 1000) : s.eventsRead,
    mode,
  };

  // A stop that ended a wait between attempts is a stop like any other (an export's stop ends quietly: interruptible).
  const stopped = opts.signal?.aborted === true && (fatal === undefined || fatal instanceof InterruptedError);
  if (fatal && !stopped) {
    // What the run did before it failed, for the summary the CLI prints all the same.
    throw withSummary(fatal, summary);
  }
  if (stopped) {
    throw withSummary(new InterruptedError(`stopped early (${String(opts.signal?.reason ?? 'interrupted')}); delivered batches are recorded`), summary);
  }
  return summary;
}
