import { readFileSync } from 'node:fs';
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

describe('export-events dead letters for ids JSON cannot hold exactly', () => {
  it('keeps the line as Amplitude wrote it, not the rounded number that was refused', async () => {
    const hour = parseHourArg('20240301T10', 'start');
    const line = '{"uuid":"big","event_type":"Buy","user_id":12345678901234567890,"event_time":"2024-03-01 10:00:00","server_upload_time":"2024-03-01 10:00:00"}';
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? [line] : []), entriesPerHour: 1 } });
    const { config, problems } = validateConfig({ amplitude: { exportBaseUrl: world.server.url }, fme: { eventsBaseUrl: `${world.server.url}/api` }, http: FAST_HTTP });
    expect(problems).toEqual([]);
    config.amplitude.apiKey = KEYS.amplitudeApiKey;
    config.amplitude.secretKey = KEYS.amplitudeSecretKey;
    config.fme.sdkKey = KEYS.fmeSdkKey;
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'export-events');
    await runExportEvents({ config, start: hour, end: hour, dryRun: false, logger: createMemoryLogger(), deadLetters: dl });
    await dl.close();
    expect(world.fme.events).toEqual([]);
    const letters = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; payload: unknown });
    expect(letters).toHaveLength(1);
    expect(letters[0]?.reason).toBe('invalid_key');
    // The file shows the id the user has to look for, digit for digit (before: 12345678901234567000).
    expect(letters[0]?.payload).toBe(line);
  });
});
