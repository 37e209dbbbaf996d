import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { validateConfig } from '../../src/config/validate.js';
import type { Config } from '../../src/config/types.js';
import { FatalRemoteError } from '../../src/errors.js';
import { createMemoryLogger, type Logger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import type { ExportCheckpoint } from '../../src/pipeline/export-checkpoint.js';
import { runExportEvents } from '../../src/pipeline/export-events.js';
import { addRange, type Ranges } from '../../src/pipeline/positions.js';
import { FaultScript, type ForcedResponse } from '../../src/sandbox/faults.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { FAST_HTTP, KEYS, startWorld, type World } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

const h = (s: string, role: 'start' | 'end' = 'start'): number => parseHourArg(s, role);
let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

function configFor(w: World, extra: { exportEvents?: Partial<Config['exportEvents']> } = {}): Config {
  const { config, problems } = validateConfig({
    amplitude: { exportBaseUrl: w.server.url },
    fme: { eventsBaseUrl: `${w.server.url}/api` },
    http: FAST_HTTP,
    exportEvents: { properties: ['event_properties.*', 'uuid'], ...extra.exportEvents },
  });
  expect(problems).toEqual([]);
  config.amplitude.apiKey = KEYS.amplitudeApiKey;
  config.amplitude.secretKey = KEYS.amplitudeSecretKey;
  config.fme.sdkKey = KEYS.fmeSdkKey;
  return config;
}

function deadLetterWriter(): DeadLetterWriter {
  return new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'export-events');
}

/** Rows for `days` days from 2024-03-01, `perHour` rows an hour. */
function seed(w: World, days: number, perHour: number): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (let hour = 0; hour < days * 24; hour++) {
    for (const r of generateExportRows(h('20240301T00') + hour * 3_600_000, perHour, { users: 300, treatmentShare: 0 })) rows.push(r);
  }
  w.store.add(rows);
  return rows;
}

/** A FaultScript that also tells the test of each request the FME emulator receives (every request takes one `next()`). */
class WatchedFaults extends FaultScript {
  onRequest: ((n: number) => void) | undefined;
  private received = 0;
  override next(): ForcedResponse | undefined {
    this.onRequest?.(++this.received);
    return super.next();
  }
}

/** A memory logger that calls `then` (on the next turn) once the run says it will try a request again: it is waiting. */
function onRetryWait(then: () => void): Logger & ReturnType<typeof createMemoryLogger> {
  const logger = createMemoryLogger();
  const warn = logger.warn;
  logger.warn = (message, fields) => {
    warn(message, fields);
    if (message.startsWith('retrying')) setImmediate(then);
  };
  return logger;
}

function uuidsOf(w: World): string[] {
  return w.fme.events.map((e) => String(e.properties?.uuid));
}

