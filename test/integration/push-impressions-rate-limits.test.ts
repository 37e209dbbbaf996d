import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import type { PushImpressionsOptions } from '../../src/pipeline/push-impressions.js';
import { runRetry } from '../../src/pipeline/retry.js';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Amplitude's per-id rates (specs/amplitude.md: HTTP V2 30 events/s per id, Batch 1000/s over 30 s), enforced by
 * the emulator. Its clock runs SPEED times faster than the real one, so that its one-second HTTP V2 window
 * lasts 50 ms and throttle delays of tens of milliseconds are as long as Amplitude's.
 */
const SPEED = 20;
const API_KEY = 'amp-test-api-key-rates-1';
const bed = ingestionTestBed('push-rates', { apiKey: API_KEY, rateLimits: true, now: () => Date.now() * SPEED });
const { emulator } = bed;

/** Impressions of each `[user, count]` in order, one NDJSON line per impression, times 0, 1, 2, ... ms after a base. */
function dump(name: string, users: [string, number][]): string {
  const lines: string[] = [];
  for (const [u, per] of users) for (let i = 0; i < per; i++) lines.push(JSON.stringify({ key: u, split: 'f', treatment: 'on', time: 1700000000000 + i }));
  writeFileSync(join(bed.dir, name), `${lines.join('\n')}\n`);
  return name;
}

const others = (n: number): [string, number][] => Array.from({ length: n }, (_, i) => [`user-o${String(i).padStart(4, '0')}`, 1]);

function config(throttleMs: number, mut?: (c: Config) => void): Config {
  return pushConfig(API_KEY, bed.url, throttleMs, (c) => {
    c.pushImpressions.concurrency = 1;
    mut?.(c);
  });
}

function run(files: string[], over: Partial<PushImpressionsOptions> = {}) {
  return startPush(bed, files, { config: config(60), api: 'httpapi', ...over });
}

