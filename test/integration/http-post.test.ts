import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RetriableRemoteError } from '../../src/errors.js';
import { createHttp } from '../../src/http/client.js';
import { postWithRetry, type PostWithRetryOptions } from '../../src/http/post.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { readBody, startServer, type RunningServer } from '../../src/sandbox/server.js';

/** Answers each request with the next scripted status (then 200), recording the bodies it received. */
let script: { status: number; retryAfter?: string }[] = [];
let received: string[] = [];
let server: RunningServer;
const http = await createHttp({ timeoutMs: 5000 });

beforeAll(async () => {
  server = await startServer([
    async (req: IncomingMessage, res: ServerResponse) => {
      received.push((await readBody(req)).toString('utf8'));
      const next = script.shift() ?? { status: 200 };
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (next.retryAfter !== undefined) headers['retry-after'] = next.retryAfter;
      res.writeHead(next.status, headers).end(`answer ${next.status}`);
      return true;
    },
  ]);
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  script = [];
  received = [];
});

const options = (over: Partial<PostWithRetryOptions> = {}): PostWithRetryOptions => ({
  http,
  url: `${server.url}/upload`,
  body: Buffer.from('{"a":"é"}'),
  headers: { 'content-type': 'application/json' },
  what: 'test upload of 1 item',
  errorCode: 'TEST_UNAVAILABLE',
  retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 20 },
  retriable: (status) => status >= 500,
  logger: createMemoryLogger(),
  ...over,
});

describe('postWithRetry', () => {
  it('retries retriable statuses (logging each retry) and returns the answer that ends it', async () => {
    script = [{ status: 503 }, { status: 500, retryAfter: '0' }];
    const logger = createMemoryLogger();
    const res = await postWithRetry(options({ logger, logFields: { api: 'batch' } }));
    expect(res.statusCode).toBe(200);
    expect(received).toEqual(['{"a":"é"}', '{"a":"é"}', '{"a":"é"}']);
    const warns = logger.lines.filter((l) => l.level === 'warn');
    expect(warns).toHaveLength(2);
    expect(warns[0]?.message).toMatch(/retrying test upload/);
    expect(warns[0]?.fields).toMatchObject({ api: 'batch', status: 503, attempt: 1 });
  });

  it('returns a status the caller does not call retriable at once, body as text', async () => {
    script = [{ status: 429 }];
    const res = await postWithRetry(options());
    expect(res.statusCode).toBe(429);
    expect(res.body).toBe('answer 429');
    expect(received).toHaveLength(1);
  });

  it('retries 429 when the caller says so, and gives up with a RetriableRemoteError naming the request', async () => {
    script = [{ status: 429, retryAfter: '0' }, { status: 429 }, { status: 429 }];
    const err = await postWithRetry(options({ retriable: (s) => s === 429 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriableRemoteError);
    expect(err).toMatchObject({ code: 'TEST_UNAVAILABLE', status: 429 });
    expect((err as Error).message).toMatch(/test upload of 1 item: HTTP 429 answer 429.*gave up after 3 attempts/);
    expect(received).toHaveLength(3);
  });

  it('maps network errors to RetriableRemoteError and retries them', async () => {
    const closed = await startServer([]);
    const url = `${closed.url}/upload`;
    await closed.close();
    const logger = createMemoryLogger();
    const err = await postWithRetry(options({ url, logger })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriableRemoteError);
    expect((err as Error).message).toMatch(/test upload of 1 item: network error ECONNREFUSED.*gave up after 3 attempts/);
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(2);
  });
});
