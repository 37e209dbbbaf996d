import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXPORT_HOUR, exportOf30, fmeKeys, REFUSE_BATCH_OF_10, retriableLetters } from '../helpers/kill-dead-letters.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

const FAIL_STATE_WRITE = join(__dirname, '../helpers/fail-state-write-at-dead-letter-file.cjs');

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('the state write that names a new dead-letter file fails (a disk full for a moment)', () => {
  it('export-events: a refused event is never left in two dead-letter files', async () => {
    world = await startWorld();
    // FME refuses the first batch whole and in every part; naming the run's new dead-letter file in the state fails.
    exportOf30(world, 1, REFUSE_BATCH_OF_10);
    const failed = await runCli(EXPORT_HOUR, world.dir, { NODE_OPTIONS: `--require ${FAIL_STATE_WRITE}` });
    expect(failed.code).toBe(1);

    // The same range again (as the run says), FME refusing that batch again.
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, REFUSE_BATCH_OF_10);
    const again = await runCli(EXPORT_HOUR, world.dir);
    expect(again.code).toBe(3);
    expect(new Set(fmeKeys(world)).size).toBe(20);
    // Each refused event in one retriable dead letter: in two, retrying both files would send it to FME twice.
    const letters = retriableLetters(world);
    expect(letters).toHaveLength(10);
    expect(new Set(letters).size).toBe(10);
  });
});
