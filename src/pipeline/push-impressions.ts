import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type { Got } from 'got';
import pLimit, { type LimitFunction } from 'p-limit';
import { IdentifyClient, identifyItem, IDENTIFY_LIMITS, type IdentifyItem } from '../amplitude/identify-client.js';
import type { Rejection, WireItem } from '../amplitude/ingestion-delivery.js';
import { IngestionClient, INGESTION_LIMITS } from '../amplitude/ingestion-client.js';
import { ingestionBaseUrl, type CoalesceMode, type Config, type ImpressionIdentity, type IngestionApi, type PushMode } from '../config/types.js';
import { InterruptedError } from '../errors.js';
import type { BodyBuilder } from '../http/body.js';
import { createHttp } from '../http/client.js';
import type { RetryPolicy } from '../http/retry.js';
import { decodedChunks, resolveInputs, type InputSource } from '../impressions/input.js';
import { readRecord, type ShapeSink } from '../impressions/shapes.js';
import { RecordSplitter, type RawRecord } from '../impressions/splitter.js';
import { IMPRESSION_SHAPES, type Impression, type ImpressionShape } from '../impressions/types.js';
import type { Logger } from '../log/logger.js';
import { checkId, coalesceKey, IdentifyFold, impressionToEvent, toIdentification, type EventMapping } from '../mapping/impression-to-amplitude.js';
import { VERSION } from '../version.js';
import type { DeadLetterWriter, SourcePosition } from './dead-letters.js';

/** Amplitude deduplicates `insert_id` within 7 days (specs/amplitude.md). */
const DEDUPE_WINDOW_MS = 7 * 24 * 3600 * 1000;

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
  now?: () => number;
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
  /** Impressions older than Amplitude's 7-day dedupe window: a replay of these could duplicate. */
  olderThanDedupeWindow: number;
  deadLetters: number;
  deadLettersByReason: Record<string, number>;
  durationMs: number;
  impressionsPerSecond: number;
}

interface Item extends WireItem {
  source: SourcePosition;
}

/**
 * An event already written into its lane's request body (BodyBuilder): the batch keeps its bytes, not its
 * JSON string, and the text is decoded again only if Amplitude's answer needs the event on its own.
 */
class EncodedEvent implements Item {
  constructor(
    private readonly body: BodyBuilder,
    private readonly start: number,
    readonly size: number,
    readonly id: string,
    readonly source: SourcePosition,
  ) {}

  get json(): string {
    return this.body.text(this.start, this.size);
  }
}

interface Lane<T extends WireItem> {
  limit: LimitFunction;
  items: T[];
  bytes: number;
  /** Event mode: the request body of `items`, encoded as they arrive. */
  body: BodyBuilder | undefined;
}

function retryPolicy(c: Config): RetryPolicy {
  return { retries: c.http.retries, baseDelayMs: c.http.retryBaseDelayMs, maxDelayMs: c.http.retryMaxDelayMs };
}

/** FNV-1a over UTF-16 code units: cheap, stable lane choice per user. */
function laneOf(id: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % lanes;
}

function sourceOf(file: string, rec: RawRecord, item: number | undefined): SourcePosition {
  const s: SourcePosition = { file, line: rec.line };
  if (rec.index !== undefined) s['index'] = rec.index;
  if (item !== undefined) s['item'] = item;
  return s;
}

/**
 * push-impressions: FME impression dumps -> Amplitude events (Batch / HTTP V2) or user properties (Identify).
 *
 * Reading is a stream (flat memory) processed one decoded chunk at a time without per-record awaits.
 * Events go to `concurrency` lanes by a hash of the user; each lane sends its batches one after another,
 * so one user's requests keep their order and a throttled user stalls only its lane (p-limit(1) per lane).
 * Reading waits while too many batches are in flight.
 */
