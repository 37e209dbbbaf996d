import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

/**
 * A base URL with a space at its end (pasted so into the JSON): new URL() trims it and takes the value, but the
 * URL of each request, built on it, is invalid. It is a config error, not a "network error" retried to the end.
 */

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('a base URL with a space or a line break in it', () => {
  it.each([
    ['amplitude.exportBaseUrl', (url: string) => ({ amplitude: { exportBaseUrl: `${url} ` } })],
    ['fme.eventsBaseUrl', (url: string) => ({ fme: { eventsBaseUrl: `${url}/api \n` } })],
  ])('%s: a config error (exit 2) naming the key, before any request', async (key, extra) => {
    world = await startWorld();
    const hour = parseHourArg('2024-03-01T00', 'start');
    world.store.add([...generateExportRows(hour, 5, { users: 5 })].map((row, i) => ({ ...row, user_id: `user-${i}` })));
    world.writeConfig(extra(world.server.url));
    const r = await runCli(['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--log-format', 'text'], world.dir);
    expect(r.stderr).toContain(`${key}: holds a space, a tab or a line break`);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(/network error/);
    expect(world.exportApi.requests).toHaveLength(0);
    expect(world.fme.count).toBe(0);
  });
});
