import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FatalRemoteError, RetriableRemoteError } from '../../src/errors.js';
import { createFmeEventsClient, type FmeEventsClient } from '../../src/fme/events-client.js';
import type { FmeEvent } from '../../src/fme/types.js';
import { createHttp } from '../../src/http/client.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { createFmeEventsEmulator, type FmeEventsEmulator } from '../../src/sandbox/fme-events.js';
import { startServer, type Route, type RunningServer } from '../../src/sandbox/server.js';

const SDK_KEY = 'sdk-key-0123456789abcdef';
const policy = { retries: 3, baseDelayMs: 1, maxDelayMs: 20 };

const ev = (i: number): FmeEvent => ({ eventTypeId: 'amp.checkout', trafficTypeName: 'user', key: `user-${i}`, timestamp: 1_614_028_200_000 + i });
const batch = (n: number) => ({ jsons: Array.from({ length: n }, (_, i) => JSON.stringify(ev(i))) });

let emu: FmeEventsEmulator;
let proxyEmu: FmeEventsEmulator;
let server: RunningServer;
const http = await createHttp({ timeoutMs: 5000 });

function client(opts: { sdkKey?: string; base?: string; logger?: ReturnType<typeof createMemoryLogger>; retries?: number } = {}): FmeEventsClient {
  return createFmeEventsClient({
    sdkKey: opts.sdkKey ?? SDK_KEY,
    baseUrl: opts.base ?? `${server.url}/api`,
    http,
    retry: { ...policy, retries: opts.retries ?? policy.retries },
    logger: opts.logger ?? createMemoryLogger(),
  });
}

beforeAll(async () => {
  emu = createFmeEventsEmulator({ sdkKey: SDK_KEY });
  proxyEmu = createFmeEventsEmulator({ sdkKey: SDK_KEY, basePath: '/proxy/api', successStatus: 200 });
  server = await startServer([emu.route, proxyEmu.route]);
});
afterAll(async () => {
  await server.close();
});
afterEach(() => {
  emu.reset();
  proxyEmu.reset();
});

