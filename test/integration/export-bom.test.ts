import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { exportHour, startWorld, worldConfig, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const hour = parseHourArg('20240301T10', 'start');
const row = (u: string): string =>
  `{"uuid":"${u}","event_type":"A","user_id":"user-${u}","event_time":"2024-03-01 10:00:00","server_upload_time":"2024-03-01 10:00:00"}`;

describe('export-events: an export file written with a UTF-8 byte order mark', () => {
  it.each([
    ['LF', ''],
    ['CRLF', '\r'],
  ])('delivers the first event of the file too, with no dead letter (%s)', async (_name, eol) => {
    const lines = [`\uFEFF${row('first')}${eol}`, `${row('second')}${eol}`];
    world = await startWorld({ exportOptions: { source: (h) => (h === hour ? lines : []), entriesPerHour: 1 } });
    const { summary, deadLetterFile } = await exportHour(worldConfig(world, { properties: ['uuid'] }), '20240301T10');
    expect(world.fme.events.map((e) => [e.key, e.properties?.uuid])).toEqual([
      ['user-first', 'first'],
      ['user-second', 'second'],
    ]);
    expect(summary.invalidLines).toBe(0);
    expect(existsSync(deadLetterFile) ? readFileSync(deadLetterFile, 'utf8') : '').toBe('');
  });
});
