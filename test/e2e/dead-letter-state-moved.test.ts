import { readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

const KILL_AFTER_DEAD_LETTER_SYNC = join(__dirname, '../helpers/kill-after-dead-letter-sync.cjs');

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('state.dir reached by another path after a kill -9 (moved, or a shared volume mounted elsewhere on another host)', () => {
  it("the next run still cuts the killed run's dead-letter file back", async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 30, { users: 50, treatmentShare: 0 })].map((r) => ({ ...r, user_id: `user-${String(r.event_id)}-x` }));
    world.store.add(rows);
    const settings = { exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1, workers: 0 } };
    world.writeConfig({ ...settings, state: { dir: 'state-a' } });
    // FME refuses the first batch in every part, and the run is killed while it records that batch.
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const killed = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    renameSync(join(world.dir, 'state-a'), join(world.dir, 'state-b'));
    world.writeConfig({ ...settings, state: { dir: 'state-b' } });

    const again = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(again.code).toBe(0);
    const delivered = new Set(world.fme.events.map((e) => `${e.key}@${e.timestamp}`));
    expect(delivered.size).toBe(30);
    const dl = join(world.dir, 'state-b', 'dead-letters');
    const retriable = readdirSync(dl)
      .filter((f) => f.endsWith('.ndjson'))
      .flatMap((f) => readFileSync(join(dl, f), 'utf8').split('\n').filter(Boolean))
      .map((l) => JSON.parse(l) as { retriable: boolean; payload: { key: string; timestamp: number } })
      .filter((l) => l.retriable)
      .map((l) => `${l.payload.key}@${l.payload.timestamp}`);
    // A retriable dead letter of an event FME already has would be sent a second time by `amp-fme retry`.
    expect(retriable.filter((k) => delivered.has(k))).toEqual([]);
  });
});
