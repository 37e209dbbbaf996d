import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** A run whose first batch FME refuses (10 dead letters, exit 3); then every payload corrected by hand, longer. */
async function editedDeadLetters(w: World): Promise<{ file: string; edited: string[] }> {
  const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 30, { users: 50, treatmentShare: 0 })].map((r) => ({ ...r, user_id: `user-${String(r.event_id)}-x` }));
  w.store.add(rows);
  w.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1, workers: 0 } });
  w.fme.faults.push({ status: 400, body: '{"code":400,"message":"bad property"}' }, 19);
  const first = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], w.dir);
  expect(first.code).toBe(3);
  w.fme.faults.clear();
  const dl = join(w.dir, '.amp-fme', 'dead-letters');
  const file = join(dl, readdirSync(dl).filter((f) => f.endsWith('.ndjson'))[0] as string);
  const edited = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const r = JSON.parse(l) as { payload: { properties?: Record<string, unknown> } };
      r.payload.properties = { ...r.payload.properties, fixed: 'corrected by hand' };
      return JSON.stringify(r);
    });
  writeFileSync(file, `${edited.join('\n')}\n`);
  return { file, edited };
}

describe('a dead-letter file edited by hand (README: correct its payload, then retry)', () => {
  it('is re-sent whole by its retry', async () => {
    world = await startWorld();
    const { file } = await editedDeadLetters(world);
    const before = world.fme.events.length;
    const retried = await runCli(['retry', file, '--json'], world.dir);
    expect(retried.code).toBe(0);
    expect(world.fme.events.slice(before).map((e) => (e.properties as Record<string, unknown> | undefined)?.fixed)).toEqual(Array(10).fill('corrected by hand'));
  });

  it("is not cut back by cron's next run", async () => {
    world = await startWorld();
    world.store.add([...generateExportRows(parseHourArg('20240301T11', 'start'), 5, { users: 5, treatmentShare: 0 })]);
    const { file, edited } = await editedDeadLetters(world);
    const next = await runCli(['export-events', '--start', '20240301T11', '--end', '20240301T11', '--json'], world.dir);
    expect(next.code).toBe(0);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toEqual(edited);
    const before = world.fme.events.length;
    expect((await runCli(['retry', file, '--json'], world.dir)).code).toBe(0);
    expect(world.fme.events.length - before).toBe(10);
  });
});
