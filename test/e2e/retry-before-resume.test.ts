import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deadLetterDir, deadLetterRecords, EXPORT_HOUR, exportOf30, fmeKeys, KILL_AFTER_DEAD_LETTER_SYNC, letterFileOf20, REFUSE_BATCH_OF_10 } from '../helpers/kill-dead-letters.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('retry of a killed run\'s dead-letter file before the run that goes on from its state', () => {
  it('export-events killed with dead letters past its recorded size, then retry, then export-events: every event reaches FME once', async () => {
    world = await startWorld();
    // FME refuses the first batch whole and in every part; the run is killed while it records that batch.
    exportOf30(world, 1, REFUSE_BATCH_OF_10);
    const killed = await runCli(EXPORT_HOUR, world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    const dl = deadLetterDir(world);
    const file = join(dl, readdirSync(dl).find((f) => f.endsWith('.ndjson')) as string);

    // FME takes them now; the user retries the file the killed run left, as its name suggests, before the next run.
    const retried = await runCli(['retry', file, '--json'], world.dir);
    expect(retried.code).toBe(0);
    const again = await runCli(EXPORT_HOUR, world.dir);
    expect(again.code).toBe(0);

    const keys = fmeKeys(world);
    expect(new Set(keys).size).toBe(30);
    expect(keys.length).toBe(30); // none twice: nothing was in flight when the run was killed
    expect(deadLetterRecords(world)).toEqual([]);
  });

  it("retry killed with dead letters past its progress, then retry of its new file, then the interrupted retry: every event reaches FME once", async () => {
    world = await startWorld();
    // FME refuses the first batch whole and in every part: the retry writes it to its new file and is killed recording that.
    const file = letterFileOf20(world);
    const killed = await runCli(['retry', file, '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    const dl = deadLetterDir(world);
    const newFile = join(dl, readdirSync(dl).find((f) => f.endsWith('.ndjson') && !f.startsWith('export-events-')) as string);

    // The user retries the new file first (FME takes them now), then the interrupted retry.
    expect((await runCli(['retry', newFile, '--json'], world.dir)).code).toBe(0);
    expect((await runCli(['retry', file, '--json'], world.dir)).code).toBe(0);

    const keys = fmeKeys(world);
    expect(new Set(keys).size).toBe(20);
    expect(keys.length).toBe(20);
  });
});
