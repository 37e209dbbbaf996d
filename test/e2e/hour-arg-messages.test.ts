import { afterEach, describe, expect, it } from 'vitest';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('--start/--end that are in an accepted layout but name no hour', () => {
  it('exits 2 saying which field is out of range, under a non-UTC TZ, and asks nothing of Amplitude', async () => {
    world = await startWorld();
    world.writeConfig();
    const cases: [string[], string][] = [
      [['--start', '2024-02-30', '--end', '2024-03-01'], 'Invalid --start hour "2024-02-30": February 2024 has 29 days, so day 30 does not exist.'],
      [['--start', '2024-02-28', '--end', '2024-03-01T24:00'], 'Invalid --end hour "2024-03-01T24:00": hour 24 does not exist: hours run from 00 to 23'],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['export-events', ...args], world.dir, { TZ: 'Australia/Lord_Howe' });
      expect(r.code, r.stderr).toBe(2);
      const [line] = logLines(r.stderr);
      expect(line?.message).toContain(message);
      expect(line?.message).toContain('YYYYMMDDTHH'); // still lists the layouts
    }
    expect(world.exportApi.requests).toEqual([]);
  });
});
