import http from 'node:http';
import https from 'node:https';
import type { Got } from 'got';
import { RetriableRemoteError } from '../errors.js';
import { redact } from './redact.js';
import { USER_AGENT } from '../version.js';

export interface HttpOptions {
  /** Inactivity timeout per request phase (socket idle, response wait), ms. */
  timeoutMs: number;
  /** Parallel sockets per host. */
  maxSockets?: number;
}

/**
 * got, loaded by the first `createHttp`, not at start-up: its module graph takes ~200 ms to load, and a
 * run starts its worker threads first so that they boot meanwhile. No got error can exist before then.
 */
let gotModule: typeof import('got') | undefined;

/**
 * The shared got instance. got's own retry is off: each client applies its own policy through
 * `withRetry`, because what is retriable differs per API (see specs/). HTTP errors do not throw here;
 * clients read the status and decide.
 */
export async function createHttp(options: HttpOptions): Promise<Got> {
  gotModule ??= await import('got');
  const maxSockets = options.maxSockets ?? 16;
  return gotModule.default.extend({
    retry: { limit: 0 },
    throwHttpErrors: false,
    followRedirect: false,
    decompress: true,
    headers: { 'user-agent': USER_AGENT },
    timeout: {
      // Exports can take minutes before the first byte: an inactivity timeout, not a total one.
      lookup: 30_000,
      connect: 30_000,
      response: options.timeoutMs,
      socket: options.timeoutMs,
    },
    agent: {
      http: new http.Agent({ keepAlive: true, maxSockets }),
      https: new https.Agent({ keepAlive: true, maxSockets }),
    },
  });
}

const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ENETUNREACH', 'EHOSTUNREACH',
  'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);

/** Turns a got/network failure into a RetriableRemoteError, or returns undefined if it is something else. */
export function asNetworkError(err: unknown, what: string): RetriableRemoteError | undefined {
  if (gotModule && err instanceof gotModule.TimeoutError) {
    return new RetriableRemoteError('TIMEOUT', `${what}: no response within the timeout (${err.event})`, { cause: err });
  }
  if (gotModule && err instanceof gotModule.RequestError) {
    const code = err.code ?? '';
    if (NETWORK_CODES.has(code) || code.startsWith('E')) {
      return new RetriableRemoteError('NETWORK', `${what}: network error ${code}`, { cause: err });
    }
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) {
    return new RetriableRemoteError('NETWORK', `${what}: network error ${code}`, { cause: err });
  }
  return undefined;
}

/** First ~300 characters of a response body, for error messages: redacted before it is cut (a body can echo a key). */
export function bodySnippet(body: unknown, max = 300): string {
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : JSON.stringify(body);
  const one = redact((text ?? '').replace(/\s+/g, ' ').trim());
  return one.length > max ? `${one.slice(0, max)}…` : one;
}
