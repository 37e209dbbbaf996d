import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

const h = (s: string): number => parseHourArg(s, 'start');
let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** Amplitude answers a request too large for it with a 504 only after minutes: here, after the client's export timeout. */
async function slowTooLarge(options: { maxHoursPerRequest?: number; hugeHours?: number[] }): Promise<World> {
  const w = await startWorld({ exportOptions: { ...options, tooLargeStatus: 504, tooLargeDelayMs: 1_500 } });
  for (let i = 0; i < 24; i++) w.store.add(generateExportRows(h('20240301T00') + i * 3_600_000, 4, { users: 50, treatmentShare: 0 }));
  w.writeConfig({ http: { exportTimeoutMs: 300 }, exportEvents: { properties: ['uuid'] } });
  return w;
}

describe('export-events when Amplitude gives no answer within http.exportTimeoutMs', () => {
  it('halves a window of several hours, as for a 504, instead of asking for it whole until the retries run out', async () => {
    world = await slowTooLarge({ maxHoursPerRequest: 6 });
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--json'], world.dir);
    expect(r.code, r.stderr).toBe(0);
    // Each window of more than 6 hours is asked once, then halved; the 6-hour windows come at once.
    expect(world.exportApi.requests.map((q) => `${q.start}..${q.end}`)).toEqual([
      '20240301T00..20240301T23',
      '20240301T00..20240301T11',
      '20240301T00..20240301T05',
      '20240301T06..20240301T11',
      '20240301T12..20240301T23',
      '20240301T12..20240301T17',
      '20240301T18..20240301T23',
    ]);
    const uuids = world.fme.events.map((e) => e.properties?.uuid);
    expect(uuids.length).toBeGreaterThan(0);
    expect(new Set(uuids).size).toBe(uuids.length);
    expect(JSON.parse(r.stdout)).toMatchObject({ hoursExported: 24, fmeEventsSent: uuids.length, deadLetters: 0 });
  });

  it('asks again for a window a run was part-way through, which is never halved, instead of stopping at its first timeout', async () => {
    world = await slowTooLarge({});
    world.writeConfig({ http: { exportTimeoutMs: 300 }, exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1 } });
    const args = ['export-events', '--start', '2024-03-01', '--end', '2024-03-01'];
    // The first run delivers two batches, then FME refuses the key: it stops part-way through the day.
    world.fme.faults.push({ status: 202, afterProcessing: true }, 2).push({ status: 401, body: 'Unauthorized' });
    const first = await runCli(args, world.dir);
    expect(first.code).toBe(1);
    expect(world.fme.count).toBe(20);
    // The next run's first request for that day gets no answer in time; the second one does.
    world.exportApi.faults.push({ status: 200, afterProcessing: true, delayMs: 1_500 });
    const next = await runCli([...args, '--json'], world.dir);
    expect(next.code, next.stderr).toBe(0);
    expect(world.exportApi.requests.map((q) => `${q.start}..${q.end}`)).toEqual(Array(3).fill('20240301T00..20240301T23'));
    const uuids = world.fme.events.map((e) => e.properties?.uuid);
    expect(new Set(uuids).size).toBe(uuids.length);
    expect(JSON.parse(next.stdout)).toMatchObject({ fmeEventsAlreadyDelivered: 20, deadLetters: 0 });
  });

  it('for a single hour, retries, then names http.exportTimeoutMs as well as the S3 export', async () => {
    world = await slowTooLarge({ hugeHours: [h('20240301T05')] });
    const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05'], world.dir);
    expect(r.code).toBe(1);
    const err = logLines(r.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(/single upload hour 20240301T05 .*gave no answer within http\.exportTimeoutMs \(300 ms\) 5 times.*a longer http\.exportTimeoutMs may get it.*S3/);
    expect(world.exportApi.requests).toHaveLength(5); // FAST_HTTP: 4 retries
  });
});
