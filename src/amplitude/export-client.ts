/**
 * Client of Amplitude's Export API (`GET /api/2/export`, specs/amplitude.md). It downloads one window of
 * upload hours to a temp file (an export can be 4 GB: never in memory), checks that the file is a zip,
 * and classifies every failure: retriable (429, 5xx but 504, network, a 200 that is not a zip), fatal
 * (403: credentials or region), empty (404) or too large (400, 504: the caller halves the window).
 * No answer at all within `http.exportTimeoutMs` is Amplitude's 504 seen from this side (it is still assembling
 * the export: "timed out because of volume", specs/amplitude.md), and is treated as one.
 * A 504 may also be a passing gateway timeout: for a single hour, which cannot be halved, it is retried
 * like a 5xx and only called too large once the retries are used up.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Got, Request, Response } from 'got';
import yauzl from 'yauzl';
import { AmpFmeError, FatalRemoteError, RetriableRemoteError } from '../errors.js';
import { asNetworkError, asTransportError, bodySnippet } from '../http/client.js';
import { withPath } from '../io/file-errors.js';
import { dropCutWord, registerSecret } from '../http/redact.js';
import { parseHttpDate, parseRetryAfter, withRetry, type RetryPolicy } from '../http/retry.js';
import { processExists } from '../io/processes.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { Region } from '../config/types.js';
import { describeWindow, formatHour, halveWindow, HOUR_MS, windowHours, type HourWindow } from './hours.js';

/** A downloaded export on disk. Call `dispose()` when done: it removes the file. */
export interface ExportArchive {
  path: string;
  bytes: number;
  dispose(): Promise<void>;
}

export interface ExportClientOptions {
  /** From `createHttp`, with the long export inactivity timeout (`http.exportTimeoutMs`). */
  http: Got;
  /** `exportBaseUrl(config.amplitude)`, without a trailing slash. */
  baseUrl: string;
  apiKey: string;
  secretKey: string;
  retry: RetryPolicy;
  logger?: Logger;
  /** Where downloads are spooled; `os.tmpdir()` by default. */
  tmpDir?: string;
  /** The configured region, named in the 403 message. */
  region?: Region;
  /** Whether `baseUrl` is amplitude.exportBaseUrl (the region then picks no host): the 403 message names it instead. */
  baseUrlConfigured?: boolean;
  /** `http.exportTimeoutMs`, named in the message of a request that got no answer within it. */
  timeoutMs?: number;
}

/** Whether got had sent the whole request when `err` came (its timings have an upload time). */
function requestSent(err: unknown): boolean {
  return typeof (err as { timings?: { upload?: unknown } } | null)?.timings?.upload === 'number';
}

/** Status of an ExportWindowTooLargeError for a request that got no answer within `http.exportTimeoutMs`. */
export const NO_ANSWER = 0;

/** "answered 504", or "gave no answer within http.exportTimeoutMs (300000 ms)" for NO_ANSWER. */
function answeredText(status: number, timeoutMs: number | undefined): string {
  return status === NO_ANSWER ? `gave no answer within http.exportTimeoutMs${timeoutMs !== undefined ? ` (${timeoutMs} ms)` : ''}` : `answered ${status}`;
}

/**
 * The Export API answered 400 or 504 for this window, or no answer came in time (status NO_ANSWER): it holds too much
 * data for one request. `times` is how many requests got that answer (a single hour's 504 is asked again before it is
 * given up).
 */
export class ExportWindowTooLargeError extends AmpFmeError {
  readonly status: number;
  readonly window: HourWindow;
  readonly times: number;
  /** What happened, for messages: `answered 400`, `gave no answer within http.exportTimeoutMs (...)`. */
  readonly answered: string;
  constructor(window: HourWindow, status: number, detail: string, times = 1, timeoutMs?: number) {
    const answered = answeredText(status, timeoutMs);
    super(
      'EXPORT_WINDOW_TOO_LARGE',
      `Amplitude export of ${describeWindow(window)} ${answered}${times > 1 ? ` ${times} times` : ''} (too much data for one request)${detail ? `: ${detail}` : ''}`,
    );
    this.answered = answered;
    this.status = status;
    this.window = window;
    this.times = times;
  }
}

/**
 * A 504 for a single hour, or no answer in time (NO_ANSWER): retried like a 5xx; `fetchWindow` turns it into
 * ExportWindowTooLargeError once retries run out.
 */
