import type { WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Got } from 'got';
import { IdentifyClient, identifyItem, IDENTIFY_LIMITS } from '../amplitude/identify-client.js';
import { IngestionClient, INGESTION_LIMITS } from '../amplitude/ingestion-client.js';
import { ingestionBaseUrl, type CoalesceMode, type Config, type ImpressionIdentity, type IngestionApi, type PushMode } from '../config/types.js';
import { BadDataError, InterruptedError, withSummary } from '../errors.js';
import { createHttp } from '../http/client.js';
import type { RetryPolicy } from '../http/retry.js';
import { closeOutput, openOutputFile, writeOutput } from '../io/output-file.js';
import { impressionPosition, ITEM_FIELDS, laneOf, type DecodedBatch, type DecodeSettings } from '../impressions/decode.js';
import { createDecodePool } from '../impressions/decode-pool.js';
import { checkOutputNotInput, decodedChunks, resolveInputs, type InputSource } from '../impressions/input.js';
import { RecordSplitter } from '../impressions/splitter.js';
import { IMPRESSION_SHAPES, type ImpressionShape } from '../impressions/types.js';
import type { Logger } from '../log/logger.js';
import { IdentifyFold, toIdentification } from '../mapping/impression-to-amplitude.js';
import { VERSION } from '../version.js';
import { BATCH_BYTES, RecordBatchWriter } from '../workers/record-batch.js';
import { InOrder } from '../workers/in-order.js';
import { decodingSetup } from '../workers/batch-pool.js';
import type { DeadLetterWriter, SourcePosition } from './dead-letters.js';
import { ImpressionLanes, type LaneIdentification } from './impression-lanes.js';

const NEWLINE = Buffer.from('\n');

export interface PushImpressionsOptions {
  config: Config;
  /** Files, globs, or `-` for stdin (see impressions/input.ts). */
  files: string[];
  mode: PushMode;
  api: IngestionApi;
  identity: ImpressionIdentity;
  coalesce: CoalesceMode;
  /** Read, validate and map; send nothing. */
  dryRun: boolean;
  /** Write the Amplitude events (or identifications) as NDJSON here instead of sending them. */
  output?: string | undefined;
  logger: Logger;
  deadLetters: DeadLetterWriter;
  /** Stops reading at the next chunk; what was read is still delivered. */
  signal?: AbortSignal | undefined;
  onProgress?: (p: PushProgress) => void;
  /** For tests: what `-` reads. */
  stdin?: () => Readable;
  /** For tests: the working folder globs resolve against. */
  cwd?: string;
  /** For tests: a shared got instance. */
  http?: Got;
  /** For tests: the largest record read (RecordSplitter's limit, 64 MB). */
  maxRecordBytes?: number;
}

export interface PushProgress {
  /** Raw (possibly compressed) bytes read, over all inputs. */
  bytesRead: number;
  /** Sum of the input sizes; 0 when unknown (stdin). */
  bytesTotal: number;
  impressionsRead: number;
  /** Events or identifications acknowledged (or mapped/written in a dry run or with --output). */
  delivered: number;
}

export interface PushImpressionsSummary {
  mode: PushMode;
  api: IngestionApi | 'identify';
  run: 'send' | 'dry-run' | 'output';
  inputs: number;
  bytesRead: number;
  recordsRead: number;
  impressionsRead: number;
  byShape: Record<ImpressionShape, number>;
  /** Impressions left out by `--coalesce first` (same key, flag, treatment and change number seen before). */
  coalesced: number;
  eventsSent: number;
  identificationsSent: number;
  /** Events or identifications built but not sent (dry run) or written to --output. */
  mapped: number;
  written: number;
  usersFolded: number;
  requests: number;
  oldestImpression: string | undefined;
  newestImpression: string | undefined;
  deadLetters: number;
  deadLettersByReason: Record<string, number>;
  durationMs: number;
  impressionsPerSecond: number;
}

/**
 * `chunks` of `raw`, ended (not failed) by a stop: a read that waits for input that does not come (stdin from a
 * stalled producer) would otherwise outlast the stop, and the records read so far would never be sent.
 */
