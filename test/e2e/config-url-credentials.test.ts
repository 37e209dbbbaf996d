import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { redact } from '../../src/http/redact.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { ingestionTestBed, usersDump } from '../helpers/push.js';
import { KEYS, runCli, startWorld, type World } from '../helpers/world.js';

/**
 * A base URL with a user name and password in it (`http://user:pass@proxy`): got makes them the request's
 * Authorization header, in place of the one that carries the Export API's key pair or FME's SDK key, and the
 * messages that name the URL would print the password.
 */

const PASSWORD = 'Pr0xyPassw0rd';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function worldWithEvents(): Promise<World> {
  const w = await startWorld();
  const hour = parseHourArg('2024-03-01T00', 'start');
  w.store.add([...generateExportRows(hour, 5, { users: 5 })].map((row, i) => ({ ...row, user_id: `user-${i}` })));
  return w;
}

const ARGS = ['export-events', '--start', '2024-03-01T00', '--end', '2024-03-01T00', '--log-format', 'json'];

describe('a user name and password in a base URL', () => {
  it('amplitude.exportBaseUrl: a config error (exit 2) that does not show the password, before any request', async () => {
    world = await worldWithEvents();
    world.writeConfig({ amplitude: { exportBaseUrl: world.server.url.replace('http://', `http://proxy:${PASSWORD}@`) } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/amplitude\.exportBaseUrl: must not hold a user name or password/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    expect(world.exportApi.requests).toHaveLength(0);
    expect(world.fme.count).toBe(0);
  });

  it('fme.eventsBaseUrl: a config error (exit 2) that does not show the password, before any request', async () => {
    world = await worldWithEvents();
    world.writeConfig({ fme: { eventsBaseUrl: `${world.server.url.replace('http://', `http://proxy:${PASSWORD}@`)}/api` } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/fme\.eventsBaseUrl: must not hold a user name or password/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    expect(world.exportApi.requests).toHaveLength(0);
  });

  it('is not shown by the message about a URL of another scheme either', async () => {
    world = await worldWithEvents();
    world.writeConfig({ amplitude: { exportBaseUrl: `ftp://proxy:${PASSWORD}@127.0.0.1:1` } });
    const r = await runCli(ARGS, world.dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/amplitude\.exportBaseUrl: must be an http\(s\) URL, got \\?"ftp:\/\/\*\*\*@127\.0\.0\.1:1/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

});

describe('a user name and password in amplitude.ingestionBaseUrl (a proxy; the key travels in the body)', () => {
  const bed = ingestionTestBed('cfg-url-ingest', { apiKey: KEYS.amplitudeApiKey });

  it('keeps working: the events are stored, and the password is not shown', async () => {
    const config = { amplitude: { ingestionBaseUrl: bed.url.replace('http://', `http://proxy:${PASSWORD}@`) } };
    writeFileSync(join(bed.dir, 'amp-fme.config.json'), JSON.stringify(config));
    const dump = usersDump(bed, 'proxied.ndjson', 20);
    const r = await runCli(['push-impressions', dump, '--json', '--log-format', 'json'], bed.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(bed.emulator.count).toBe(20);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    // Any text that shows such a URL masks its user information, a short password too.
    expect(redact(`at https://proxy:${PASSWORD}@ingest.example/batch`)).toBe('at https://***@ingest.example/batch');
  });
});
