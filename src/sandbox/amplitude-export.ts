/**
 * Emulator of Amplitude's Export API (`GET /api/2/export`), following specs/amplitude.md: Basic auth,
 * `start`/`end` as inclusive zero-padded UTC hours, a zip of gzip'd JSON-lines entries named
 * `<projectId>/<projectId>_2021-02-22_21#627.json.gz` (hour not padded, partitions not sequential),
 * 404 `Raw data files were not found.` for a range without rows, 403 `Invalid API Key`.
 *
 * The zip is generated and streamed entry by entry, so a source of millions of rows (the benchmark,
 * `amp-fme sandbox`) never sits in memory as one archive. Scripted faults come from a FaultScript.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { HOUR_MS, formatHour } from '../amplitude/hours.js';
import { FaultScript, sendForced, type ForcedResponse } from './faults.js';
import type { Route } from './server.js';
import { sendText } from './server.js';
import { ZipWriter, type ZipMethod } from './zip-writer.js';

const gzipAsync = promisify(gzip);

/** One exported row: a JSON line, or an object serialised as one. */
export type ExportRow = string | object;

/** The rows uploaded in one hour (`hourMs` = epoch ms of the hour's start, UTC). */
export type ExportSource = (hourMs: number) => Iterable<ExportRow>;

/** In-memory rows filed by the hour of their `server_upload_time` (the hour the Export API selects on). */
export class ExportStore {
  private readonly byHour = new Map<number, ExportRow[]>();
  private count = 0;

  /** Adds rows; each must carry a `server_upload_time` (`2021-02-22 21:10:00.123000`, UTC). */
  add(rows: Iterable<ExportRow>): this {
    for (const row of rows) {
      const obj = (typeof row === 'string' ? JSON.parse(row) : row) as { server_upload_time?: unknown };
      const hour = uploadHour(obj.server_upload_time);
      if (hour === undefined) throw new Error(`ExportStore: row without a valid server_upload_time: ${String(obj.server_upload_time)}`);
      let list = this.byHour.get(hour);
      if (!list) this.byHour.set(hour, (list = []));
      list.push(row);
      this.count++;
    }
    return this;
  }

  /** Number of rows held. */
  get size(): number {
    return this.count;
  }

  /** Upload hours that have rows, ascending. */
  hours(): number[] {
    return [...this.byHour.keys()].sort((a, b) => a - b);
  }

  clear(): void {
    this.byHour.clear();
    this.count = 0;
  }

  /** The store as an emulator source. */
  readonly source: ExportSource = (hourMs) => this.byHour.get(hourMs) ?? [];
}

export interface ExportZipOptions {
  method: ZipMethod;
  dataDescriptor?: boolean;
  zip64?: boolean;
}

export interface ExportEmulatorOptions {
  apiKey: string;
  secretKey: string;
  source: ExportSource | ExportStore;
  /** Project id used in entry names. */
  projectId?: number;
  /** How the archive is written; STORED without descriptors by default. */
  zip?: ExportZipOptions;
  /** Entries an hour's rows are spread over (fewer when there are fewer rows). Default 2. */
  entriesPerHour?: number;
  /** Rows per entry at most: a big hour becomes more entries, so the emulator's memory stays bounded. Default 20000. */
  maxRowsPerEntry?: number;
  /** Answer "too large" for requests spanning more hours than this (to exercise halving). */
  maxHoursPerRequest?: number;
  /** Upload hours (epoch ms) too big for the Export API: any request that includes one answers "too large". */
  hugeHours?: number[];
  /**
   * The "too large" answer: 400 (over 4 GB) or 504 (timed out on volume), per specs/amplitude.md. Default 400.
   * It is given to every request that includes a huge hour; a 504 that passes (a gateway timeout) is a scripted fault.
   */
  tooLargeStatus?: 400 | 504;
  /**
   * How long the "too large" answer takes to come (default 0). Amplitude's responses can take minutes (specs/amplitude.md):
   * a 504 that comes after the client's own timeout is, for the client, no answer at all.
   */
  tooLargeDelayMs?: number;
  /** gzip level of the entries (1 is fastest, for benchmarks). Default 6. */
  gzipLevel?: number;
  faults?: FaultScript;
  /**
   * A prebuilt zip file to serve for a request's [start, end] (epoch ms of hour starts), or undefined to
   * build one from `source`. The benchmark uses it so that building zips is not part of the timed run.
   */
  prebuiltArchive?: (start: number, end: number) => string | undefined;
}