export async function runPushImpressions(opts: PushImpressionsOptions): Promise<PushImpressionsSummary> {
  const started = Date.now();
  const now = opts.now ?? Date.now;
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
    olderThanDedupeWindow: 0,
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

  // --- Where the Amplitude payloads go -------------------------------------------------------------------
  const http = run === 'send' ? (opts.http ?? createHttp({ timeoutMs: config.http.timeoutMs, maxSockets: pc.concurrency + 2 })) : undefined;
  const common = {
    baseUrl: ingestionBaseUrl(config.amplitude),
    apiKey: config.amplitude.apiKey ?? '',
    retry: retryPolicy(config),
    logger,
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

  let out: WriteStream | undefined;
  if (run === 'output' && opts.output) {
    out = createWriteStream(opts.output);
    await once(out, 'open');
  }
  let outBuffer: string[] = [];
  const flushOutput = async (): Promise<void> => {
    if (!out || outBuffer.length === 0) return;
    const text = `${outBuffer.join('\n')}\n`;
    outBuffer = [];
    if (!out.write(text)) await once(out, 'drain');
  };

  // --- Lanes of batches ------------------------------------------------------------------------------------
  const laneCount = Math.max(1, pc.concurrency);
  const maxInflight = laneCount * 2;
  let inflight = 0;
  let waiters: (() => void)[] = [];
  let failure: unknown;
  const lanes: Lane<Item>[] = Array.from({ length: laneCount }, () => ({ limit: pLimit(1), items: [], bytes: 0, body: undefined }));
  const all = new Set<Promise<void>>();

  const reject = (item: Item, r: Rejection): void => {
    deadLetters.write({ reason: r.reason, detail: r.detail, status: r.status, source: item.source, retriable: r.retriable, payload: JSON.parse(item.json) as unknown });
  };

  const submit = (lane: Lane<Item>): void => {
    const items = lane.items;
    const body = lane.body?.finish();
    lane.items = [];
    lane.bytes = 0;
    lane.body = undefined;
    if (items.length === 0) return;
    inflight++;
    const p = lane
      .limit(async () => {
        if (failure !== undefined) return;
        summary.requests++;
        // Await first, then add: `x += await y` would read x before the await and lose other lanes' counts.
        if (ingestion) {
          const sent = await ingestion.deliver(items, reject, body);
          summary.eventsSent += sent;
        } else if (identify) {
          const sent = await identify.deliver(items as (IdentifyItem & Item)[], reject);
          summary.identificationsSent += sent;
        }
        progress();
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        inflight--;
        all.delete(p);
        const w = waiters;
        waiters = [];
        for (const f of w) f();
      });
    all.add(p);
  };

  const waitForRoom = async (): Promise<void> => {
    while (inflight >= maxInflight && failure === undefined) await new Promise<void>((r) => waiters.push(r));
  };

  const enqueue = (item: Item): void => {
    if (item.size > limits.maxBytes) {
      deadLetters.write({
        reason: 'amplitude_payload_too_large',
        detail: `${item.size} bytes is over the ${limits.maxBytes}-byte request limit`,
        source: item.source,
        retriable: false,
        payload: JSON.parse(item.json) as unknown,
      });
      return;
    }
    if (run === 'dry-run') {
      summary.mapped++;
      return;
    }
    if (run === 'output') {
      summary.written++;
      outBuffer.push(item.json);
      return;
    }
    const lane = lanes[laneOf(item.id, laneCount)] as Lane<Item>;
    if (lane.items.length >= limits.maxItems || lane.bytes + item.size + 1 > limits.maxBytes) submit(lane);
    if (ingestion) {
      lane.body ??= ingestion.newBody();
      lane.items.push(new EncodedEvent(lane.body, lane.body.add(item.json, item.size), item.size, item.id, item.source));
    } else {
      lane.items.push(item);
    }
    lane.bytes += item.size + 1;
  };

  // --- Impressions -------------------------------------------------------------------------------------------
  const mapping: EventMapping = { eventType: pc.eventType, identity: opts.identity, propertyNames: pc.propertyNames, library: `amp-fme/${VERSION}` };
  const seen = opts.coalesce === 'first' ? new Set<string>() : undefined;
  const fold = opts.mode === 'identify' ? new IdentifyFold() : undefined;
  const minIdLength = opts.mode === 'event' ? config.amplitude.minIdLength : undefined;
  const dedupeCutoff = now() - DEDUPE_WINDOW_MS;
  let warnedOld = false;

  // The record being read: set by handleRecord, so that the per-impression path allocates no closures.
  let recFile = '';
  let rec: RawRecord = { text: '', line: 0, index: undefined };
  const onImpression = (imp: Impression, item: number | undefined): void => {
    if (imp.time < oldest) oldest = imp.time;
    if (imp.time > newest) newest = imp.time;
    if (opts.mode === 'event' && imp.time < dedupeCutoff) {
      summary.olderThanDedupeWindow++;
      if (!warnedOld) {
        warnedOld = true;
        logger.warn(
          `impressions from ${new Date(imp.time).toISOString()} are older than Amplitude's 7-day insert_id dedupe window: sending them again later could duplicate them`,
          sourceOf(recFile, rec, item),
        );
      }
    }
    const problem = checkId(imp.key, minIdLength);
    if (problem) {
      const detail = opts.mode === 'identify' && problem.reason === 'id_too_short' ? `key is ${imp.key.length} characters; the Identify API takes ids of 5 or more` : problem.detail;
      deadLetters.write({ reason: problem.reason, detail, source: sourceOf(recFile, rec, item), retriable: false, payload: imp });
      return;
    }
    if (seen) {
      const k = coalesceKey(imp);
      if (seen.has(k)) {
        summary.coalesced++;
        return;
      }
      seen.add(k);
    }
    if (fold) {
      fold.add(imp);
      return;
    }
    const json = JSON.stringify(impressionToEvent(imp, mapping));
    enqueue({ json, size: Buffer.byteLength(json), id: imp.key, source: sourceOf(recFile, rec, item) });
  };

  const sink: ShapeSink = {
    impression: (imp, shape, item) => {
      summary.impressionsRead++;
      summary.byShape[shape]++;
      onImpression(imp, item);
    },
    invalid: (reason, detail, payload, item) => {
      deadLetters.write({ reason, detail, source: sourceOf(recFile, rec, item), retriable: false, payload });
    },
  };

  const handleRecord = (file: string, record: RawRecord): void => {
    recFile = file;
    rec = record;
    summary.recordsRead++;
    if (rec.broken) {
      deadLetters.write({ reason: 'invalid_json', detail: rec.broken, source: sourceOf(file, rec, undefined), retriable: false, payload: rec.text });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(rec.text);
    } catch (err) {
      deadLetters.write({ reason: 'invalid_json', detail: (err as Error).message, source: sourceOf(file, rec, undefined), retriable: false, payload: rec.text });
      return;
    }
    readRecord(value, sink);
  };

  // --- Read ------------------------------------------------------------------------------------------------
  let interrupted = false;
  const records: RawRecord[] = [];
  try {
    for (const input of inputs) {
      if (failure !== undefined) break;
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      const splitter = new RecordSplitter();
      const raw = input.open();
      try {
        for await (const chunk of decodedChunks(raw, (n) => (summary.bytesRead += n))) {
          records.length = 0;
          splitter.push(chunk, records);
          for (const rec of records) handleRecord(input.name, rec);
          await flushOutput();
          progress();
          await waitForRoom();
          if (failure !== undefined) break;
          if (opts.signal?.aborted) {
            interrupted = true;
            break;
          }
        }
      } catch (err) {
        if ((err as { code?: string }).code === 'Z_DATA_ERROR' || (err as { code?: string }).code === 'Z_BUF_ERROR' || (err as { errno?: number }).errno === -5) {
          // A cut-off or corrupt gzip: what was read so far counts, the rest of this file is lost: say so.
          deadLetters.write({ reason: 'invalid_gzip', detail: `${input.name}: ${(err as Error).message} (file truncated or corrupt); the records before this point were read`, source: { file: input.name }, retriable: false, payload: null });
        } else {
          throw err;
        }
      } finally {
        raw.destroy();
      }
      records.length = 0;
      if (!interrupted) {
        splitter.end(records);
        for (const rec of records) handleRecord(input.name, rec);
      }
      if (interrupted) break;
    }

    // Identify: the fold is complete only now (latest treatment wins over the whole run). An interrupted
    // read leaves it incomplete, and sending it could set an older treatment: nothing is sent then.
    if (fold && failure === undefined && !interrupted) {
      summary.usersFolded = fold.userCount;
      for (const [key, flags] of fold.entries()) {
        const json = JSON.stringify(toIdentification(key, flags, opts.identity, pc.userPropertyPrefix));
        const item = { ...identifyItem(key, json), source: { user: key } };
        enqueue(item);
        if (inflight >= maxInflight) {
          await flushOutput();
          await waitForRoom();
          if (failure !== undefined) break;
        }
      }
    }
    await flushOutput();
    for (const lane of lanes) submit(lane);
    await Promise.all([...all]);
  } finally {
    // Whatever happened, let in-flight requests finish and close the output file.
    for (const lane of lanes) lane.items = [];
    await Promise.allSettled([...all]);
    if (out) {
      out.end();
      await once(out, 'close');
    }
  }
  if (failure !== undefined) throw failure;

  summary.oldestImpression = Number.isFinite(oldest) ? new Date(oldest).toISOString() : undefined;
  summary.newestImpression = newest > 0 ? new Date(newest).toISOString() : undefined;
  summary.deadLetters = deadLetters.count - deadLettersAtStart;
  const counts = deadLetters.counts();
  for (const [k, v] of Object.entries(counts)) {
    const d = v - (deadLetterCountsAtStart[k] ?? 0);
    if (d > 0) summary.deadLettersByReason[k] = d;
  }
  summary.durationMs = Date.now() - started;
  summary.impressionsPerSecond = summary.durationMs > 0 ? Math.round((summary.impressionsRead * 1000) / summary.durationMs) : summary.impressionsRead;
  progress();
  if (interrupted) {
    throw new InterruptedError(
      `stopped after ${summary.impressionsRead} impressions (${summary.eventsSent + summary.identificationsSent} delivered); running the same command again is safe: insert_ids deduplicate what was already sent`,
    );
  }
  return summary;
}
