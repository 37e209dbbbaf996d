import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { startServer } from '../../src/sandbox/server.js';
import { KEYS, runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('amp-fme retry (spawned)', () => {
  it('re-sends the events FME rejected, exactly once, and marks the file as retried', async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 60, { users: 50, treatmentShare: 0 })];
    world.store.add(rows);
    const wanted = rows.filter((r) => typeof r.user_id === 'string');
    world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1 } });
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 2);
    const first = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(first.code).toBe(3);
    const { deadLetterFile, deadLetters } = JSON.parse(first.stdout) as { deadLetterFile: string; deadLetters: number };
    expect(deadLetters).toBe(20);
    expect(world.fme.count).toBe(wanted.length - 20);

    const retry = await runCli(['retry', deadLetterFile, '--json'], world.dir);
    expect(retry.code).toBe(0);
    const summary = JSON.parse(retry.stdout) as { resent: { fme: number }; deadLetters: number; renamedTo: string };
    expect(summary.resent.fme).toBe(20);
    expect(summary.deadLetters).toBe(0);
    const uuids = world.fme.events.map((e) => e.properties?.uuid);
    expect(uuids.length).toBe(wanted.length);
    expect(new Set(uuids).size).toBe(wanted.length);
    expect(existsSync(deadLetterFile)).toBe(false);
    expect(summary.renamedTo).toBe(`${deadLetterFile}.retried`);

    // A file already retried is not sent twice by accident.
    const again = await runCli(['retry', `${deadLetterFile}.retried`, '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already retried');
    expect(world.fme.count).toBe(wanted.length);
  });

  it('writes what still fails, and what cannot be re-sent, to a new dead-letter file (exit 3)', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'old.ndjson');
    const fmeEvent = { eventTypeId: 'amp.A', trafficTypeName: 'user', key: 'user-1', timestamp: 1_709_287_200_000 };
    writeFileSync(
      file,
      [
        JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: fmeEvent, source: { line: 4 } }),
        JSON.stringify({ command: 'export-events', reason: 'invalid_json', retriable: false, payload: '{"broken', source: { line: 9 } }),
        'this line is not a record',
      ].join('\n'),
    );
    world.fme.faults.push({ status: 400, body: 'still no' });
    const r = await runCli(['retry', file, '--json'], world.dir);
    expect(r.code).toBe(3);
    const s = JSON.parse(r.stdout) as { deadLetterFile: string; stillFailing: Record<string, number>; carriedOver: number };
    expect(s.stillFailing).toEqual({ fme_rejected: 1 });
    expect(s.carriedOver).toBe(2);
    const lines = readFileSync(s.deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; command: string });
    expect(lines.map((l) => l.reason).sort()).toEqual(['fme_rejected', 'invalid_json', 'unreadable_dead_letter']);
    expect(lines.every((l) => l.command === 'retry')).toBe(true);
    expect(readFileSync(s.deadLetterFile, 'utf8')).not.toContain(KEYS.fmeSdkKey);

    // The new file, retried once FME takes the event: it is sent, and what cannot be re-sent is carried over again.
    const again = await runCli(['retry', s.deadLetterFile, '--json'], world.dir);
    const s2 = JSON.parse(again.stdout) as { resent: { fme: number }; stillFailing: Record<string, number>; carriedOver: number };
    expect(s2).toMatchObject({ resent: { fme: 1 }, stillFailing: {}, carriedOver: 2 });
    expect(again.code).toBe(3);
    expect(world.fme.events).toEqual([expect.objectContaining({ key: 'user-1' })]);
  });

  it('re-sends Amplitude events set aside for the daily quota', async () => {
    const amplitude = createAmplitudeIngestionEmulator({ apiKey: KEYS.amplitudeApiKey });
    const server = await startServer([amplitude.route]);
    try {
      world = await startWorld();
      world.writeConfig({ amplitude: { ingestionBaseUrl: server.url } });
      const file = join(world.dir, 'push.ndjson');
      const event = { user_id: 'user-00042', event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: 'fme-abc123', library: 'amp-fme/0.1.0', event_properties: { flag: 'f', treatment: 'on' } };
      writeFileSync(file, `${JSON.stringify({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: event })}\n`);
      const r = await runCli(['retry', file, '--json'], world.dir);
      expect(r.code).toBe(0);
      expect(amplitude.count).toBe(1);
      expect(amplitude.events[0]).toMatchObject({ user_id: 'user-00042', insert_id: 'fme-abc123' });
    } finally {
      await server.close();
    }
  });
});
