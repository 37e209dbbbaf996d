import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { exportHour, startWorld, worldConfig, type World } from '../helpers/world.js';

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
    const { deadLetterFile } = await exportHour(worldConfig(world), '20240301T10');
    expect(world.fme.events).toEqual([]);
    const letters = readFileSync(deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; payload: unknown });
    expect(letters).toHaveLength(1);
    expect(letters[0]?.reason).toBe('invalid_key');
    // The file shows the id the user has to look for, digit for digit (before: 12345678901234567000).
    expect(letters[0]?.payload).toBe(line);
  });
});
