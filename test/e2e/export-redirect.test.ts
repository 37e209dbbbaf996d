import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('export-events when the Export API address answers with a redirect', () => {
  it('stops at once (exit 1), names the setting to check and shows only the redirect target\'s origin', async () => {
    world = await startWorld();
    world.store.add(generateExportRows(parseHourArg('20240301T05', 'start'), 5, { users: 5 }));
    world.writeConfig();
    // What http://amplitude.com answers: a redirect to https, never followed (it would carry the keys elsewhere).
    world.exportApi.faults.push({ status: 301, headers: { location: 'https://amplitude.com/api/2/export?start=20240301T05&end=20240301T05&token=abc' } });
    const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05'], world.dir);
    expect(r.code).toBe(1);
    const err = logLines(r.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(/answered 301 \(a redirect to https:\/\/amplitude\.com\).*check amplitude\.exportBaseUrl/);
    expect(r.stderr).not.toContain('token=abc');
    expect(world.exportApi.requests.map((q) => q.status)).toEqual([301]);
    expect(world.fme.count).toBe(0);
  });
});
