import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

/**
 * FME's impressions that push-impressions sent to Amplitude come back in its exports under
 * pushImpressions.eventType; export-events leaves them out by default (excludeEventTypes: get_treatment). A config
 * that renames the one without the other, or replaces the exclude list, would send them back to FME as track
 * events: the run warns, naming the type and the setting to add it to.
 */

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const ARGS = ['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--log-format', 'json'];

async function worldWith(types: string[]): Promise<World> {
  const w = await startWorld();
  const hour = parseHourArg('2024-03-01T00', 'start');
  w.store.add([...generateExportRows(hour, types.length, { users: 5 })].map((row, i) => ({ ...row, user_id: `user-${i}`, event_type: types[i] })));
  return w;
}

const warnings = (stderr: string): string[] => logLines(stderr).filter((l) => l.level === 'warn').map((l) => String(l.message));

describe('export-events: the event type push-impressions writes is not left out', () => {
  it('warns when pushImpressions.eventType is renamed and excludeEventTypes does not follow, and sends those events as told', async () => {
    world = await worldWith(['Clicked', 'flag_exposure', 'get_treatment']);
    world.writeConfig({ pushImpressions: { eventType: 'flag_exposure' }, exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }] } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(warnings(r.stderr)).toEqual([
      'exportEvents.excludeEventTypes does not leave out "flag_exposure", the event type push-impressions gives FME\'s impressions in Amplitude (pushImpressions.eventType): they would go back to FME as track events. Add it to exportEvents.excludeEventTypes',
    ]);
    expect(world.fme.events.map((e) => e.eventTypeId).sort()).toEqual(['amp.Clicked', 'amp.flag_exposure']);
  });

  it('warns when excludeEventTypes is replaced by a list without get_treatment', async () => {
    world = await worldWith(['Clicked', 'debug_ping']);
    world.writeConfig({ exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }], excludeEventTypes: ['debug_*'] } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(warnings(r.stderr)).toEqual([expect.stringMatching(/^exportEvents\.excludeEventTypes does not leave out "get_treatment"/)]);
  });

  it('says nothing when the renamed type is excluded (by a glob), includeEventTypes does not let it in, or push-impressions is in identify mode', async () => {
    world = await worldWith(['Clicked', 'flag_exposure']);
    world.writeConfig({ pushImpressions: { eventType: 'flag_exposure' }, exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }], excludeEventTypes: ['get_treatment', 'flag_*'] } });
    const excluded = await runCli(ARGS, world.dir);
    expect(excluded.code, excluded.stderr).toBe(0);
    expect(warnings(excluded.stderr)).toEqual([]);
    expect(world.fme.events.map((e) => e.eventTypeId)).toEqual(['amp.Clicked']);

    world.writeConfig({ pushImpressions: { eventType: 'flag_exposure' }, exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }], includeEventTypes: ['Clicked'] } });
    const included = await runCli([...ARGS, '--dry-run'], world.dir);
    expect(included.code, included.stderr).toBe(0);
    expect(warnings(included.stderr)).toEqual([]);

    // push-impressions in identify mode sends user properties, no events: nothing can come back.
    world.writeConfig({ pushImpressions: { mode: 'identify', eventType: 'flag_exposure' }, exportEvents: { identities: [{ trafficType: 'user', from: 'user_id' }] } });
    const identify = await runCli([...ARGS, '--dry-run'], world.dir);
    expect(identify.code, identify.stderr).toBe(0);
    expect(warnings(identify.stderr)).toEqual([]);
  });
});
