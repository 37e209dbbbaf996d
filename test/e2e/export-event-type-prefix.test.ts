import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('exportEvents.eventTypePrefix', () => {
  it('refuses a prefix with ":" (exit 2) instead of sending every event under a prefix with "_" in its place', async () => {
    world = await startWorld();
    world.store.add([{ uuid: 'u-1', event_type: 'Purchase', user_id: 'user-1', event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' }]);
    world.writeConfig({ exportEvents: { eventTypePrefix: 'amplitude:' } });
    const r = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('exportEvents.eventTypePrefix: may hold only letters, digits and - _ . and must start with a letter or digit');
    // Nothing reached FME (before, it received `amplitude_Purchase`, which no metric on `amplitude:Purchase` counts).
    expect(world.fme.events).toEqual([]);
  });
});
