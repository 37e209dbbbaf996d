import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

describe('retry of a killed run\'s dead-letter file before the run that goes on from its state', () => {
  it('export-events killed with dead letters past its recorded size, then retry, then export-events: every event reaches FME once', async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 30, { users: 50, treatmentShare: 0 })].map((r) => ({ ...r, user_id: `user-${String(r.event_id)}-x` }));
    world.store.add(rows);
    world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1, workers: 0 } });
    // FME refuses the first batch whole and in every part (19 requests); the run is killed while it records that batch.
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const killed = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    const dl = join(world.dir, '.amp-fme', 'dead-letters');
    const file = join(dl, readdirSync(dl).find((f) => f.endsWith('.ndjson')) as string);

    // FME takes them now; the user retries the file the killed run left, as its name suggests, before the next run.
    const retried = await runCli(['retry', file, '--json'], world.dir);
    expect(retried.code).toBe(0);
    const again = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(again.code).toBe(0);

    const keys = world.fme.events.map((e) => `${e.key}@${e.timestamp}`);
    expect(new Set(keys).size).toBe(30);
    expect(keys.length).toBe(30); // none twice: nothing was in flight when the run was killed
    const left = readdirSync(dl)
      .filter((f) => f.endsWith('.ndjson'))
      .flatMap((f) => readFileSync(join(dl, f), 'utf8').split('\n').filter(Boolean));
    expect(left).toEqual([]);
  });

  it("retry killed with dead letters past its progress, then retry of its new file, then the interrupted retry: every event reaches FME once", async () => {
    world = await startWorld();
    world.writeConfig({ exportEvents: { batchSize: 10 } });
    const dl = join(world.dir, '.amp-fme', 'dead-letters');
    mkdirSync(dl, { recursive: true });
    const file = join(dl, 'export-events-20240301T000000Z-1.ndjson');
    const letter = (i: number): string =>
      JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: { eventTypeId: 'amp.A', trafficTypeName: 'user', key: `user-${1000 + i}`, timestamp: 1_709_287_200_000 + i } });
    writeFileSync(file, `${Array.from({ length: 20 }, (_, i) => letter(i)).join('\n')}\n`);
    // FME refuses the first batch whole and in every part: the retry writes it to its new file and is killed recording that.
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const killed = await runCli(['retry', file, '--json'], world.dir, { NODE_OPTIONS: `--require ${KILL_AFTER_DEAD_LETTER_SYNC}` });
    expect(killed.signal).toBe('SIGKILL');
    const newFile = join(dl, readdirSync(dl).find((f) => f.endsWith('.ndjson') && !f.startsWith('export-events-')) as string);

    // The user retries the new file first (FME takes them now), then the interrupted retry.
    expect((await runCli(['retry', newFile, '--json'], world.dir)).code).toBe(0);
    expect((await runCli(['retry', file, '--json'], world.dir)).code).toBe(0);

    const keys = world.fme.events.map((e) => `${e.key}@${e.timestamp}`);
    expect(new Set(keys).size).toBe(20);
    expect(keys.length).toBe(20);
  });
});