class HourTimeoutError extends RetriableRemoteError {
  readonly snippet: string;
  readonly timeoutStatus: number;
  constructor(window: HourWindow, status: number, snippet: string, retryAfterMs: number | undefined, timeoutMs: number | undefined, options: { cause?: unknown } = {}) {
    super('EXPORT_HOUR_TIMEOUT', `Amplitude export of ${describeWindow(window)} ${answeredText(status, timeoutMs)} (timed out; may be passing)${snippet ? `: ${snippet}` : ''}`, {
      ...(status === NO_ANSWER ? {} : { status }),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...options,
    });
    this.snippet = snippet;
    this.timeoutStatus = status;
  }
}

const ZIP_LOCAL_HEADER = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
const ZIP_EMPTY_ARCHIVE = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
const NO_FILES =
  'a zip of no files: Amplitude answers 404 for a range without data. If this keeps coming, check what answers at amplitude.exportBaseUrl (a proxy?); ' +
  'if the hour really is empty, go on past it with --skip-to';
/** Downloads are named for the process that makes them: `amp-fme-export-<pid>-<random>.zip`. */
const downloadName = (): string => `amp-fme-export-${process.pid}-${randomBytes(6).toString('hex')}.zip`;
const DOWNLOAD_NAME = /^amp-fme-export-(\d+)-[0-9a-f]{12}\.zip$/;
/** How long a download of a process that is gone must have been unchanged before a later run removes it. */
const STALE_DOWNLOAD_MS = 60 * 60 * 1000;
// Amplitude's 404 for a range without data (specs/amplitude.md).
const NO_DATA_RE = /raw data files were not found/i;
// Error bodies are small; a non-200 body longer than this is cut (it is only used in messages).
const MAX_ERROR_BODY = 64 * 1024;

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Opens the zip and walks its central directory: a truncated download fails here, not mid-pipeline. */
async function checkZip(file: string): Promise<number> {
  const zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false });
  try {
    let count = 0;
    for await (const entry of zip.eachEntry()) {
      if (!entry.fileName.endsWith('/')) count++;
    }
    return count;
  } finally {
    zip.close();
  }
}

async function readErrorBody(stream: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    if (size < MAX_ERROR_BODY) chunks.push(b);
    size += b.length;
  }
  const text = Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8');
  return size > MAX_ERROR_BODY ? dropCutWord(text) : text;
}

export class ExportClient {
  private readonly opts: ExportClientOptions;
  private readonly logger: Logger;
  private readonly auth: string;
  /**
   * Amplitude's clock at its latest answer, from the HTTP `Date` header (1 s resolution), and this machine's clock
   * when that answer came: undefined until an answer carried one. See `serverNow`.
   */
  private serverDate: { server: number; local: number } | undefined;

  constructor(options: ExportClientOptions) {
    this.opts = options;
    this.logger = options.logger ?? silentLogger;
    const credentials = Buffer.from(`${options.apiKey}:${options.secretKey}`).toString('base64');
    registerSecret(credentials); // both keys, readable by anyone who sees it
    this.auth = `Basic ${credentials}`;
  }

  get log(): Logger {
    return this.logger;
  }

  /**
   * What time it is by Amplitude's clock, going by the `Date` header of its latest answer and the time elapsed here
   * since (undefined before an answer with one). Lets a run check this machine's clock: the settling lag is counted
   * from the local clock, and one that runs ahead asks for hours that have not settled, or not even begun.
   */
  serverNow(localNow = Date.now()): number | undefined {
    return this.serverDate && this.serverDate.server + (localNow - this.serverDate.local);
  }

  /** Where downloads are spooled. */
  private get dir(): string {
    return this.opts.tmpDir ?? os.tmpdir();
  }

