import http from 'node:http';
import https from 'node:https';
import type { Got } from 'got';
import { FatalRemoteError, RetriableRemoteError } from '../errors.js';
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

/**
 * OpenSSL's certificate checks as Node names them: the server's certificate is not trusted here, which no retry
 * changes (a proxy with its own certificate authority, a self-signed test server, a wrong host, an expired
 * certificate). Some of these codes start with `E`, so they are told apart before asNetworkError would retry them.
 */
const TLS_CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD', 'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** `https://host:port` of a URL, for messages (never its user information, path or query). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'the server';
  }
}

/**
 * A failure that says the address is not a usable HTTPS/HTTP server, as a FatalRemoteError naming what to check, or
 * undefined. Without this, a certificate Node does not trust (self-signed, a TLS-inspecting proxy's) or an answer that
 * is not HTTP at all (a wrong port) fell through every check and stopped the run as "a bug in amp-fme", stack and all.
 */
function asServerMismatchError(err: unknown, what: string, url: string): FatalRemoteError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const reason = (err as Error).message;
  const where = originOf(url);
  if (TLS_CERT_CODES.has(code)) {
    return new FatalRemoteError(
      'TLS_CERTIFICATE',
      `${what}: the TLS certificate of ${where} is not trusted (${code}: ${reason}). Check the host in the configured base URL; ` +
        'if a proxy with its own certificate authority is in the way, give Node that CA with NODE_EXTRA_CA_CERTS=<ca.pem>',
      undefined,
      { cause: err },
    );
  }
  // An https:// URL at a port that answers plain HTTP (the sandbox's, a proxy's http port): OpenSSL reads the HTTP
  // answer as a TLS record of an unknown version. Node's code is the generic EPROTO, which asNetworkError would retry.
  if ((code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') && /wrong version number/i.test(reason)) {
    return new FatalRemoteError(
      'NOT_TLS',
      `${what}: ${where} did not answer in TLS (${code}: wrong version number), as a plain-HTTP port does. Check the configured base URL: ` +
        'its host, port and http:// or https://',
      undefined,
      { cause: err },
    );
  }
  // llhttp's parse errors (HPE_*): what answered is not an HTTP server (a wrong port, another protocol).
  if (code.startsWith('HPE_')) {
    return new FatalRemoteError(
      'NOT_HTTP',
      `${what}: ${where} did not answer in HTTP (${code}: ${reason}). Check the configured base URL: its host, port and http:// or https://`,
      undefined,
      { cause: err },
    );
  }
  return undefined;
}

/** First ~300 characters of a response body, for error messages: redacted before it is cut (a body can echo a key). */
export function bodySnippet(body: unknown, max = 300): string {
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : JSON.stringify(body);
  const one = redact((text ?? '').replace(/\s+/g, ' ').trim());
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/**
 * What a request that failed without an answer throws: a server amp-fme cannot talk to (fatal, asServerMismatchError,
 * told apart first: some of its codes look like network errors), a network error (retriable, asNetworkError), or the
 * error as it came.
 */
export function asTransportError(err: unknown, what: string, url: string): unknown {
  return asServerMismatchError(err, what, url) ?? asNetworkError(err, what) ?? err;
}
