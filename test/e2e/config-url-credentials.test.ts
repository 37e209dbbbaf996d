import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { loadConfig } from '../../src/config/load.js';
import { redact } from '../../src/http/redact.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { tempDir } from '../helpers/temp-dir.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

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

  it('amplitude.ingestionBaseUrl (the key travels in the body) keeps working, its password masked like a key', async () => {
    const dir = tempDir('cfg-url');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { ingestionBaseUrl: `https://proxy:${PASSWORD}@ingest.example` } }));
    const ok = await loadConfig({ cwd: dir, env: {} });
    expect(ok.config.amplitude.ingestionBaseUrl).toBe(`https://proxy:${PASSWORD}@ingest.example`);
    expect(redact(`at https://proxy:${PASSWORD}@ingest.example/batch`)).toBe('at https://proxy:***@ingest.example/batch');
  });
});
