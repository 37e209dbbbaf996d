import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startWorld, type World } from '../helpers/world.js';

const KILL_AFTER_DEAD_LETTER_SYNC = join(__dirname, '../helpers/kill-after-dead-letter-sync.cjs');

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** Every retriable FME dead letter under `dir`'s state, as `key@timestamp`. */
function retriableLetters(dir: string): string[] {
  const dl = join(dir, '.amp-fme', 'dead-letters');
  return readdirSync(dl)
    .filter((f) => f.endsWith('.ndjson'))
    .flatMap((f) => readFileSync(join(dl, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { retriable: boolean; payload: { key: string; timestamp: number } })
    .filter((l) => l.retriable)
    .map((l) => `${l.payload.key}@${l.payload.timestamp}`);
}

describe('kill -9 while a retry records its progress, after its new dead letters are on disk', () => {
  it('retry: an event is never both delivered and left in a retriable dead-letter file', async () => {
    world = await startWorld();
    world.writeConfig({ exportEvents: { batchSize: 10 } });
    const dl = join(world.dir, '.amp-fme', 'dead-letters');
    mkdirSync(dl, { recursive: true });
    const file = join(dl, 'export-events-20240301T000000Z-1.ndjson');
    const letter = (i: number): string =>
      JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: { eventTypeId: 'amp.A', trafficTypeName: 'user', key: `user-${1000 + i}`, timestamp: 1_709_287_200_000 + i } });
    writeFileSync(file, `${Array.from({ length: 20 }, (_, i) => letter(i)).join('\n')}\n`);
    // FME refuses the first batch of 10 whole and in every part (19 requests): the retry writes them to its new file,
    // and is killed while it records that batch as done.
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const killed = await runCli(['retry', file, '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');

    const again = await runCli(['retry', file, '--json'], world.dir);
    expect(again.code).toBe(0);
    const delivered = new Set(world.fme.events.map((e) => `${e.key}@${e.timestamp}`));
    expect(delivered.size).toBe(20);
    const both = retriableLetters(world.dir).filter((k) => delivered.has(k));
    expect(both).toEqual([]);
  });
});
