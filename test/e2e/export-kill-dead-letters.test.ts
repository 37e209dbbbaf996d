import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { deadLetterRecords, EXPORT_HOUR, exportOf30, fmeKeys, KILL_AFTER_DEAD_LETTER_SYNC, REFUSE_BATCH_OF_10, retriableLetters } from '../helpers/kill-dead-letters.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('kill -9 while progress is being recorded, after dead letters are on disk', () => {
  it('export-events: an event is never both delivered and left in a retriable dead-letter file', async () => {
    world = await startWorld();
    // FME refuses the first batch whole and in every part: its 10 events become dead letters...
    exportOf30(world, 1, REFUSE_BATCH_OF_10);
    // ... and the run is killed while it records that batch as handled.
    const killed = await runCli(EXPORT_HOUR, world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    expect(retriableLetters(world)).toHaveLength(10);

    // FME takes them now: the run again goes on and exits 0.
    const again = await runCli(EXPORT_HOUR, world.dir);
    expect(again.code).toBe(0);
    const delivered = new Set(fmeKeys(world));
    expect(delivered.size).toBe(30);
    // A retriable dead letter of an event FME already has would be sent a second time by `amp-fme retry`.
    const both = retriableLetters(world).filter((k) => delivered.has(k));
    expect(both).toEqual([]);
  });

  it("export-events, concurrency 2: another batch's progress write never records a refused batch's dead letters before that batch", async () => {
    world = await startWorld();
    // The first two batches go out together and FME refuses both whole and in every part, answering after a moment,
    // so that their splits interleave: one is acknowledged while the other is still being split...
    exportOf30(world, 2, 2 * REFUSE_BATCH_OF_10, 20);
    // ... and the run is killed at the progress write after that one: the first one went through.
    const killed = await runCli(EXPORT_HOUR, world.dir, {
      NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}`,
      KILL_AT_PROGRESS_WRITE: '2',
    });
    expect(killed.signal).toBe('SIGKILL');

    world.fme.faults.clear();
    const again = await runCli(EXPORT_HOUR, world.dir);
    expect(again.code).toBe(0);
    // Each event is in FME or in one retriable dead letter: never both, never in two.
    const delivered = new Set(fmeKeys(world));
    const letters = retriableLetters(world);
    expect(letters.filter((k) => delivered.has(k))).toEqual([]);
    expect(letters.length).toBe(new Set(letters).size);
    expect(new Set([...delivered, ...letters]).size).toBe(30);
  });

  it('export-events: the dead letter of a line that is not JSON is never left in two files', async () => {
    const hour = parseHourArg('20240301T10', 'start');
    const rows = [...generateExportRows(hour, 30, { users: 50, treatmentShare: 0 })].map((r) => JSON.stringify({ ...r, user_id: `user-${String(r.event_id)}-x` }));
    // Lines 16 and 27: in the ranges of the second and third batches, read (and dead-lettered) before the first is acknowledged.
    const lines = [...rows.slice(0, 15), 'not json at all', ...rows.slice(15, 25), '{"broken', ...rows.slice(25)];
    world = await startWorld({ exportOptions: { source: (h) => (h === hour ? lines : []), entriesPerHour: 1 } });
    world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1, workers: 0 } });
    // Killed at the second progress write after a dead-letter fsync: the first went through.
    const killed = await runCli(EXPORT_HOUR, world.dir, {
      NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}`,
      KILL_AT_PROGRESS_WRITE: '2',
    });
    expect(killed.signal).toBe('SIGKILL');

    const again = await runCli(EXPORT_HOUR, world.dir);
    expect(again.code).toBe(3);
    const invalid = deadLetterRecords(world)
      .filter((l) => l.reason === 'invalid_json')
      .map((l) => l.source.line)
      .sort((a, b) => a - b);
    expect(invalid).toEqual([16, 27]);
  });
});