async function* untilStopped(chunks: AsyncGenerator<Buffer>, raw: Readable, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  if (!signal) {
    yield* chunks;
    return;
  }
  const stop = (): void => {
    raw.destroy();
  };
  signal.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      let r: IteratorResult<Buffer>;
      try {
        r = await chunks.next();
      } catch (err) {
        // The stop destroyed the input under the read (gunzip then sees its input end early): not a problem of the file.
        if (signal.aborted) return;
        throw err;
      }
      if (r.done) return;
      yield r.value;
    }
  } finally {
    signal.removeEventListener('abort', stop);
    await chunks.return(undefined);
  }
}

function retryPolicy(c: Config): RetryPolicy {
  return { retries: c.http.retries, baseDelayMs: c.http.retryBaseDelayMs, maxDelayMs: c.http.retryMaxDelayMs };
}

/**
 * push-impressions: FME impression dumps -> Amplitude events (Batch / HTTP V2) or user properties (Identify).
 *
 * Reading is a stream (flat memory) cut into batches of raw records; decode threads parse and map them
 * (impressions/decode-pool.ts) and the results are applied in input order. Events go to `concurrency`
 * lanes by a hash of the user (impression-lanes.ts). Reading waits while too many requests are in flight.
 */
export async function runPushImpressions(opts: PushImpressionsOptions): Promise<PushImpressionsSummary> {
  const started = Date.now();
  const { config, logger, deadLetters } = opts;
  const pc = config.pushImpressions;
  const run: PushImpressionsSummary['run'] = opts.dryRun ? 'dry-run' : opts.output ? 'output' : 'send';
  const inputs: InputSource[] = await resolveInputs(opts.files, opts.cwd, opts.stdin);
  const deadLettersAtStart = deadLetters.count;
  const deadLetterCountsAtStart = deadLetters.counts();

  const summary: PushImpressionsSummary = {
    mode: opts.mode,
    api: opts.mode === 'identify' ? 'identify' : opts.api,
    run,
    inputs: inputs.length,
    bytesRead: 0,
    recordsRead: 0,
    impressionsRead: 0,
    byShape: Object.fromEntries(IMPRESSION_SHAPES.map((s) => [s, 0])) as Record<ImpressionShape, number>,
    coalesced: 0,
    eventsSent: 0,
    identificationsSent: 0,
    mapped: 0,
    written: 0,
    usersFolded: 0,
    requests: 0,
    oldestImpression: undefined,
    newestImpression: undefined,
    deadLetters: 0,
    deadLettersByReason: {},
    durationMs: 0,
    impressionsPerSecond: 0,
  };
  const bytesTotal = inputs.reduce((s, i) => s + (i.size ?? 0), 0);
  let oldest = Number.POSITIVE_INFINITY;
  let newest = 0;
  const progress = (): void =>
    opts.onProgress?.({
      bytesRead: summary.bytesRead,
      bytesTotal,
      impressionsRead: summary.impressionsRead,
      delivered: summary.eventsSent + summary.identificationsSent + summary.mapped + summary.written,
    });

  let out: WriteStream | undefined;
  if (run === 'output' && opts.output) {
    checkOutputNotInput(opts.output, inputs, opts.cwd);
    out = await openOutputFile(opts.output);
  }

  // --- Decode threads: started before the HTTP client, so that they boot while got loads ---------------------
  const laneCount = Math.max(1, pc.concurrency);
  const { threads, maxDecoding, scratch } = decodingSetup(pc.workers, laneCount);
  // Identify mode sends one value per flag already, the latest: coalescing before the fold would keep an older one.
  const seen = opts.coalesce === 'first' && opts.mode === 'event' ? new Set<string>() : undefined;
  const settings: DecodeSettings = {
    mode: opts.mode,
    mapping: { eventType: pc.eventType, identity: opts.identity, propertyNames: pc.propertyNames, library: `amp-fme/${VERSION}` },
    minIdLength: opts.mode === 'event' ? config.amplitude.minIdLength : undefined,
    coalesce: seen !== undefined,
    lanes: laneCount,
  };
  const pool = createDecodePool(settings, threads, scratch);

  // --- Where the Amplitude payloads go -------------------------------------------------------------------
  let http: Got | undefined;
  try {
    http = run === 'send' ? (opts.http ?? (await createHttp({ timeoutMs: config.http.timeoutMs, maxSockets: pc.concurrency + 2 }))) : undefined;
  } catch (err) {
    await pool.close();
    throw err;
  }
  const common = {
    baseUrl: ingestionBaseUrl(config.amplitude),
    apiKey: config.amplitude.apiKey ?? '',
    retry: retryPolicy(config),
    logger,
    // A stop ends a wait between two attempts at once (the request is then not delivered), as in `amp-fme retry`:
    // retries after a 5xx can wait minutes, past the CLI's 30 s drain limit.
    signal: opts.signal,
  };
  const ingestion =
    http && opts.mode === 'event'
      ? new IngestionClient({ ...common, http, api: opts.api, minIdLength: config.amplitude.minIdLength, throttleDelayMs: pc.throttleDelayMs[opts.api] })
      : undefined;
  const identify = http && opts.mode === 'identify' ? new IdentifyClient({ ...common, http, throttleDelayMs: pc.throttleDelayMs.identify }) : undefined;
  const limits =
    opts.mode === 'event'
      ? { maxItems: Math.min(pc.batchSize, INGESTION_LIMITS[opts.api].maxEvents), maxBytes: INGESTION_LIMITS[opts.api].maxBytes - (ingestion?.envelopeBytes ?? 200) }
      : { maxItems: Math.min(pc.batchSize, IDENTIFY_LIMITS.maxIdentifications), maxBytes: IDENTIFY_LIMITS.maxBytes - (identify?.envelopeBytes ?? 200) };

  /** --output: events or identifications as NDJSON, written once per decoded batch. */
  let outBuffer: (string | Uint8Array)[] = [];
  const flushOutput = async (): Promise<void> => {
    if (!out || outBuffer.length === 0) return;
    const parts: Uint8Array[] = [];
    for (const p of outBuffer) parts.push(typeof p === 'string' ? Buffer.from(p) : p, NEWLINE);
    outBuffer = [];
    await writeOutput(out, Buffer.concat(parts));
  };

  // --- Lanes of requests ---------------------------------------------------------------------------------
  const lanes = new ImpressionLanes({
    lanes: laneCount,
    limits,
    ingestion,
    identify,
    scratch,
    deadLetters,
    onDelivered: (n) => {
      if (ingestion) summary.eventsSent += n;
      else summary.identificationsSent += n;
      progress();
    },
  });

  /** A single event or identification over the request limit: a dead letter (callers check the size first). */
  const tooLarge = (size: number, source: SourcePosition, json: string): void => {
    deadLetters.write({
      reason: 'amplitude_payload_too_large',
      detail: `${size} bytes is over the ${limits.maxBytes}-byte request limit`,
      source,
      retriable: false,
      payload: JSON.parse(json) as unknown,
    });
  };

  /** One identification (identify mode, once the fold is complete). */
  const enqueueIdentification = (item: LaneIdentification): void => {
    if (item.size > limits.maxBytes) return tooLarge(item.size, item.source, item.json);
    if (run === 'dry-run') summary.mapped++;
    else if (run === 'output') {
      summary.written++;
      outBuffer.push(item.json);
    } else {
      lanes.addIdentification(laneOf(item.id, laneCount), item);
    }
  };

  /** The accepted impressions of one decoded batch, as events (event mode) or into the fold (identify). */
  const enqueueDecoded = (d: DecodedBatch): void => {
    const bytes = Buffer.from(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength);
    const it = d.items;
    for (let i = 0; i < d.count; i++) {
      const f = i * ITEM_FIELDS;
      if (seen) {
        const k = d.coalesceKeys?.[i] as string;
        if (seen.has(k)) {
          summary.coalesced++;
          continue;
        }
        seen.add(k);
      }
      if (fold) {
        fold.add({ key: d.keys[i] as string, flag: d.flags[i] as string, treatment: d.treatments[i] as string, time: it[f + 5] as number });
        continue;
      }
      const start = it[f] as number;
      const size = it[f + 1] as number;
      const line = it[f + 2] as number;
      const index = it[f + 3] as number;
      const item = it[f + 4] as number;
      if (size > limits.maxBytes) {
        tooLarge(size, impressionPosition(d.file, line, index, item), bytes.toString('utf8', start, start + size));
        continue;
      }
      if (run === 'dry-run') summary.mapped++;
      else if (run === 'output') {
        summary.written++;
        outBuffer.push(d.bytes.subarray(start, start + size));
      } else {
        lanes.addEvent(it[f + 6] as number, d.bytes, start, size, d.file, line, index, item);
      }
    }
  };

  // --- Impressions -------------------------------------------------------------------------------------------
  const fold = opts.mode === 'identify' ? new IdentifyFold() : undefined;

  /** Applies one decoded batch, in input order: counts, dead letters, then its impressions. */
  const apply = (d: DecodedBatch): void => {
    summary.recordsRead += d.records;
    summary.impressionsRead += d.impressions;
    for (const shape of IMPRESSION_SHAPES) summary.byShape[shape] += d.byShape[shape];
    if (d.oldest < oldest) oldest = d.oldest;
    if (d.newest > newest) newest = d.newest;
    for (const r of d.rejects) deadLetters.write({ reason: r.reason, detail: r.detail, source: r.source, retriable: false, payload: r.payload });
    enqueueDecoded(d);
  };

  /** Batches handed to the decoders: applied in input order, whichever finishes first. */
  const decoding = new InOrder<DecodedBatch>();
  const dispatch = (writer: RecordBatchWriter): void => {
    const batch = writer.take();
    if (batch) decoding.add(pool.decode(batch));
  };
  /** Applies decoded batches (see InOrder.drain), pausing while the lanes are full. */
  const drain = (keep: number): Promise<void> =>
    decoding.drain(keep, async (d) => {
      if (lanes.failure !== undefined) return true;
      apply(d);
      await flushOutput();
      pool.recycle(d);
      progress();
      await lanes.waitForRoom();
      return true;
    });

  // --- Read ------------------------------------------------------------------------------------------------
  let interrupted = false;
  let failure: unknown;
  // A stop does not wait out throttle delays (only requests in flight finish). In identify mode a stop ends the
  // sending itself (README): the requests queued in the lanes, and what they collected, do not go out after it.
  const stopHolding = (): void => (opts.mode === 'identify' ? lanes.stopSending() : lanes.stopHolding());
  opts.signal?.addEventListener('abort', stopHolding, { once: true });
  try {
    for (const input of inputs) {
      if (lanes.failure !== undefined) break;
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      const splitter = new RecordSplitter(opts.maxRecordBytes);
      const writer = new RecordBatchWriter(input.name, scratch);
      const raw = input.open();
      /** This file cannot be read on (not a dump, a record too large): what it held before is still sent. */
      let givenUp = false;
      try {
        for await (const chunk of untilStopped(decodedChunks(raw, (n) => (summary.bytesRead += n)), raw, opts.signal)) {
          splitter.push(chunk, writer);
          if (writer.size >= BATCH_BYTES) {
            dispatch(writer);
            await drain(maxDecoding - 1);
          }
          if (lanes.failure !== undefined) break;
          if (opts.signal?.aborted) {
            interrupted = true;
            break;
          }
        }
        if (opts.signal?.aborted) interrupted = true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || (err as { errno?: number }).errno === -5) {
          // A cut-off gzip (Z_BUF_ERROR) holds good records up to where it ends. A damaged one (Z_DATA_ERROR) is found
          // only where the damage breaks decoding or at the end, by its checksum: the records read before, already
          // sent, may be wrong too, and the text decoded in the step that found it is lost. Say which, and where.
          const truncated = code === 'Z_BUF_ERROR' || (err as { errno?: number }).errno === -5;
          const line = splitter.currentLine;
          const detail = truncated
            ? `${input.name}: ${(err as Error).message} (file truncated); the records before line ${line} were read`
            : `${input.name}: ${(err as Error).message}: the gzip data is damaged, which gzip finds only where it breaks decoding or at the end of the file, so the records read from this file before line ${line} (${run === 'send' ? 'sent' : run === 'output' ? 'written' : 'mapped'} already) may be wrong too; nothing from line ${line} on was read`;
          deadLetters.write({ reason: 'invalid_gzip', detail, source: { file: input.name, line }, retriable: false, payload: null });
          if (!truncated) {
            // The record cut where decoding stopped is not a record of the file: it is not a dead letter of its own.
            givenUp = true;
            logger.warn(detail);
          }
        } else if (err instanceof BadDataError) {
          // This file cannot be read on; the run goes on with the next one, and what was read is delivered.
          givenUp = true;
          deadLetters.write({ reason: err.code.toLowerCase(), detail: `${input.name}: ${err.message}; the rest of this file was not read`, source: { file: input.name }, retriable: false, payload: null });
          logger.warn(`${input.name}: ${err.message}; the rest of this file was not read`);
        } else {
          throw err;
        }
      } finally {
        raw.destroy();
      }
      if (!interrupted && !givenUp) splitter.end(writer);
      dispatch(writer);
      writer.release();
      if (interrupted) break;
    }
    // What was read is decoded and delivered, interrupted or not.
    await drain(0);

    // Identify: the fold is complete only now (latest treatment wins over the whole run). An interrupted
    // read leaves it incomplete, and sending it could set an older treatment: nothing is sent then.
    if (fold && lanes.failure === undefined && !interrupted) {
      summary.usersFolded = fold.userCount;
      for (const [key, flags] of fold.entries()) {
        // A stop ends this loop too: it can take many requests (one per 1000 users), and the run would go on
        // sending them all, past the CLI's drain limit. What is sent stays right; a rerun sends the rest.
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
        const json = JSON.stringify(toIdentification(key, flags, opts.identity, pc.userPropertyPrefix));
        enqueueIdentification({ ...identifyItem(key, json), source: { user: key } });
        if (lanes.busy || outBuffer.length >= 1000) {
          await flushOutput();
          await lanes.waitForRoom();
          if (lanes.failure !== undefined) break;
        }
      }
    }
    await flushOutput();
    lanes.flush();
    await lanes.done();
  } catch (err) {
    // Ends the run below, once the summary so far is made: the CLI prints it with the error.
    failure = err;
  } finally {
    // Whatever happened, stop the decoders, let in-flight requests finish and close the output file.
    await pool.close();
    await lanes.abandon();
    opts.signal?.removeEventListener('abort', stopHolding);
    summary.requests = lanes.requests;
    // A write that failed (a full disk) ends the run with its error: the file is not whole.
    if (out) await closeOutput(out).catch((err: unknown) => (failure ??= err));
  }

  summary.oldestImpression = Number.isFinite(oldest) ? new Date(oldest).toISOString() : undefined;
  summary.newestImpression = newest > 0 ? new Date(newest).toISOString() : undefined;
  summary.deadLetters = deadLetters.count - deadLettersAtStart;
  const byReason = deadLetters.counts();
  for (const [k, v] of Object.entries(byReason)) {
    const d = v - (deadLetterCountsAtStart[k] ?? 0);
    if (d > 0) summary.deadLettersByReason[k] = d;
  }
  summary.durationMs = Date.now() - started;
  summary.impressionsPerSecond = summary.durationMs > 0 ? Math.round((summary.impressionsRead * 1000) / summary.durationMs) : summary.impressionsRead;
  progress();
  const { deadLetters: _d, deadLettersByReason: _r, ...counts } = summary;
  // A stop that ended a wait between two attempts fails that request with an InterruptedError: the run was stopped, not failed.
  const stoppedRetrying = failure instanceof InterruptedError && opts.signal?.aborted === true;
  if (failure !== undefined && !stoppedRetrying) throw withSummary(failure, counts);
  // Held items, and in identify mode the requests queued in the lanes, are dropped only by a stop (a failure has thrown
  // above): even after reading (and folding) ended, that stop cut the run short.
  if (interrupted || stoppedRetrying || lanes.droppedHeld > 0 || lanes.droppedByStop > 0) {
    const held = lanes.droppedHeld > 0 ? `, ${lanes.droppedHeld} held back (after a 429, or paced over HTTP V2) not sent` : '';
    // Identify mode has no insert_ids: a rerun is safe because it sets the same latest treatments again.
    const message =
      opts.mode === 'identify'
        ? summary.usersFolded === 0
          ? `stopped while reading, after ${summary.impressionsRead} impressions: identify mode sends only once every input is read (the latest treatment must win), so nothing was sent; running the same command again is safe`
          : `stopped after ${summary.identificationsSent} of ${summary.usersFolded} users' identifications were sent${held}; running the same command again is safe: it sets the same latest treatments again`
        : `stopped after ${summary.impressionsRead} impressions (${summary.eventsSent} delivered${held}); running the same command again is safe: insert_ids deduplicate what was already sent`;
    const err = new InterruptedError(message);
    throw withSummary(err, counts);
  }
  return summary;
}