describe('FME events client against the emulator', () => {
  it('delivers a batch (202) and the emulator stores every event in order', async () => {
    const out = await client().send(batch(3));
    expect(out).toEqual({ delivered: true, status: 202, events: 3 });
    expect(emu.events).toEqual([ev(0), ev(1), ev(2)]);
    expect(emu.requests).toEqual([{ status: 202, events: 3, stored: true }]);
  });

  it('treats a 200 from a proxy as delivered', async () => {
    const out = await client({ base: `${server.url}/proxy/api/` }).send(batch(2));
    expect(out).toEqual({ delivered: true, status: 200, events: 2 });
    expect(proxyEmu.count).toBe(2);
    expect(emu.count).toBe(0);
  });

  it('waits out a 429 with Retry-After, then stores the batch once', async () => {
    emu.faults.push({ status: 429, body: 'slow down', headers: { 'retry-after': '0.05' } });
    const logger = createMemoryLogger();
    const started = Date.now();
    const out = await client({ logger }).send(batch(4));
    expect(out.delivered).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15); // Retry-After 50 ms capped at maxDelayMs 20; backoff alone would be ~1 ms
    expect(emu.count).toBe(4);
    expect(emu.requests.map((r) => r.status)).toEqual([429, 202]);
    expect(logger.lines).toEqual([expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ status: 429, attempt: 1 }) })]);
  });

  it('retries 503 twice, then stores the batch once', async () => {
    emu.faults.push({ status: 503, body: 'unavailable' }, 2);
    const out = await client().send(batch(5));
    expect(out.delivered).toBe(true);
    expect(emu.count).toBe(5);
    expect(emu.requests.map((r) => r.status)).toEqual([503, 503, 202]);
  });

  it('retries a connection reset', async () => {
    emu.faults.push({ status: 0, reset: true });
    const out = await client().send(batch(1));
    expect(out.delivered).toBe(true);
    expect(emu.count).toBe(1);
  });

  it('retries a request that times out', async () => {
    // The first request is never answered (the client must give up on it); later ones reach the emulator. The
    // timeout is generous, so the retry that succeeds has plenty of time however busy the machine is.
    const hung: ServerResponse[] = [];
    const hangFirst: Route = (req, res) => {
      if (hung.length > 0) return false;
      req.resume();
      hung.push(res);
      return true;
    };
    const hanging = await startServer([hangFirst, emu.route]);
    try {
      const logger = createMemoryLogger();
      const out = await createFmeEventsClient({
        sdkKey: SDK_KEY,
        baseUrl: `${hanging.url}/api`,
        http: await createHttp({ timeoutMs: 2_000 }),
        retry: policy,
        logger,
      }).send(batch(1));
      expect(out.delivered).toBe(true);
      expect(hung).toHaveLength(1);
      expect(emu.requests).toEqual([{ status: 202, events: 1, stored: true }]);
      expect(logger.lines).toEqual([expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ code: 'TIMEOUT', attempt: 1 }) })]);
    } finally {
      await hanging.close();
    }
  });

  it('stops at once on a wrong SDK key (401), without the key in the message', async () => {
    const wrong = 'wrong-sdk-key-abcdef123456';
    let err: unknown;
    try {
      await client({ sdkKey: wrong }).send(batch(1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FatalRemoteError);
    const msg = (err as Error).message;
    expect(msg).toContain('server-side SDK key');
    expect(msg).toContain('FME_SDK_KEY');
    expect(msg).not.toContain(wrong);
    expect(msg).not.toContain(SDK_KEY);
    expect((err as FatalRemoteError).status).toBe(401);
    expect(emu.requests).toHaveLength(1);
    expect(emu.count).toBe(0);
  });

  it('stops at once on a 403 as well', async () => {
    emu.faults.push({ status: 403, body: 'Forbidden' });
    await expect(client().send(batch(1))).rejects.toBeInstanceOf(FatalRemoteError);
    expect(emu.requests).toHaveLength(1);
  });

  it('returns an undelivered outcome with status and body for a 400 (an invalid event rejects the whole batch)', async () => {
    const bad = { jsons: [JSON.stringify(ev(0)), JSON.stringify({ ...ev(1), eventTypeId: 'has space' })] };
    const out = await client().send(bad);
    expect(out.delivered).toBe(false);
    expect(out).toMatchObject({ status: 400 });
    expect(!out.delivered && out.body).toContain('event 1: eventTypeId');
    expect(emu.count).toBe(0);
    expect(emu.requests).toEqual([{ status: 400, events: 2, stored: false }]);
  });

  it('returns an undelivered outcome for a 413 without retrying', async () => {
    emu.faults.push({ status: 413, body: 'Payload Too Large' });
    const out = await client().send(batch(1));
    expect(out).toEqual({ delivered: false, status: 413, body: 'Payload Too Large' });
    expect(emu.requests).toHaveLength(1);
  });

  it('throws the retriable error when the retries run out', async () => {
    emu.faults.push({ status: 500, body: 'boom' }, 10);
    let err: unknown;
    try {
      await client({ retries: 2 }).send(batch(1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RetriableRemoteError);
    expect((err as RetriableRemoteError).status).toBe(500);
    expect((err as Error).message).toMatch(/gave up after 3 attempts/);
    expect(emu.requests).toHaveLength(3);
    expect(emu.count).toBe(0);
  });

  it('an ambiguous failure (stored, then 500) is retried and stored twice: FME does not deduplicate', async () => {
    emu.faults.push({ status: 500, afterProcessing: true });
    const out = await client().send(batch(2));
    expect(out.delivered).toBe(true);
    expect(emu.count).toBe(4);
  });

  it('fails fast on a wrong base URL (404)', async () => {
    await expect(client({ base: `${server.url}/nope` }).send(batch(1))).rejects.toThrow(/fme\.eventsBaseUrl/);
  });
});

describe('FME answers that mean a wrong fme.eventsBaseUrl', () => {
  it.each([
    [302, 'Found'],
    [307, 'Temporary Redirect'],
    [404, 'Not Found'],
    [405, 'Method Not Allowed'],
  ])('stops at once on %i (FatalRemoteError FME_URL naming fme.eventsBaseUrl), after one request', async (status, body) => {
    // A redirect points at the emulator's own endpoint: followed, it would deliver the batch.
    const headers: Record<string, string> = status < 400 ? { location: `${server.url}/api/events/bulk` } : {};
    emu.faults.push({ status, body, headers });
    const logger = createMemoryLogger();
    let err: unknown;
    try {
      await client({ logger }).send(batch(2));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FatalRemoteError);
    expect((err as FatalRemoteError).code).toBe('FME_URL');
    expect((err as FatalRemoteError).status).toBe(status);
    expect((err as Error).message).toContain(`HTTP ${status}`);
    expect((err as Error).message).toContain('check fme.eventsBaseUrl');
    expect(emu.requests).toEqual([{ status, events: 2, stored: false }]); // the batch of 2, once, not stored
    expect(emu.count).toBe(0);
    expect(logger.lines.filter((l) => /retrying/.test(l.message))).toEqual([]);
  });

  it('retries a 408 (request timeout), then stores the batch once', async () => {
    emu.faults.push({ status: 408, body: 'Request Timeout' });
    const logger = createMemoryLogger();
    const out = await client({ logger }).send(batch(3));
    expect(out).toEqual({ delivered: true, status: 202, events: 3 });
    expect(emu.requests.map((r) => r.status)).toEqual([408, 202]);
    expect(emu.count).toBe(3);
    expect(logger.lines).toEqual([expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ status: 408, attempt: 1 }) })]);
  });
});

describe('emulator details', () => {
  it('accepts a single event on POST /api/events', async () => {
    const res = await http.post(`${server.url}/api/events`, { json: ev(7), headers: { authorization: `Bearer ${SDK_KEY}` } });
    expect(res.statusCode).toBe(202);
    expect(emu.events).toEqual([ev(7)]);
  });

  it('rejects a body that is not an array', async () => {
    const res = await http.post(`${server.url}/api/events/bulk`, { json: ev(1), headers: { authorization: `Bearer ${SDK_KEY}` } });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: 400, message: expect.stringContaining('array') });
  });

  it('counts without keeping events in countOnly mode', async () => {
    const counting = createFmeEventsEmulator({ sdkKey: SDK_KEY, countOnly: true, basePath: '/count/api' });
    const s = await startServer([counting.route]);
    try {
      await client({ base: `${s.url}/count/api` }).send(batch(10));
      expect(counting.count).toBe(10);
      expect(counting.requestCount).toBe(1);
      expect(counting.events).toHaveLength(0);
      expect(counting.requests).toHaveLength(0);
    } finally {
      await s.close();
    }
  });
});