/** What the emulator saw: one record per request (status 0 = connection reset). */
export interface ExportRequestRecord {
  start: string;
  end: string;
  status: number;
}

export interface ExportEmulator {
  route: Route;
  requests: ExportRequestRecord[];
  faults: FaultScript;
}

const HOUR_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/;
const MAX_HOURS = 365 * 24;

/** Epoch ms of a UTC date and hour, or undefined when no such hour exists (parsed here, not with the product's code it checks). */
function utcHour(y: string, mo: string, d: string, h: string): number | undefined {
  const t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h));
  return new Date(t).toISOString().startsWith(`${y}-${mo}-${d}T${h}`) ? t : undefined;
}

function parseHourParam(value: string | null): number | undefined {
  const m = value === null ? null : HOUR_RE.exec(value);
  return m ? utcHour(m[1] as string, m[2] as string, m[3] as string, m[4] as string) : undefined;
}

const UPLOAD_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):\d{2}:\d{2}/;

/** The UTC hour (epoch ms) of a `server_upload_time` such as `2021-02-22 21:10:00.123000`. */
function uploadHour(v: unknown): number | undefined {
  const m = typeof v === 'string' ? UPLOAD_TIME_RE.exec(v) : null;
  return m ? utcHour(m[1] as string, m[2] as string, m[3] as string, m[4] as string) : undefined;
}

function checkAuth(req: IncomingMessage, apiKey: string, secretKey: string): boolean {
  const header = req.headers.authorization ?? '';
  const m = /^Basic\s+(\S+)$/i.exec(header);
  if (!m) return false;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && decoded.slice(0, colon) === apiKey && decoded.slice(colon + 1) === secretKey;
}

/** `187520/187520_2021-02-22_21#627.json.gz`: the hour is not zero-padded (specs/amplitude.md). */
function entryName(projectId: number, hourMs: number, partition: number): string {
  const d = new Date(hourMs);
  const day = `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}`;
  return `${projectId}/${projectId}_${day}_${d.getUTCHours()}#${partition}.json.gz`;
}

/** Passes the first `limit` bytes to `res` and swallows the rest: a download cut short but ended cleanly. */
function truncatingSink(res: ServerResponse, limit: number): Writable {
  let sent = 0;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (sent >= limit) return cb();
      const part = sent + chunk.length > limit ? chunk.subarray(0, limit - sent) : chunk;
      sent += part.length;
      if (res.write(part)) return cb();
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        cb();
      };
      res.on('drain', done);
      res.on('close', done);
    },
  });
}