/** The stored events of `user`, as the times of their impressions (0, 1, 2, ... in dump order). */
const timesOf = (user: string): number[] => emulator.events.filter((e) => e.user_id === user).map((e) => (e.time ?? 0) - 1700000000000);
const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('HTTP V2 takes ~30 events/s per id: a busy id is paced, not refused for ever', () => {
  it('delivers an id with 100 impressions among others, each event once, none dead-lettered, the others at once', async () => {
    const r = run([dump('busy.ndjson', [['user-busy1', 100], ...others(20)])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(120);
    expect(emulator.count).toBe(120);
    expect(emulator.duplicates).toBe(0);
    expect(new Set(emulator.events.map((e) => e.insert_id)).size).toBe(120);
    expect(r.letters()).toEqual([]);
    // 30 of the busy id go with the others in the first request; the rest follow 30 at a time, in order, never refused.
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[200, 50], [200, 30], [200, 30], [200, 10]]);
    expect(emulator.events.slice(0, 50).filter((e) => e.user_id !== 'user-busy1')).toHaveLength(20);
    expect(timesOf('user-busy1')).toEqual(upTo(100));
    const advice = r.logger.lines.filter((l) => l.level === 'warn' && /--api batch/.test(l.message));
    expect(advice).toHaveLength(1);
    expect(advice[0]?.message).toMatch(/30 events\/s per user or device/);
  });

  it('the paced events of a busy id do not hold up the requests of other ids that come after them', async () => {
    const r = run([dump('busy-lane.ndjson', [['user-busy2', 100], ...others(40)])], { config: config(300, (c) => (c.pushImpressions.batchSize = 100)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(140);
    expect(r.letters()).toEqual([]);
    expect(emulator.requests.every((q) => q.status === 200)).toBe(true);
    // The lane's second request (the others) went while the busy id waited its pace.
    expect(emulator.events.map((e) => (e.user_id === 'user-busy2' ? 'busy' : 'other'))).toEqual([
      ...Array<string>(30).fill('busy'),
      ...Array<string>(40).fill('other'),
      ...Array<string>(70).fill('busy'),
    ]);
    expect(timesOf('user-busy2')).toEqual(upTo(100));
  });

  it('paces are not throttle rounds: an id with more paces than maxThrottleRounds (8) is delivered', async () => {
    const r = run([dump('busier.ndjson', [['user-busy3', 400], ...others(3)])], { config: config(60) });
    const s = await r.done;
    expect(s.eventsSent).toBe(403);
    expect(emulator.count).toBe(403);
    expect(r.letters()).toEqual([]);
    expect(emulator.requests).toHaveLength(14);
    expect(timesOf('user-busy3')).toEqual(upTo(400));
  });

  it('an id spread over many requests is paced as one: its held parts wait together, and its new events wait with them', async () => {
    // 1000 events of one id in requests of 100: each request's surplus, and each later request of that id, joins one group.
    const r = run([dump('spread.ndjson', [['user-busy4', 1000]])], { config: config(60, (c) => (c.pushImpressions.batchSize = 100)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(1000);
    expect(r.letters()).toEqual([]);
    expect(emulator.requests.filter((q) => q.status === 429)).toEqual([]);
    expect(emulator.requests.every((q) => q.items <= 30)).toBe(true);
    expect(timesOf('user-busy4')).toEqual(upTo(1000)); // in order, too
  });

  it('an id refused with a 429 waits with the rest of its events, then goes on 30 at a time', async () => {
    emulator.throttle('user-busy4');
    const r = run([dump('busy429.ndjson', [['user-busy4', 70], ...others(5)])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(75);
    expect(r.letters()).toEqual([]);
    // The first request (30 of the busy id and the others) is refused for the busy id only: the others are re-sent at once.
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[429, 35], [200, 5], [200, 30], [200, 30], [200, 10]]);
    expect(timesOf('user-busy4')).toEqual(upTo(70));
    expect(r.logger.lines.filter((l) => /--api batch/.test(l.message))).toHaveLength(1);
  });

  it('held events of one lane keep their own delays: a pace of 1 s and a throttle of 1.5 s, each in its own time', async () => {
    // Requests of 40, throttle delay 1.5 s, pace 1 s (HTTP V2's window). The first request paces the busy id's last 10
    // events; the next one is refused for the other id, whose event joins the lane's held group. The paced events go
    // after their second; the throttled one only after its 1.5 s (sooner, it would be refused again).
    emulator.throttle('user-thr01');
    const r = run([dump('pace-then-429.ndjson', [['user-busy6', 40], ['user-thr01', 1]])], { config: config(1500, (c) => (c.pushImpressions.batchSize = 40)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(41);
    expect(r.letters()).toEqual([]);
    const reqs = emulator.requests;
    expect(reqs.map((q) => [q.status, q.items])).toEqual([[200, 30], [429, 1], [200, 10], [200, 1]]);
    expect((reqs[3]?.receivedAt ?? 0) - (reqs[1]?.receivedAt ?? 0)).toBeGreaterThanOrEqual(1450);
    expect(timesOf('user-busy6')).toEqual(upTo(40));
    expect(emulator.events.at(-1)?.user_id).toBe('user-thr01');
  });

  it('held events go with their own id\'s throttle rounds, not with those of an id held beside them', async () => {
    // The throttled id's event (its first round) and the busy id's paced 31st event are held together; they go
    // in separate deliveries, the paced one (no round) first, so a 429 for the throttled id never counts against it.
    emulator.throttle('user-thr02', 2);
    const r = run([dump('rounds.ndjson', [['user-thr02', 1], ['user-busy7', 31]])]);
    const s = await r.done;
    expect(s.eventsSent).toBe(32);
    expect(r.letters()).toEqual([]);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[429, 31], [200, 30], [200, 1], [429, 1], [200, 1]]);
    expect(timesOf('user-busy7')).toEqual(upTo(31));
  });

  it('an id held for its pace is not put off again by each later request that carries it', async () => {
    // Pace 1 s, requests of 50. The first request sends 30 of the busy id's 50 and holds 20; the next one (other
    // ids) is answered 0.7 s later, and only then goes the third, whose event of the busy id joins the 20. All 21
    // go when the 20 are due, 1 s after the first request, not 1 s after the third (1.7 s): each request of an id
    // read all along would otherwise put it off again, until reading ended. (The bound leaves 0.45 s for a slow machine.)
    emulator.faults.push({ status: 200, afterProcessing: true }).push({ status: 200, afterProcessing: true, delayMs: 700 });
    const file = dump('put-off.ndjson', [['user-busy9', 50], ...others(50), ['user-busy9', 1], ...others(10)]);
    const r = run([file], { config: config(1000, (c) => (c.pushImpressions.batchSize = 50)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(111);
    expect(r.letters()).toEqual([]);
    const reqs = emulator.requests;
    expect(reqs.map((q) => [q.status, q.items])).toEqual([[200, 30], [200, 50], [200, 10], [200, 21]]);
    const late = (reqs[3]?.receivedAt ?? 0) - (reqs[0]?.receivedAt ?? 0);
    expect(late).toBeGreaterThanOrEqual(950);
    expect(late).toBeLessThan(1450);
  });

  it('Batch is not capped per id: 100 events of one id go in one request', async () => {
    const r = run([dump('batch.ndjson', [['user-busy5', 100], ...others(5)])], { api: 'batch' });
    const s = await r.done;
    expect(s.eventsSent).toBe(105);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[200, 105]]);
    expect(r.logger.lines.filter((l) => /--api batch/.test(l.message))).toEqual([]);
  });
});

describe('retry over HTTP V2', () => {
  it('delivers 100 held events of one id, 30 at a time, instead of sending the same group again and again', async () => {
    const rdir = tempDir('retry-rates');
    const file = join(rdir, 'held.ndjson');
    const letters = upTo(100).map((i) => ({
      command: 'push-impressions',
      reason: 'amplitude_throttled',
      retriable: true,
      payload: { user_id: 'user-held1', event_type: 'get_treatment', time: 1700000000000 + i, insert_id: `fme-held-${i}`, event_properties: { flag: 'f', treatment: 'on' } },
    }));
    writeFileSync(file, `${letters.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const config = defaultConfig();
    config.amplitude.apiKey = API_KEY;
    config.amplitude.ingestionBaseUrl = bed.url;
    config.pushImpressions.api = 'httpapi';
    config.pushImpressions.throttleDelayMs.httpapi = 60;
    const deadLetters = new DeadLetterWriter(join(rdir, 'new.ndjson'), 'retry');
    const s = await runRetry({ config, file, logger: createMemoryLogger(), deadLetters, force: false });
    await deadLetters.close();
    expect(s.resent.amplitudeEvents).toBe(100);
    expect(s.stillFailing).toEqual({});
    expect(emulator.count).toBe(100);
    expect(emulator.requests.map((q) => [q.status, q.items])).toEqual([[200, 30], [200, 30], [200, 30], [200, 10]]);
    expect(timesOf('user-held1')).toEqual(upTo(100));
  });
});
