import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

/**
 * An identity rule whose `from` names no field of the export rows ("userId" for user_id): every event is skipped
 * (no_identity), nothing reaches FME, and the hours are recorded as delivered. The run says so in a warning.
 */

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const ARGS = ['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--log-format', 'json'];

async function worldWithEvents(): Promise<World> {
  const w = await startWorld();
  const hour = parseHourArg('2024-03-01T00', 'start');
  w.store.add([...generateExportRows(hour, 20, { users: 5 })].map((row, i) => ({ ...row, user_id: `user-${i}`, device_id: `device-${i}`, event_type: 'Clicked' })));
  return w;
}

describe('export-events: an identity field that no event has', () => {
  it('warns, naming the rule and its field, when no mapped event had a value for it', async () => {
    world = await worldWithEvents();
    world.writeConfig({ exportEvents: { identities: [{ trafficType: 'user', from: 'userId' }, { trafficType: 'anonymous', from: 'device_id' }] } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(world.fme.count).toBe(20); // the device_id rule still sends
    const warnings = logLines(r.stderr).filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/^exportEvents\.identities\[0\]\.from "userId" had no value in any of the 20 events mapped: .*check the field name/);
  });

  it('says nothing when half the events have it and two rules read it (two traffic types from one field)', async () => {
    world = await startWorld();
    const hour = parseHourArg('2024-03-01T00', 'start');
    world.store.add([...generateExportRows(hour, 20, { users: 5 })].map((row, i) => ({ ...row, user_id: i % 2 === 0 ? `user-${i}` : null, device_id: `device-${i}`, event_type: 'Clicked' })));
    world.writeConfig({ exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }, { trafficType: 'account', from: 'user_id' }, { trafficType: 'anonymous', from: 'device_id' }] } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(logLines(r.stderr).filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('says nothing when the field is there', async () => {
    world = await worldWithEvents();
    world.writeConfig({ exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }] } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(world.fme.count).toBe(20);
    expect(logLines(r.stderr).filter((l) => l.level === 'warn')).toEqual([]);
  });
});
