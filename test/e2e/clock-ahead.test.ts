import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { floorHour, formatHour, HOUR_MS } from '../../src/amplitude/hours.js';
import { CLOCK_AHEAD_TOLERANCE_MS } from '../../src/pipeline/export-events.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

/** Preload that moves the CLI's wall clock by AMP_FME_TEST_CLOCK_SHIFT_HOURS hours. */
const SHIFT_CLOCK = join(__dirname, '../helpers/shift-clock.cjs');

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const nowHour = floorHour(Date.now());
const ago = (hours: number): number => nowHour - hours * HOUR_MS;

function cursorOf(w: World): { lastDeliveredHour: string | null } {
  const dir = join(w.dir, '.amp-fme');
  const f = readdirSync(dir).find((n) => n.startsWith('export-events-') && n.endsWith('.json')) as string;
  return (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { cursor: { lastDeliveredHour: string | null } }).cursor;
}

describe('export-events on a machine whose clock jumped ahead', () => {
  it('does not move the --since-last-run cursor past hours that have not settled by Amplitude\'s clock', async () => {
    world = await startWorld();
    // Settled hours, and the hours that have not settled yet (a real project's would still receive events).
    const settled = [...generateExportRows(ago(8), 40, { users: 30, treatmentShare: 0 })];
    world.store.add(settled);
    const unsettled = [...generateExportRows(ago(1), 40, { users: 30, treatmentShare: 0 })];
    world.store.add(unsettled);
    world.writeConfig({ exportEvents: { properties: ['uuid'], windowHours: 2, lagHours: 3 } });
    const start = ['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--end', formatHour(ago(7))];
    expect((await runCli(start, world.dir)).code).toBe(0);
    const before = world.fme.count;

    // The clock jumps two days ahead: by it, every hour up to 45 hours from now has settled.
    const ahead = await runCli(['export-events', '--since-last-run'], world.dir, {
      NODE_OPTIONS: `--require ${SHIFT_CLOCK}`,
      AMP_FME_TEST_CLOCK_SHIFT_HOURS: '48',
    });
    expect(ahead.code).toBe(1);
    const err = logLines(ahead.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(/clock .* ahead of Amplitude's/);
    expect(err?.message).toMatch(/NTP/);
    // Nothing past what Amplitude's clock calls settled is recorded as delivered: ago(4), or ago(3) in the last
    // minutes of an hour (the tolerance for a clock a little fast).
    const newestSettled = floorHour(Date.now() + CLOCK_AHEAD_TOLERANCE_MS - 3 * HOUR_MS) - HOUR_MS;
    const last = cursorOf(world).lastDeliveredHour as string;
    expect(last <= formatHour(newestSettled)).toBe(true);

    // None of the unsettled hours' events went out: their export would miss what Amplitude still adds to them.
    const unsettledUuids = new Set(unsettled.map((r) => String(r.uuid)));
    expect(world.fme.events.slice(before).filter((e) => unsettledUuids.has(String(e.properties?.uuid)))).toEqual([]);

    // With the clock right again, the next run goes on and stops at the newest settled hour, every event sent once.
    const right = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(right.code, right.stderr).toBe(0);
    expect([formatHour(ago(4)), formatHour(newestSettled)]).toContain(cursorOf(world).lastDeliveredHour);
    const uuids = world.fme.events.map((e) => String(e.properties?.uuid));
    const wanted = settled.filter((r) => typeof r.user_id === 'string').map((r) => String(r.uuid));
    expect(uuids.sort()).toEqual(wanted.sort());
  });
});
