import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { EXPORT_HOUR, exportOf30, REFUSE_BATCH_OF_10 } from '../helpers/kill-dead-letters.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** A run that ends normally with 10 dead letters (exit 3), nothing killed; then one payload corrected by hand, longer. */
async function correctedAfterACleanRun(w: World): Promise<string> {
  exportOf30(w, 1, REFUSE_BATCH_OF_10);
  expect((await runCli(EXPORT_HOUR, w.dir)).code).toBe(3);
  w.fme.faults.clear();
  const dl = join(w.dir, '.amp-fme', 'dead-letters');
  const file = join(dl, readdirSync(dl).filter((f) => f.endsWith('.ndjson'))[0] as string);
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const first = JSON.parse(lines[0] as string) as { payload: { properties?: Record<string, unknown> } };
  first.payload.properties = { ...first.payload.properties, fixed: 'corrected by hand' };
  lines[0] = JSON.stringify(first);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const warnings = (stderr: string): string[] =>
  logLines(stderr)
    .filter((l) => l.level === 'warn')
    .map((l) => l.message);

describe('a dead-letter file corrected by hand after a run that was not interrupted (README: correct its payload, then retry)', () => {
  it('is retried without a warning that a killed run may handle its records again', async () => {
    world = await startWorld();
    const file = await correctedAfterACleanRun(world);
    const retried = await runCli(['retry', file, '--json'], world.dir);
    expect(retried.code).toBe(0);
    expect(warnings(retried.stderr)).toEqual([]);
    expect(world.fme.events.filter((e) => (e.properties as Record<string, unknown> | undefined)?.fixed === 'corrected by hand')).toHaveLength(1);
  });

  it("cron's next run does not warn about it either", async () => {
    world = await startWorld();
    world.store.add([...generateExportRows(parseHourArg('20240301T11', 'start'), 5, { users: 5, treatmentShare: 0 })]);
    await correctedAfterACleanRun(world);
    const next = await runCli(['export-events', '--start', '20240301T11', '--end', '20240301T11', '--json'], world.dir);
    expect(next.code).toBe(0);
    expect(warnings(next.stderr)).toEqual([]);
  });
});
