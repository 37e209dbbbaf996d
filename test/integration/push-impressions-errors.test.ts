import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { FatalRemoteError, RetriableRemoteError } from '../../src/errors.js';
import type { PushImpressionsOptions } from '../../src/pipeline/push-impressions.js';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-errors-1';
const bed = ingestionTestBed('push-err', { apiKey: API_KEY });
const { emulator } = bed;

/** Impressions for `users`, `per` each, one NDJSON line per impression, in user-major order. */
function dump(name: string, users: string[], per = 1): string {
  const lines: string[] = [];
  for (const u of users) for (let i = 0; i < per; i++) lines.push(JSON.stringify({ key: u, split: 'f', treatment: 'on', time: 1700000000000 + i }));
  writeFileSync(join(bed.dir, name), `${lines.join('\n')}\n`);
  return name;
}

function config(mut?: (c: Config) => void): Config {
  return pushConfig(API_KEY, bed.url, 20, (c) => {
    c.pushImpressions.concurrency = 1;
    mut?.(c);
  });
}

function run(files: string[], over: Partial<PushImpressionsOptions> = {}) {
  return startPush(bed, files, { config: config(), ...over });
}

describe('400: set aside exactly the listed events, resend the rest', () => {
  it('index lists of invalid fields, missing fields, id lengths and silenced events', async () => {
    emulator.faults.push({
      status: 400,
      body: JSON.stringify({
        code: 400,
        error: 'Invalid field values on some events',
        events_with_invalid_fields: { time: [1] },
        events_with_missing_fields: { event_type: [3] },
        events_with_invalid_id_lengths: { user_id: [0] },
        silenced_events: [4],
      }),
    });
    const r = run([dump('400.ndjson', ['user-a0000', 'user-a0001', 'user-a0002', 'user-a0003', 'user-a0004'])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(1);
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-a0002']);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[400, 0], [200, 1]]);
    expect(r.letters().map((l) => [l.reason, l.payload.user_id, l.source?.['line'], l.status, l.retriable])).toEqual([
      ['amplitude_invalid_id_length', 'user-a0000', 1, 400, false],
      ['amplitude_invalid_field', 'user-a0001', 2, 400, false],
      ['amplitude_missing_field', 'user-a0003', 4, 400, false],
      ['amplitude_silenced', 'user-a0004', 5, 400, false],
    ]);
    expect(r.letters()[1]?.detail).toMatch(/time/);
  });

  it('the emulator itself answers silenced devices with silenced_events', async () => {
    emulator.silence('user-s0001');
    const r = run([dump('silenced.ndjson', ['user-s0000', 'user-s0001', 'user-s0002'])]);
    await r.done;
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-s0000', 'user-s0002']);
    expect(r.letters().map((l) => [l.reason, l.payload.user_id])).toEqual([['amplitude_silenced', 'user-s0001']]);
  });

  it('`Invalid API key` stops the run with a FatalRemoteError that does not quote the key, after one request', async () => {
    const wrong = 'wrong-key-abcdef-123';
    const r = run([dump('key.ndjson', ['user-k0000'])], { config: config((c) => (c.amplitude.apiKey = wrong)) });
    const err = await r.done.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalRemoteError);
    expect((err as FatalRemoteError).code).toBe('AMPLITUDE_INVALID_API_KEY');
    expect((err as Error).message).not.toContain(wrong);
    expect(emulator.requests).toHaveLength(1);
    const ri = run([dump('key2.ndjson', ['user-k0000'])], { mode: 'identify', config: config((c) => (c.amplitude.apiKey = wrong)) });
    await expect(ri.done).rejects.toThrow(/Invalid API key/);
  });
});

describe('413: split and resend', () => {
  it('splits a refused request in halves and delivers everything', async () => {
    emulator.faults.push({ status: 413, body: JSON.stringify({ code: 413, error: 'Payload too large' }) });
    const s = await run([dump('413.ndjson', ['user-b0000', 'user-b0001', 'user-b0002', 'user-b0003'])]).done;
    expect(s.eventsSent).toBe(4);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[413, 0], [200, 2], [200, 2]]);
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-b0000', 'user-b0001', 'user-b0002', 'user-b0003']);
  });

  it('a single event still too large is dead-lettered', async () => {
    emulator.faults.push({ status: 413, body: '{"code":413,"error":"Payload too large"}' }, 3);
    const r = run([dump('413b.ndjson', ['user-c0000', 'user-c0001'])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(0);
    expect(emulator.requests).toHaveLength(3);
    expect(r.letters().map((l) => [l.reason, l.payload.user_id])).toEqual([
      ['amplitude_payload_too_large', 'user-c0000'],
      ['amplitude_payload_too_large', 'user-c0001'],
    ]);
  });

  it('an event over the request limit is dead-lettered before sending', async () => {
    writeFileSync(join(bed.dir, 'huge.ndjson'), `${JSON.stringify({ key: 'user-h0000', split: 'f', treatment: 'on', time: 1700000000000, properties: JSON.stringify({ blob: 'x'.repeat(1_100_000) }) })}\n`);
    const r = run(['huge.ndjson'], { api: 'httpapi' });
    await r.done;
    expect(emulator.requests).toHaveLength(0);
    expect(r.letters().map((l) => l.reason)).toEqual(['amplitude_payload_too_large']);
  });
});

describe('429: delay only the throttled events', () => {
  it('sends the others at once, and the throttled user after the configured delay', async () => {
    emulator.throttle('user-t0001');
    const r = run([dump('429.ndjson', ['user-t0000', 'user-t0001', 'user-t0002'], 2)], { config: config((c) => (c.pushImpressions.throttleDelayMs.batch = 150)) });
    const started = Date.now();
    const s = await r.done;
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(s.eventsSent).toBe(6);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[429, 6], [200, 4], [200, 2]]);
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-t0000', 'user-t0000', 'user-t0002', 'user-t0002', 'user-t0001', 'user-t0001']);
    expect(r.logger.lines.some((l) => l.level === 'warn' && /throttled/.test(l.message))).toBe(true);
  });

  it('holds back a throttled user without holding up the others: their later requests go out meanwhile', async () => {
    emulator.throttle('user-h0000');
    const others = Array.from({ length: 20 }, (_, i) => `user-o${String(i).padStart(4, '0')}`);
    const r = run([dump('429hold.ndjson', ['user-h0000', ...others])], {
      config: config((c) => ((c.pushImpressions.throttleDelayMs.batch = 400), (c.pushImpressions.batchSize = 4))),
    });
    const s = await r.done;
    expect(s.eventsSent).toBe(21);
    // One lane: before, it waited out the delay before its next request, and the held user went second.
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[429, 4], [200, 3], [200, 4], [200, 4], [200, 4], [200, 4], [200, 1], [200, 1]]);
    expect(emulator.events.at(-1)?.user_id).toBe('user-h0000');
    expect(emulator.events.slice(0, -1).map((e) => e.user_id)).toEqual(others);
  });

  it('a stop does not wait out a throttle delay: the held events are said not to be sent', async () => {
    emulator.throttle('user-s0000');
    const stop = new AbortController();
    const r = run([dump('429stop.ndjson', ['user-s0000', 'user-s0001'])], { config: config((c) => (c.pushImpressions.throttleDelayMs.batch = 60_000)), signal: stop.signal });
    setTimeout(() => stop.abort('SIGINT received'), 200);
    const started = Date.now();
    await expect(r.done).rejects.toThrow(/stopped after 2 impressions \(1 delivered, 1 held back \(after a 429, or paced over HTTP V2\) not sent\)/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a stop drops held events that were waiting for their lane: they are not sent after it', async () => {
    const throttled = JSON.stringify({ code: 429, error: 'Too many requests for some devices and users', throttled_events: [0], throttled_users: { 'user-w0001': 40 } });
    // Request 1: the first event throttled (held 50 ms), the second resent at once (request 2); request 3 takes a second,
    // so the held event waits behind it in the lane; the stop comes meanwhile.
    emulator.faults.push({ status: 429, body: throttled }).push({ status: 200, afterProcessing: true }).push({ status: 200, afterProcessing: true, delayMs: 1000 });
    const stop = new AbortController();
    const r = run([dump('429wait.ndjson', ['user-w0001', 'user-w0002', 'user-w0003', 'user-w0004'])], {
      config: config((c) => ((c.pushImpressions.throttleDelayMs.batch = 50), (c.pushImpressions.batchSize = 2))),
      signal: stop.signal,
    });
    setTimeout(() => stop.abort('SIGINT received'), 300);
    await expect(r.done).rejects.toThrow(/stopped after 4 impressions \(3 delivered, 1 held back/);
    expect(emulator.requests.length).toBe(3);
    expect(emulator.events.map((e) => e.user_id).sort()).toEqual(['user-w0002', 'user-w0003', 'user-w0004']);
  });

  it('sets aside the events of ids over the daily quota, retriable', async () => {
    emulator.exceedQuota('user-q0001');
    const r = run([dump('quota.ndjson', ['user-q0000', 'user-q0001', 'user-q0002'])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(2);
    expect(r.letters().map((l) => [l.reason, l.payload.user_id, l.retriable, l.status])).toEqual([['amplitude_daily_quota', 'user-q0001', true, 429]]);
  });

  it('gives up on an id throttled again and again, as a retriable dead letter', async () => {
    emulator.throttle('user-z0000', 100);
    const r = run([dump('429z.ndjson', ['user-z0000', 'user-z0001'])], { config: config((c) => (c.pushImpressions.throttleDelayMs.batch = 1)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(1);
    expect(r.letters().map((l) => [l.reason, l.retriable])).toEqual([['amplitude_throttled', true]]);
  });

  it('sets aside events still throttled after 8 throttle delays: 9 requests for them, then a retriable amplitude_throttled dead letter', async () => {
    emulator.throttle('user-y0000', 1000);
    const r = run([dump('429y.ndjson', ['user-y0000'], 2)], { config: config((c) => (c.pushImpressions.throttleDelayMs.batch = 2)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(0);
    // The first request, then one after each of the 8 delays: all refused, and no 10th.
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual(Array.from({ length: 9 }, () => [429, 2]));
    expect(emulator.count).toBe(0);
    expect(r.letters().map((l) => [l.reason, l.payload.user_id, l.retriable, l.status])).toEqual([
      ['amplitude_throttled', 'user-y0000', true, 429],
      ['amplitude_throttled', 'user-y0000', true, 429],
    ]);
    expect(r.letters()[0]?.detail).toMatch(/still throttled after 8 waits of 2 ms/);
  });

  it('an id throttled 8 times in a row is still delivered on the 9th request, with no dead letter', async () => {
    emulator.throttle('user-y0001', 8);
    const r = run([dump('429y8.ndjson', ['user-y0001'], 2)], { config: config((c) => (c.pushImpressions.throttleDelayMs.batch = 2)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(2);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([...Array.from({ length: 8 }, () => [429, 2]), [200, 2]]);
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-y0001', 'user-y0001']);
    expect(r.letters()).toEqual([]);
  });

  it('identify: holds back only the throttled users', async () => {
    emulator.throttle('user-i0001');
    const r = run([dump('429i.ndjson', ['user-i0000', 'user-i0001', 'user-i0002'])], { mode: 'identify' });
    const s = await r.done;
    expect(s.identificationsSent).toBe(3);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[429, 3], [200, 2], [200, 1]]);
  });
});

describe('5xx and network errors: retry with backoff (safe thanks to insert_id)', () => {
  it('retries 503, 502, a reset and an ambiguous 500 that had stored the events; stores each event once', async () => {
    emulator.faults.push({ status: 503, body: 'unavailable' }).push({ status: 502 }).push({ status: 0, reset: true }).push({ status: 500, afterProcessing: true });
    const r = run([dump('5xx.ndjson', ['user-r0000', 'user-r0001'])], { config: config((c) => (c.http.retries = 5)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(2);
    expect(emulator.count).toBe(2);
    expect(emulator.duplicates).toBe(2);
    expect(r.logger.lines.filter((l) => /retrying/.test(l.message))).toHaveLength(4);
  });

  it('fails the run when the retries run out', async () => {
    emulator.faults.push({ status: 503 }, 10);
    await expect(run([dump('5xx-out.ndjson', ['user-r0002'])]).done).rejects.toBeInstanceOf(RetriableRemoteError);
  });
});

describe('identify: an identification Amplitude refuses is isolated', () => {
  it('bisects an unexplained 400 down to the refused identification', async () => {
    emulator.faults.push({ status: 400, body: 'missing_event' }).push({ status: 400, body: 'missing_event' });
    const r = run([dump('400i.ndjson', ['user-j0000', 'user-j0001'])], { mode: 'identify' });
    const s = await r.done;
    expect(s.identificationsSent).toBe(1);
    expect(emulator.requests.map((q) => [q.status])).toEqual([[400], [400], [200]]);
    expect(r.letters().map((l) => l.reason)).toEqual(['amplitude_bad_request']);
  });
});