export function createExportEmulator(options: ExportEmulatorOptions): ExportEmulator {
  const faults = options.faults ?? new FaultScript();
  const requests: ExportRequestRecord[] = [];
  const source: ExportSource = options.source instanceof ExportStore ? options.source.source : options.source;
  const projectId = options.projectId ?? 187520;
  const entriesPerHour = Math.max(1, options.entriesPerHour ?? 2);
  const maxRowsPerEntry = Math.max(1, options.maxRowsPerEntry ?? 20_000);
  const gzipLevel = options.gzipLevel ?? 6;

  const toLine = (row: ExportRow): string => (typeof row === 'string' ? row : JSON.stringify(row));

  /** Streams the archive of [start, end]; answers 404 when no hour has rows. Returns the status sent. */
  async function serve(res: ServerResponse, start: number, end: number, fault: ForcedResponse | undefined, record: (status: number) => void): Promise<number> {
    let zip: ZipWriter | undefined;
    let sink: Writable | undefined;
    for (let hour = start; hour <= end; hour += HOUR_MS) {
      const it = source(hour)[Symbol.iterator]();
      let next = it.next();
      if (next.done) continue;
      if (!zip) {
        res.writeHead(200, { 'content-type': 'application/zip' });
        sink = fault?.truncateAt !== undefined ? truncatingSink(res, fault.truncateAt) : res;
        zip = new ZipWriter({ ...(options.zip ?? { method: 'stored' }), date: new Date(hour) }, sink);
      }
      // Partition numbers with gaps, so entry names do not sort like numbers (#101, #1027, #138, ...).
      let n = 0;
      const hourSalt = Math.floor(hour / HOUR_MS) % 7;
      while (!next.done) {
        // A group of rows is spread over `entriesPerHour` entries in order; a big hour yields several groups.
        const group: string[] = [];
        const groupSize = entriesPerHour * maxRowsPerEntry;
        while (!next.done && group.length < groupSize) {
          group.push(toLine(next.value));
          next = it.next();
        }
        const parts = Math.min(entriesPerHour, group.length);
        const per = Math.ceil(group.length / parts);
        // Compress the group's entries in parallel (zlib's thread pool), then write them in order.
        const compressed: Promise<Buffer>[] = [];
        for (let i = 0; i < group.length; i += per) {
          compressed.push(gzipAsync(`${group.slice(i, i + per).join('\n')}\n`, { level: gzipLevel }));
        }
        // Settle them all even if writing fails midway, so no rejection goes unhandled.
        const settled = Promise.allSettled(compressed);
        try {
          for (const data of compressed) {
            await zip.addEntry(entryName(projectId, hour, 101 + n * 37 + hourSalt), await data);
            n++;
          }
        } finally {
          await settled;
        }
      }
    }
    if (!zip) {
      record(404);
      sendText(res, 404, 'Raw data files were not found.');
      return 404;
    }
    record(200);
    await zip.finish();
    if (sink && sink !== res) {
      const s = sink;
      await new Promise<void>((resolve, reject) => s.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    res.end();
    return 200;
  }

  const route: Route = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    if (url.pathname !== '/api/2/export') return false;
    if (req.method !== 'GET') {
      sendText(res, 405, 'Method Not Allowed');
      return true;
    }
    const startText = url.searchParams.get('start') ?? '';
    const endText = url.searchParams.get('end') ?? '';
    // Recorded on arrival, so the order is the order of requests; the status is filled in once known.
    const entry: ExportRequestRecord = { start: startText, end: endText, status: 0 };
    requests.push(entry);
    const record = (status: number): void => {
      entry.status = status;
    };

    // Infrastructure faults come before the API's own checks, as an edge proxy's would.
    const fault = faults.next();
    if (fault && fault.truncateAt === undefined && !(fault.afterProcessing && fault.status === 200)) {
      record(fault.reset ? 0 : fault.status);
      await sendForced(res, fault);
      return true;
    }
    if (fault?.delayMs) await sleep(fault.delayMs);

    if (!checkAuth(req, options.apiKey, options.secretKey)) {
      record(403);
      sendText(res, 403, 'Invalid API Key');
      return true;
    }
    const start = parseHourParam(startText);
    const end = parseHourParam(endText);
    if (start === undefined || end === undefined) {
      record(400);
      sendText(res, 400, 'start and end must be hours formatted as YYYYMMDDTHH');
      return true;
    }
    const hours = (end - start) / HOUR_MS + 1;
    if (hours < 1) {
      record(400);
      sendText(res, 400, 'end must not be before start');
      return true;
    }
    if (hours > MAX_HOURS) {
      record(400);
      sendText(res, 400, 'The date range cannot exceed 365 days');
      return true;
    }
    const tooMany = options.maxHoursPerRequest !== undefined && hours > options.maxHoursPerRequest;
    if (tooMany || (options.hugeHours ?? []).some((h) => h >= start && h <= end)) {
      const status = options.tooLargeStatus ?? 400;
      if (options.tooLargeDelayMs) await sleep(options.tooLargeDelayMs);
      record(status);
      sendText(res, status, status === 504 ? 'Gateway Timeout' : `Export too large: ${formatHour(start)}..${formatHour(end)} exceeds the size limit`);
      return true;
    }
    try {
      const prebuilt = options.prebuiltArchive?.(start, end);
      if (prebuilt !== undefined) {
        const size = (await stat(prebuilt)).size;
        record(200);
        res.writeHead(200, { 'content-type': 'application/zip', 'content-length': size });
        await pipeline(createReadStream(prebuilt), res);
        return true;
      }
      // The status is known before the body ends: record it first so a test never sees a stale 0.
      record(await serve(res, start, end, fault, record));
    } catch (err) {
      // The client went away mid-download, or the source failed: cut the connection, as a server would.
      record(res.headersSent ? 200 : 500);
      res.destroy(err as Error);
    }
    return true;
  };

  return { route, requests, faults };
}
