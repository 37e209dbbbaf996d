import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { validateConfig } from '../../src/config/validate.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runExportEvents } from '../../src/pipeline/export-events.js';
import { FAST_HTTP, KEYS, startWorld, type World } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('export-events property key collisions', () => {
  it('counts a property replaced by another with the same flattened key, instead of losing it unseen', async () => {
    world = await startWorld();
    const at = '2024-03-01 10:00:00';
    world.store.add([
      // `page.url` (a key with a dot, as Amplitude allows) and `page: {url}` flatten to the same key.
      { uuid: 'u-1', event_type: 'Viewed', user_id: 'user-1', event_time: at, server_upload_time: at, event_properties: { 'page.url': '/a', page: { url: '/b' } } },
      // The same value twice loses nothing: not counted.
      { uuid: 'u-2', event_type: 'Viewed', user_id: 'user-2', event_time: at, server_upload_time: at, event_properties: { 'page.url': '/c', page: { url: '/c' } } },
    ]);
    const { config, problems } = validateConfig({ amplitude: { exportBaseUrl: world.server.url }, fme: { eventsBaseUrl: `${world.server.url}/api` }, http: FAST_HTTP });
    expect(problems).toEqual([]);
    config.amplitude.apiKey = KEYS.amplitudeApiKey;
    config.amplitude.secretKey = KEYS.amplitudeSecretKey;
    config.fme.sdkKey = KEYS.fmeSdkKey;
    const hour = parseHourArg('20240301T10', 'start');
    const deadLetters = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'export-events');
    const summary = await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters });
    await deadLetters.close();
    expect(world.fme.events.map((e) => e.properties)).toEqual([{ 'page.url': '/b' }, { 'page.url': '/c' }]);
    // One value ('/a') could not be sent: the summary says so.
    expect(summary.trimmed).toEqual({ key_collision: 1 });
  });
});