describe('export-events pipeline against the emulators', () => {
  for (const zip of [
    { method: 'stored' as const },
    { method: 'deflate' as const, dataDescriptor: true },
    { method: 'deflate' as const, zip64: true },
  ]) {
    it(`delivers a 3-day range with several entries per hour exactly once (${JSON.stringify(zip)})`, async () => {
      world = await startWorld({ exportOptions: { zip, entriesPerHour: 3 } });
      const rows = seed(world, 3, 40);
      const withUser = rows.filter((r) => typeof r.user_id === 'string');
      const summary = await runExportEvents({
        config: configFor(world, { exportEvents: { windowHours: 24, batchSize: 97 } }),
        start: h('2024-03-01'),
        end: h('2024-03-03', 'end'),
        dryRun: false,
        logger: createMemoryLogger(),
        deadLetters: deadLetterWriter(),
      });
      // Three daily windows, never overlapping.
      expect(world.exportApi.requests.map((r) => `${r.start}..${r.end}`)).toEqual([
        '20240301T00..20240301T23',
        '20240302T00..20240302T23',
        '20240303T00..20240303T23',
      ]);
      const got = uuidsOf(world);
      expect(got.length).toBe(withUser.length);
      expect(new Set(got).size).toBe(got.length);
      expect(new Set(got)).toEqual(new Set(withUser.map((r) => r.uuid)));
      expect(summary.eventsRead).toBe(rows.length);
      expect(summary.fmeEventsSent).toBe(withUser.length);
      expect(summary.identitiesNotSent.missing_user_id).toBe(rows.length - withUser.length);
    });
  }

  it('maps each event to FME with the right key, type, timestamp and properties', async () => {
    world = await startWorld();
    world.store.add([
      {
        uuid: 'u-1',
        event_type: '[Amplitude] Start Session',
        user_id: 'user-1',
        device_id: 'dev-1',
        event_time: '2024-03-01 10:15:00.250000',
        server_upload_time: '2024-03-01 10:16:00',
        event_properties: { plan: { tier: 'pro' }, items: [1, 2], revenue: 9.5 },
      },
      { uuid: 'u-2', event_type: 'Vidéo lue', user_id: null, device_id: 'dev-2', event_time: '', client_event_time: '2024-03-01 10:20:00', server_upload_time: '2024-03-01 10:21:00', event_properties: {} },
      { uuid: 'u-3', event_type: 'get_treatment', user_id: 'user-3', event_time: '2024-03-01 10:30:00', server_upload_time: '2024-03-01 10:31:00', event_properties: {} },
    ]);
    const config = configFor(world, {
      exportEvents: {
        identities: [
          { trafficType: 'user', from: 'user_id' },
          { trafficType: 'anonymous', from: 'device_id' },
        ],
        valueFrom: 'event_properties.revenue',
      },
    });
    const summary = await runExportEvents({ config, start: h('20240301T10'), end: h('20240301T10'), dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter() });
    const byKey = Object.fromEntries(world.fme.events.map((e) => [`${e.trafficTypeName}:${e.key}`, e]));
    expect(Object.keys(byKey).sort()).toEqual(['anonymous:dev-1', 'anonymous:dev-2', 'user:user-1']);
    expect(byKey['user:user-1']).toMatchObject({
      eventTypeId: 'amp.Amplitude_Start_Session',
      timestamp: Date.UTC(2024, 2, 1, 10, 15, 0, 250),
      value: 9.5,
      properties: { 'plan.tier': 'pro', items: '[1,2]', revenue: 9.5, uuid: 'u-1' },
    });
    // event_time empty: falls back to client_event_time; no user: never the string "null".
    expect(byKey['anonymous:dev-2']?.timestamp).toBe(Date.UTC(2024, 2, 1, 10, 20));
    expect(world.fme.events.some((e) => e.key === 'null')).toBe(false);
    expect(summary.skipped.excluded_event_type).toBe(1);
    expect(Object.keys(summary.renamedEventTypes)).toContain('[Amplitude] Start Session');
  });

  it('retries FME 429 and 5xx without losing or duplicating events', async () => {
    world = await startWorld();
    const rows = seed(world, 1, 30).filter((r) => typeof r.user_id === 'string');
    world.fme.faults.push({ status: 429, headers: { 'retry-after': '0' }, body: 'slow down' }, 2).push({ status: 503 }, 2).push({ status: 500 });
    const logger = createMemoryLogger();
    // The lanes share the five faults in whatever order their requests arrive: enough retries for one batch to meet them all.
    const config = configFor(world, { exportEvents: { batchSize: 50, concurrency: 3 } });
    config.http.retries = 5;
    await runExportEvents({ config, start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: false, logger, deadLetters: deadLetterWriter() });
    const got = uuidsOf(world);
    expect(got.length).toBe(rows.length);
    expect(new Set(got).size).toBe(rows.length);
    expect(world.fme.requests.filter((r) => r.status >= 400).length).toBe(5);
    expect(logger.lines.some((l) => l.level === 'warn')).toBe(true);
  });

  it('stops on FME 401 with a message about the SDK key, and never prints it', async () => {
    world = await startWorld();
    seed(world, 1, 5);
    const config = configFor(world);
    config.fme.sdkKey = 'wrong-sdk-key-abcdef';
    const err = await runExportEvents({ config, start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalRemoteError);
    expect((err as Error).message).toMatch(/SDK key/);
    expect((err as Error).message).not.toContain('wrong-sdk-key-abcdef');
  });

  it('says no event of a batch was delivered when FME refused them all', async () => {
    world = await startWorld();
    seed(world, 1, 2);
    world.fme.faults.push({ status: 400, body: '{"message":"bad event"}' }, 1000);
    const dl = deadLetterWriter();
    const logger = createMemoryLogger();
    await runExportEvents({ config: configFor(world, { exportEvents: { batchSize: 20, concurrency: 1 } }), start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: false, logger, deadLetters: dl });
    await dl.close();
    const refused = logger.lines.filter((l) => l.message.startsWith('FME refused '));
    expect(refused.length).toBeGreaterThan(0);
    for (const l of refused) expect(l.message).toMatch(/^FME refused (\d+) of a batch of \1 events \(HTTP 400\); they are in the dead-letter file$/);
  });

  it('dead-letters only the event FME refuses: the rest of its batch is delivered, and the run goes on', async () => {
    world = await startWorld();
    const rows = seed(world, 1, 10).filter((r) => typeof r.user_id === 'string');
    // FME refuses any request holding the first event: the whole batch of 20, then halves down to that event.
    const bad = { status: 400, body: '{"message":"bad event"}' };
    const ok = { status: 202, afterProcessing: true };
    world.fme.faults.push(bad, 5).push(ok, 4);
    const dl = deadLetterWriter();
    const logger = createMemoryLogger();
    const summary = await runExportEvents({ config: configFor(world, { exportEvents: { batchSize: 20, concurrency: 1 } }), start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: false, logger, deadLetters: dl });
    await dl.close();
    const letters = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; status: number; payload: { properties: { uuid: string } }; source: { entry: string; line: number } });
    // Halves of 20: 10, 5, 2, then the refused event alone; its neighbours of 1, 3, 5 and 10 events go through.
    expect(world.fme.requests.slice(0, 9).map((r) => r.status)).toEqual([400, 400, 400, 400, 400, 202, 202, 202, 202]);
    expect(letters.length).toBe(1);
    expect(logger.lines.some((l) => l.message.startsWith('FME refused 1 of a batch of 20 events (HTTP 400); they are in the dead-letter file, the other 19 were delivered'))).toBe(true);
    expect(letters[0]).toMatchObject({ reason: 'fme_rejected', status: 400 });
    expect(letters[0]?.source.entry).toMatch(/\.json\.gz$/);
    expect(summary.fmeEventsSent + letters.length).toBe(rows.length);
    const all = new Set([...uuidsOf(world), ...letters.map((l) => l.payload.properties.uuid)]);
    expect(all.size).toBe(rows.length);
    expect(readFileSync(dl.path, 'utf8')).not.toContain(KEYS.fmeSdkKey);
  });

  it('records progress only once the dead letters it covers are on disk', async () => {
    const hour = h('20240301T10');
    const good = (i: number): string =>
      JSON.stringify({ uuid: `ok-${i}`, event_type: 'A', user_id: `user-${i}`, event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' });
    // Batches of 5: a line that is not JSON in the first, then a batch FME rejects.
    const lines = [good(1), '{"broken": ', good(2), good(3), good(4), good(5), good(6), good(7), good(8), good(9), good(10), good(11)];
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? lines : []), entriesPerHour: 1 } });
    // The second batch is refused whole and in every part it is split into (5 events: 9 requests).
    world.fme.faults.push({ status: 200, afterProcessing: true }).push({ status: 400, body: '{"message":"bad event"}' }, 9);
    const dl = deadLetterWriter();
    // What a crash at each moment the state moves on would leave in the dead-letter file.
    const onDisk: { step: string; written: number; inFile: number }[] = [];
    const seen = (step: string): void => {
      onDisk.push({ step, written: dl.count, inFile: existsSync(dl.path) ? readFileSync(dl.path, 'utf8').split('\n').filter(Boolean).length : 0 });
    };
    const checkpoint: ExportCheckpoint = {
      resumeRanges: () => [],
      acknowledge: async () => seen('acknowledge'),
      completeWindow: async () => seen('completeWindow'),
    };
    const config = configFor(world, { exportEvents: { batchSize: 5, concurrency: 1 } });
    await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: dl, checkpoint });
    expect(onDisk.at(-1)).toEqual({ step: 'completeWindow', written: 6, inFile: 6 });
    expect(onDisk.filter((s) => s.inFile !== s.written)).toEqual([]);
    expect(onDisk.some((s) => s.step === 'acknowledge' && s.written > 0)).toBe(true);
  });

  it('resumes a row whose identities were split between an acknowledged batch and a lost one, sending each event once', async () => {
    const hour = h('20240301T10');
    const row = (i: number): string =>
      JSON.stringify({ uuid: `u-${i}`, event_type: 'A', user_id: `user-${i}`, device_id: `device-${i}`, event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' });
    // Two FME events a row, batches of 3: row 2's user event ends the first batch, its device event starts the second.
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? [1, 2, 3, 4].map(row) : []), entriesPerHour: 1 } });
    world.fme.faults.push({ status: 200, afterProcessing: true }).push({ status: 503 }, FAST_HTTP.retries + 1);
    let acknowledged: Ranges = [];
    const checkpoint: ExportCheckpoint = {
      resumeRanges: () => acknowledged,
      acknowledge: async (_w, from, to) => {
        acknowledged = addRange(acknowledged, from, to);
      },
      completeWindow: async () => {},
    };
    const config = configFor(world, {
      exportEvents: { batchSize: 3, concurrency: 1, identities: [{ trafficType: 'user', from: 'user_id' }, { trafficType: 'anonymous', from: 'device_id' }] },
    });
    const run = (): Promise<unknown> => runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint });
    await expect(run()).rejects.toThrow(/503/);
    expect(world.fme.count).toBe(3);
    await run();
    const keys = world.fme.events.map((e) => `${e.trafficTypeName}:${e.key}`).sort();
    expect(keys).toEqual([1, 2, 3, 4].flatMap((i) => [`anonymous:device-${i}`, `user:user-${i}`]).sort());
  });

  describe('a stop', () => {
    const hour = h('20240301T10');
    const rows = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ uuid: `s-${i}`, event_type: 'A', user_id: `user-${i}`, event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' }),
    );
    /** A checkpoint in memory, as the state file keeps it. */
    const memory = (): ExportCheckpoint & { acked: () => Ranges } => {
      let acked: Ranges = [];
      return {
        resumeRanges: () => acked,
        acknowledge: async (_w, from, to) => {
          acked = addRange(acked, from, to);
        },
        completeWindow: async () => {
          acked = [];
        },
        acked: () => acked,
      };
    };

    it('sends nothing more once asked to stop: the requests in flight finish, and the next run sends the rest once', async () => {
      const faults = new WatchedFaults();
      world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows : []), entriesPerHour: 1 }, fmeOptions: { faults } });
      // FME holds every answer until the stop, which comes as the second request arrives: both lanes are in flight.
      const stop = new AbortController();
      let stopped = (): void => {};
      const afterStop = new Promise<void>((resolve) => (stopped = resolve));
      faults.onRequest = (n) => {
        if (n !== 2) return;
        stop.abort('SIGTERM received');
        stopped();
      };
      world.fme.faults.push({ status: 202, afterProcessing: true, until: afterStop }, 20);
      const config = configFor(world, { exportEvents: { batchSize: 5, concurrency: 2 } });
      const checkpoint = memory();
      const run = runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint, signal: stop.signal });
      await expect(run).rejects.toThrow(/^stopped early \(SIGTERM received\); delivered batches are recorded$/);
      // The two requests in flight finished (and were recorded); nothing more went out.
      expect(world.fme.requests.map((r) => [r.status, r.events])).toEqual([[202, 5], [202, 5]]);
      expect(world.fme.count).toBe(10);
      faults.onRequest = undefined;
      world.fme.faults.clear();
      await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint });
      expect(uuidsOf(world).sort()).toEqual(rows.map((_, i) => `s-${i}`).sort());
    });

    it('ends a wait between attempts at once; that batch is sent by the next run, once', async () => {
      world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows : []), entriesPerHour: 1 } });
      world.fme.faults.push({ status: 202, afterProcessing: true }).push({ status: 503 });
      const config = configFor(world, { exportEvents: { batchSize: 20, concurrency: 1 } });
      config.http.retryBaseDelayMs = 60_000;
      config.http.retryMaxDelayMs = 60_000;
      const checkpoint = memory();
      // The stop comes once the second batch's wait has begun: just after the run says it will try again.
      const stop = new AbortController();
      const logger = onRetryWait(() => stop.abort('SIGINT received'));
      const started = Date.now();
      const run = runExportEvents({ config, start: hour, end: hour, dryRun: false, logger, deadLetters: deadLetterWriter(), checkpoint, signal: stop.signal });
      await expect(run).rejects.toThrow(/^stopped early \(SIGINT received\)/);
      // The wait is 30 to 60 s (jitter on 60 s): the run did not sit it out.
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(logger.lines.filter((l) => l.message.startsWith('retrying'))).toHaveLength(1);
      expect(world.fme.requests.map((r) => r.status)).toEqual([202, 503]);
      expect(world.fme.count).toBe(20);
      await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint });
      expect(uuidsOf(world).sort()).toEqual(rows.map((_, i) => `s-${i}`).sort());
    });

    it('a refused batch that stops part-way through its split is recorded whole: the next run sends none of it again', async () => {
      world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows.slice(0, 10) : []), entriesPerHour: 1 } });
      // Refused whole; its first half goes in; FME fails the second half until the retries run out.
      world.fme.faults.push({ status: 400, body: '{"message":"bad event"}' }).push({ status: 202, afterProcessing: true }).push({ status: 503 }, FAST_HTTP.retries + 1);
      const config = configFor(world, { exportEvents: { batchSize: 10, concurrency: 1 } });
      const checkpoint = memory();
      const dl = deadLetterWriter();
      await expect(runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: dl, checkpoint })).rejects.toThrow(/503/);
      await dl.close();
      expect(world.fme.count).toBe(5);
      const letters = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; retriable: boolean });
      expect(letters.map((l) => [l.reason, l.retriable])).toEqual(Array.from({ length: 5 }, () => ['fme_not_sent', true]));
      world.fme.faults.clear();
      await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint });
      expect(world.fme.count).toBe(5);
    });

    it('a refused batch stopped before any part of it was delivered or refused stays for the next run, which sends it once', async () => {
      // Refused whole; the stop comes as its first half is refused too, before anything of it is delivered.
      const faults = new WatchedFaults();
      world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows.slice(0, 10) : []), entriesPerHour: 1 }, fmeOptions: { faults } });
      const stop = new AbortController();
      faults.onRequest = (n) => {
        if (n === 2) stop.abort('SIGTERM received');
      };
      world.fme.faults.push({ status: 400, body: '{"message":"bad event"}' }, 2);
      const config = configFor(world, { exportEvents: { batchSize: 10, concurrency: 1 } });
      const checkpoint = memory();
      const dl = deadLetterWriter();
      const logger = createMemoryLogger();
      await expect(runExportEvents({ config, start: hour, end: hour, dryRun: false, logger, deadLetters: dl, checkpoint, signal: stop.signal })).rejects.toThrow(/stopped/);
      await dl.close();
      expect(world.fme.count).toBe(0);
      expect(dl.count).toBe(0);
      expect(checkpoint.acked()).toEqual([]);
      expect(logger.lines.some((l) => /the next run sends it again/.test(l.message))).toBe(true);
      faults.onRequest = undefined;
      world.fme.faults.clear();
      await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint });
      expect(uuidsOf(world).sort()).toEqual(rows.slice(0, 10).map((_, i) => `s-${i}`).sort());
    });

    it('progress that cannot be recorded stops the sending, so no more is sent than will be sent again', async () => {
      world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows : []), entriesPerHour: 1 } });
      let calls = 0;
      const checkpoint: ExportCheckpoint = {
        resumeRanges: () => [],
        acknowledge: async () => {
          if (++calls === 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
        },
        completeWindow: async () => {},
      };
      const config = configFor(world, { exportEvents: { batchSize: 5, concurrency: 1 } });
      await expect(runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: deadLetterWriter(), checkpoint })).rejects.toThrow(/ENOSPC/);
      // The first batch is recorded; the second was sent but could not be recorded; nothing after it went out.
      expect(world.fme.requests.length).toBe(2);
    });
  });

  it('keeps lines that are not JSON as dead letters, never fatal', async () => {
    const hour = h('20240301T10');
    const broken = '{"uuid": "broken", "event_type": ';
    const lines = [
      '{"uuid":"ok-1","event_type":"A","user_id":"user-1","event_time":"2024-03-01 10:00:00","server_upload_time":"2024-03-01 10:00:00"}',
      '',
      broken,
      '{"uuid":"ok-2","event_type":"B","user_id":"user-2","event_time":"2024-03-01 10:01:00","server_upload_time":"2024-03-01 10:01:00"}',
    ];
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? lines : []), entriesPerHour: 1 } });
    const dl = deadLetterWriter();
    const summary = await runExportEvents({ config: configFor(world), start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: dl });
    await dl.close();
    expect(summary.invalidLines).toBe(1);
    expect(summary.blankLines).toBeGreaterThanOrEqual(1);
    expect(summary.fmeEventsSent).toBe(2);
    const letter = JSON.parse(readFileSync(dl.path, 'utf8').trim()) as { reason: string; payload: string; source: { line: number; entry: string } };
    expect(letter.reason).toBe('invalid_json');
    expect(letter.payload).toBe(broken);
    expect(letter.source.line).toBe(3);
  });

  it('dead-letters rows it cannot map, with their reason and source, never dropping them; the other rows are delivered', async () => {
    const hour = h('20240301T10');
    const at = '2024-03-01 10:00:00';
    const good = (i: number): Record<string, unknown> => ({ uuid: `ok-${i}`, event_type: 'A', user_id: `user-${i}`, event_time: at, server_upload_time: at });
    const noTime = { uuid: 'no-time', event_type: 'A', user_id: 'user-2', event_time: null, client_event_time: '', server_upload_time: '' };
    const noType = { uuid: 'no-type', event_type: null, user_id: 'user-4', event_time: at, server_upload_time: at };
    const longId = { uuid: 'long-id', event_type: 'A', user_id: 'u'.repeat(251), event_time: at, server_upload_time: at };
    const rows = [good(1), noTime, good(3), noType, longId, good(6)];
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? rows.map((r) => JSON.stringify(r)) : []), entriesPerHour: 1 } });
    const dl = deadLetterWriter();
    const summary = await runExportEvents({ config: configFor(world), start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: dl });
    await dl.close();
    expect(uuidsOf(world).sort()).toEqual(['ok-1', 'ok-3', 'ok-6']);
    const letters = existsSync(dl.path) ? readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { source: { entry: string } }) : [];
    // The export's one entry for that hour, as `<project>/<project>_2024-03-01_10#<partition>.json.gz`.
    const entry = expect.stringMatching(/^\d+\/\d+_2024-03-01_10#\d+\.json\.gz$/);
    expect(letters).toEqual([
      { time: expect.any(String), command: 'export-events', reason: 'no_timestamp', detail: 'no parsable event time (event_time=null, client_event_time="", server_upload_time="")', source: { window: '20240301T10', entry, line: 2 }, retriable: false, payload: noTime },
      { time: expect.any(String), command: 'export-events', reason: 'no_event_type', detail: 'event_type is null', source: { window: '20240301T10', entry, line: 4 }, retriable: false, payload: noType },
      { time: expect.any(String), command: 'export-events', reason: 'invalid_key', detail: 'no usable key: user_id is too long', source: { window: '20240301T10', entry, line: 5 }, retriable: false, payload: longId },
    ]);
    expect(new Set(letters.map((l) => l.source.entry)).size).toBe(1);
    // What the run summary reports: every row read, three sent, none skipped, three dead letters that a retry cannot re-send.
    expect(summary).toMatchObject({ linesRead: 6, eventsRead: 6, fmeEventsMapped: 3, fmeEventsSent: 3, invalidLines: 0, skipped: {}, identitiesNotSent: { too_long_user_id: 1 } });
    expect([dl.count, dl.retriableCount, dl.counts()]).toEqual([3, 0, { no_timestamp: 1, no_event_type: 1, invalid_key: 1 }]);
  });

  it('gives up splitting a batch FME refuses in every part after 64 requests: its events are retriable dead letters, and the run goes on', async () => {
    const hour = h('20240301T10');
    const at = '2024-03-01 10:00:00';
    const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify({ uuid: `r-${i}`, event_type: 'A', user_id: `user-${i}`, event_time: at, server_upload_time: at }));
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? lines : []), entriesPerHour: 1 } });
    // FME refuses every request, as it would for a batch of events all bad in the same way.
    world.fme.faults.push({ status: 400, body: '{"message":"bad event"}' }, 10_000);
    const dl = deadLetterWriter();
    const logger = createMemoryLogger();
    const summary = await runExportEvents({ config: configFor(world, { exportEvents: { batchSize: 200, concurrency: 1 } }), start: hour, end: hour, dryRun: false, logger, deadLetters: dl });
    await dl.close();
    // One batch of 200, split (README: at most 64 requests a batch), none of it stored.
    const requests = world.fme.requests;
    expect(requests.every((r) => r.status === 400 && !r.stored)).toBe(true);
    expect(requests.length).toBeGreaterThan(2);
    expect(requests.length).toBeLessThanOrEqual(64);
    expect(world.fme.count).toBe(0);
    // Every event is a dead letter once, with FME's status and body, and can be re-sent by `amp-fme retry`.
    const letters = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; status: number; detail: string; retriable: boolean; source: { window: string; line: number }; payload: { properties: { uuid: string } } });
    expect(letters.map((l) => l.payload.properties.uuid).sort()).toEqual(lines.map((_, i) => `r-${i}`).sort());
    expect(letters.map((l) => l.source.line).sort((a, b) => a - b)).toEqual(lines.map((_, i) => i + 1));
    for (const l of letters) expect(l).toMatchObject({ reason: 'fme_rejected', status: 400, retriable: true, source: { window: '20240301T10' } });
    // Those tried alone carry FME's answer as theirs; those in a part the budget left whole say so, and that they may be fine.
    const alone = letters.filter((l) => l.detail === 'FME answered 400: {"message":"bad event"}');
    const inPart = letters.filter((l) => /^FME answered 400 to a part of \d+ events holding it, not to it alone \(the 64 requests a refused batch may take were spent\): \{"message":"bad event"\}\. It may be fine: amp-fme retry re-sends it$/.test(l.detail));
    expect(alone.length).toBeGreaterThan(0);
    expect(inPart.length).toBeGreaterThan(0);
    expect(alone.length + inPart.length).toBe(200);
    // The part each names is a request FME did refuse (not a half of one that was never sent on its own).
    const refusedSizes = new Set(requests.map((r) => r.events));
    for (const l of inPart) expect(refusedSizes.has(Number(/a part of (\d+) events/.exec(l.detail)?.[1]))).toBe(true);
    // The run finished (no error: the CLI exits 3 for its dead letters) and says so.
    expect(summary).toMatchObject({ eventsRead: 200, fmeEventsSent: 0 });
    expect([dl.count, dl.retriableCount, dl.counts()]).toEqual([200, 200, { fme_rejected: 200 }]);
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([expect.stringMatching(/^FME refused 200 of a batch of 200 events \(HTTP 400\); they are in the dead-letter file/)]);
  });

  it('writes NDJSON with --output and sends nothing; --dry-run sends nothing', async () => {
    world = await startWorld();
    const rows = seed(world, 1, 4).filter((r) => typeof r.user_id === 'string');
    const out = join(tempDir('out'), 'events.ndjson');
    const config = configFor(world);
    const s1 = await runExportEvents({ config, start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: false, output: out, logger: createMemoryLogger(), deadLetters: deadLetterWriter() });
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines.length).toBe(rows.length);
    expect(s1.fmeEventsWritten).toBe(rows.length);
    const s2 = await runExportEvents({ config, start: h('2024-03-01'), end: h('2024-03-01', 'end'), dryRun: true, logger: createMemoryLogger(), deadLetters: deadLetterWriter() });
    expect(s2.fmeEventsMapped).toBe(rows.length);
    expect(world.fme.count).toBe(0);
    expect(existsSync(out)).toBe(true);
  });
});