  /**
   * Removes the downloads that runs killed outright (SIGKILL, the OOM killer, a reboot) left behind: an export
   * can be gigabytes, and nothing else would ever remove them. A download is left behind when the process
   * named in its file name is gone and the file has not changed for an hour. The hour is for processes in
   * another pid namespace (a container sharing this temp folder), whose downloads look orphaned from here.
   * Never fails the run: what cannot be removed is logged and left.
   */
  async removeStaleDownloads(now = Date.now()): Promise<{ files: number; bytes: number }> {
    const removed = { files: 0, bytes: 0 };
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return removed;
    }
    for (const name of names) {
      const m = DOWNLOAD_NAME.exec(name);
      const pid = Number(m?.[1]);
      if (!m || processExists(pid)) continue;
      const file = path.join(this.dir, name);
      try {
        const st = await stat(file);
        if (now - st.mtimeMs < STALE_DOWNLOAD_MS) continue;
        await rm(file, { force: true });
        removed.files++;
        removed.bytes += st.size;
      } catch (err) {
        this.logger.debug('could not remove a stale export download', { file, reason: (err as Error).message });
      }
    }
    if (removed.files > 0) {
      this.logger.info(`removed ${removed.files} export download(s) left by killed runs (${(removed.bytes / 1e6).toFixed(1)} MB) from ${this.dir}`, removed);
    }
    return removed;
  }

  /**
   * Downloads one window, retrying what can pass. Returns undefined when the window has no data (404 with
   * Amplitude's text; an empty zip is retried). Throws ExportWindowTooLargeError (400; 504 at once for several hours, which the caller
   * halves, and for a single hour only when the last of its retries answered 504 too), FatalRemoteError
   * (403 and other refusals), or the last RetriableRemoteError once retries run out. `halvable` false (a window a run
   * was part-way through, see exportWindows) has its 504s and timeouts retried as a single hour's are.
   */
  async fetchWindow(window: HourWindow, signal?: AbortSignal, halvable = windowHours(window) > 1): Promise<ExportArchive | undefined> {
    const desc = describeWindow(window);
    let timeouts = 0;
    try {
      return await withRetry(
        (attempt) =>
          this.attempt(window, attempt, signal, halvable).catch((err: unknown) => {
            if (err instanceof HourTimeoutError) timeouts++;
            throw err;
          }),
        this.opts.retry,
        {
          ...(signal ? { signal } : {}),
          onRetry: (err, attempt, delayMs) => {
            this.logger.warn('Amplitude export failed, retrying', { window: desc, attempt, delayMs, reason: err.message });
          },
        },
      );
    } catch (err) {
      // withRetry wraps the last error when it gives up: a 504 to the last attempt makes the hour too large.
      const last = err instanceof RetriableRemoteError ? err.cause : undefined;
      if (last instanceof HourTimeoutError) throw new ExportWindowTooLargeError(window, last.timeoutStatus, last.snippet, timeouts, this.opts.timeoutMs);
      throw err;
    }
  }

  private async attempt(window: HourWindow, attempt: number, signal: AbortSignal | undefined, halvable: boolean): Promise<ExportArchive | undefined> {
    const desc = describeWindow(window);
    const what = `Amplitude export of ${desc}`;
    const file = path.join(this.dir, downloadName());
    let keep = false;
    let request: Request | undefined;
    try {
      this.logger.debug('Requesting Amplitude export', { window: desc, attempt });
      const stream = this.opts.http.stream(`${this.opts.baseUrl}/api/2/export`, {
        searchParams: { start: formatHour(window.start), end: formatHour(window.end) },
        headers: { authorization: this.auth },
        ...(signal ? { signal } : {}),
      });
      request = stream;
      let response: Response;
      try {
        response = await new Promise<Response>((resolve, reject) => {
          stream.once('response', resolve);
          stream.once('error', reject);
        });
      } catch (err) {
        stream.destroy();
        // No answer in time is Amplitude still assembling the export, its 504 seen from here: asked again whole, a window
        // of several hours would time out the same way on every attempt and every later run, and never be halved.
        // Only once the request was sent whole: a timeout before that (a host that never accepts the connection) is the
        // network's, retried as it is, not a reason to halve.
        if (!signal?.aborted && asNetworkError(err, what)?.code === 'TIMEOUT' && requestSent(err)) throw this.noAnswer(window, halvable, err);
        throw err;
      }
      const status = response.statusCode;
      const date = parseHttpDate(response.headers.date);
      if (date !== undefined) this.serverDate = { server: date, local: Date.now() };
      if (status !== 200) {
        const body = await readErrorBody(stream);
        // Amplitude's answer for a range without data (specs/amplitude.md).
        if (status === 404 && NO_DATA_RE.test(body)) return undefined;
        throw this.httpError(window, status, body, response, halvable);
      }
      const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
      out.once('error', (err) => withPath(err, file)); // a full disk names the download, not just "write"
      await pipeline(stream, out);
      const archive = await this.checkDownload(file, what);
      keep = true;
      return archive;
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      throw asTransportError(err, what, this.opts.baseUrl);
    } finally {
      // got does not destroy its streams when they end (autoDestroy is off), and only destroy() takes their listener
      // off the run's stop signal: one left per request kept every request alive and, past ten, made Node print a
      // MaxListenersExceededWarning on stderr, a line that is not JSON among the cron logs.
      request?.destroy();
      if (!keep) await rm(file, { force: true });
    }
  }

  /** No answer within `http.exportTimeoutMs`: treated as Amplitude's 504 (halved, or for a single hour retried first). */
  private noAnswer(window: HourWindow, halvable: boolean, cause: unknown): AmpFmeError {
    const detail = `increase http.exportTimeoutMs if Amplitude needs longer`;
    if (!halvable) return new HourTimeoutError(window, NO_ANSWER, detail, undefined, this.opts.timeoutMs, { cause });
    return new ExportWindowTooLargeError(window, NO_ANSWER, detail, 1, this.opts.timeoutMs);
  }

  /** The error for a non-200 answer other than 404 "no data". */
  private httpError(window: HourWindow, status: number, body: string, response: Response, halvable: boolean): AmpFmeError {
    const desc = describeWindow(window);
    const snippet = bodySnippet(body);
    // A 504 on several hours is halved at once (smaller windows are cheap); a single hour cannot be, so its
    // 504 is retried first: a passing gateway timeout must not stop the run with the S3 remedy. So is one of a window
    // that may not be halved.
    if (status === 504 && !halvable) return new HourTimeoutError(window, 504, snippet, parseRetryAfter(response.headers['retry-after']), undefined);
    if (status === 400 || status === 504) return new ExportWindowTooLargeError(window, status, snippet);
    // 408 (a proxy's or the server's request timeout) passes as a 5xx does; the FME client retries it too.
    if (status === 408 || status === 429 || (status >= 500 && status <= 599)) {
      const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
      return new RetriableRemoteError('EXPORT_HTTP', `Amplitude export of ${desc} answered ${status}${snippet ? `: ${snippet}` : ''}`, {
        status,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    if (status === 401 || status === 403) {
      const region = this.opts.region;
      const other = region === 'eu' ? 'us' : 'eu';
      const regionHint = this.opts.baseUrlConfigured
        ? `amplitude.exportBaseUrl (${new URL(this.opts.baseUrl).origin}) is not the Export API host of the project's data region (amplitude.region${region ? `, "${region}",` : ''} has no effect while it is set)`
        : region
        ? `the project is in the other data region than the configured amplitude.region "${region}" (${other === 'eu' ? 'an' : 'a'} ${other.toUpperCase()} project must use amplitude.region "${other}")`
        : 'the project is in the other data region (EU project on the US host or vice versa: set amplitude.region)';
      return new FatalRemoteError(
        'AMPLITUDE_AUTH',
        `Amplitude export refused with ${status}${snippet ? ` (${snippet})` : ''}. Either the API key / secret key pair is wrong ` +
          `(check amplitude.apiKey and amplitude.secretKey: the project's API key and secret key), or ${regionHint}.`,
        status,
      );
    }
    if (status >= 300 && status < 400) {
      // Redirects are not followed (they would carry the Basic auth elsewhere): one here means the base URL is not the
      // Export API's own (http:// instead of https://, a web page's host). Only the target's origin is shown: the rest
      // of a URL can hold a token.
      const location = String(response.headers.location ?? '');
      let target = '';
      try {
        target = location ? ` to ${new URL(location, this.opts.baseUrl).origin}` : '';
      } catch {
        target = '';
      }
      return new FatalRemoteError(
        'EXPORT_REDIRECT',
        `Amplitude export of ${desc} answered ${status} (a redirect${target}): ${this.opts.baseUrl}/api/2/export is not the Export API's address; ` +
          'check amplitude.exportBaseUrl (https://, the host) or leave it out, and amplitude.region.',
        status,
      );
    }
    if (status === 404) {
      return new FatalRemoteError(
        'EXPORT_NOT_FOUND',
        `Amplitude export of ${desc} answered 404 without Amplitude's "Raw data files were not found." text` +
          `${snippet ? ` (${snippet})` : ''}: the export URL ${this.opts.baseUrl}/api/2/export looks wrong; check amplitude.exportBaseUrl and amplitude.region.`,
        status,
      );
    }
    return new FatalRemoteError('EXPORT_HTTP', `Amplitude export of ${desc} answered an unexpected ${status}${snippet ? `: ${snippet}` : ''}`, status);
  }

  /**
   * A 200 must be a zip that opens and holds entries; anything else is a broken download (specs/amplitude.md):
   * retried, never taken as "no data", which Amplitude says with a 404. An empty zip (from a proxy, say) taken
   * as empty would move the cursor past hours that have events.
   */
  private async checkDownload(file: string, what: string): Promise<ExportArchive> {
    const head = await readHead(file, 512);
    if (!head.subarray(0, 4).equals(ZIP_LOCAL_HEADER)) {
      const snippet = bodySnippet(head.length === 512 ? dropCutWord(head.toString('utf8')) : head.toString('utf8'), 120);
      const body = head.subarray(0, 4).equals(ZIP_EMPTY_ARCHIVE) ? NO_FILES : snippet ? `starts with "${snippet}"` : 'empty body';
      throw new RetriableRemoteError('EXPORT_NOT_ZIP', `${what} answered 200 but the body is not a zip archive of export files (${body})`, { status: 200 });
    }
    const entries = await checkZipOrRetry(file, what);
    if (entries === 0) {
      throw new RetriableRemoteError('EXPORT_NOT_ZIP', `${what} answered 200 but the body is not a zip archive of export files (${NO_FILES})`, { status: 200 });
    }
    const { size } = await stat(file);
    return {
      path: file,
      bytes: size,
      dispose: () => rm(file, { force: true }),
    };
  }
}

async function checkZipOrRetry(file: string, what: string): Promise<number> {
  try {
    return await checkZip(file);
  } catch (err) {
    throw new RetriableRemoteError('EXPORT_BAD_ZIP', `${what} answered 200 but the zip cannot be read (truncated download?): ${(err as Error).message}`, {
      status: 200,
      cause: err,
    });
  }
}

/** How to go on at `hour`, past hours the Export API cannot deliver, when the run's kind is not known (see ExportEventsOptions.goOnAt). */
function goOnByDefault(hour: number): string {
  return `add --skip-to ${formatHour(hour)} to the next --since-last-run (an explicit range: start a new one at ${formatHour(hour)})`;
}

/** One result of `exportWindows`: a window and its archive (undefined when it had no data). */
export interface ExportedWindow {
  window: HourWindow;
  archive: ExportArchive | undefined;
}

/**
 * Exports `window`, halving any part that the API finds too large (400/504) down to single hours, and
 * yields the parts in hour order. The consumer must `dispose()` each archive. A single hour that is still
 * too large cannot be exported through this API: that is fatal, with the remedy (specs/amplitude.md).
 * `splittable` says whether a window may be halved: one that a run was part-way through may not, because
 * its progress marks are positions in its own export, and its halves would be sent again in full.
 */
export async function* exportWindows(
  client: ExportClient,
  window: HourWindow,
  signal?: AbortSignal,
  splittable: (w: HourWindow) => boolean = () => true,
  goOnAt: (hour: number) => string = goOnByDefault,
): AsyncGenerator<ExportedWindow> {
  const todo: HourWindow[] = [window];
  for (let w = todo.pop(); w !== undefined; w = todo.pop()) {
    let archive: ExportArchive | undefined;
    try {
      // A window a run was part-way through is never halved: its 504s and timeouts are retried first, as a single hour's.
      archive = await client.fetchWindow(w, signal, windowHours(w) > 1 && splittable(w));
    } catch (err) {
      if (!(err instanceof ExportWindowTooLargeError)) throw err;
      if (windowHours(w) > 1 && !splittable(w)) {
        throw new FatalRemoteError(
          'EXPORT_RESUME_TOO_LARGE',
          `Amplitude ${err.answered} (too large, or timed out) for ${describeWindow(w)}, which an interrupted run was part-way through. ` +
            `Its delivered batches are recorded as positions in that window's export, so it is not split: its halves would send them to FME again. ` +
            `The next run asks for the whole window again (a timeout may pass). If it keeps failing, export those hours another way and go on ` +
            `after them: ${goOnAt(w.end + HOUR_MS)}.`,
          err.status,
          { cause: err },
        );
      }
      if (windowHours(w) === 1) {
        const answered =
          err.status === 504 || err.status === NO_ANSWER
            ? `it ${err.answered} ${err.times} time${err.times === 1 ? '' : 's'}, retried with backoff: the answer for a request that timed out on the volume of data` +
              (err.status === NO_ANSWER ? '; a longer http.exportTimeoutMs may get it' : '')
            : `it answered ${err.status}, the answer for more than 4 GB of data`;
        throw new FatalRemoteError(
          'EXPORT_HOUR_TOO_LARGE',
          `Amplitude cannot export the single upload hour ${formatHour(w.start)} through the Export API (${answered}). ` +
            `Export that hour with Amplitude's Amazon S3 / cloud storage ` +
            `export instead, and go on after it: ${goOnAt(w.start + HOUR_MS)}.`,
          err.status,
          { cause: err },
        );
      }
      const [first, second] = halveWindow(w);
      client.log.info('Amplitude export window too large, halving', {
        window: describeWindow(w),
        status: err.status === NO_ANSWER ? 'no answer in time' : err.status,
        into: [describeWindow(first), describeWindow(second)],
      });
      // Stack: push the later half first so the earlier half is exported next (hour order).
      todo.push(second, first);
      continue;
    }
    yield { window: w, archive };
  }
}
