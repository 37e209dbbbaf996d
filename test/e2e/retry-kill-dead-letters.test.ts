import { afterEach, describe, expect, it } from 'vitest';
import { fmeKeys, KILL_AFTER_DEAD_LETTER_SYNC, letterFileOf20, retriableLetters } from '../helpers/kill-dead-letters.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('kill -9 while a retry records its progress, after its new dead letters are on disk', () => {
  it('retry: an event is never both delivered and left in a retriable dead-letter file', async () => {
    world = await startWorld();
    // FME refuses the first batch of 10 whole and in every part: the retry writes them to its new file, and is killed
    // while it records that batch as done.
    const file = letterFileOf20(world);
    const killed = await runCli(['retry', file, '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');

    const again = await runCli(['retry', file, '--json'], world.dir);
    expect(again.code).toBe(0);
    const delivered = new Set(fmeKeys(world));
    expect(delivered.size).toBe(20);
    const both = retriableLetters(world).filter((k) => delivered.has(k));
    expect(both).toEqual([]);
  });
});
