import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { tempDir } from '../helpers/temp-dir.js';
import { logLines, runCli, startWorld, type CliResult, type World } from '../helpers/world.js';

/**
 * `--output` to a disk that fills up (here a file size limit, `ulimit -f`, which fails writes with EFBIG as a
 * full disk fails them with ENOSPC): the run must stop with exit 1 and an error naming the file, never exit 0
 * with the file cut short, never hang.
 */

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** runCli, killed after `ms` (a run that hangs ends with code null). */
async function runWithin(ms: number, ...args: Parameters<typeof runCli>): Promise<CliResult> {
  const run = runCli(...args);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), ms);
  try {
    return await run;
  } finally {
    clearTimeout(timer);
  }
}

function expectFileError(stderr: string, file: string): void {
  const lines = logLines(stderr);
  const err = lines.find((l) => l.level === 'error');
  expect(err?.message).toMatch(new RegExp(`^could not write ${file}: the file would be larger than .*\\(EFBIG\\)`));
  expect(err?.exitCode).toBe(1);
  expect(stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
}

describe('--output on a disk that fills up', () => {
  it('push-impressions: exit 1 naming the file, not exit 0 with the file cut short', async () => {
    const dir = tempDir('output-full-push');
    const now = Date.now() - 60_000;
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) lines.push(JSON.stringify({ key: `user-${i % 70}`, split: `flag${i % 3}`, treatment: 'on', time: now }));
    writeFileSync(join(dir, 'dump.ndjson'), `${lines.join('\n')}\n`);
    // 128 blocks of 512 bytes (dash): the 3000 events (about 600 KB) do not fit in 64 KB.
    const r = await runWithin(30_000, ['push-impressions', 'dump.ndjson', '--output', 'out.ndjson', '--log-format', 'json'], dir, {}, { fileSizeLimit: 128 });
    expect(statSync(join(dir, 'out.ndjson')).size).toBe(64 * 1024);
    expect(r.code, r.stderr).toBe(1);
    expectFileError(r.stderr, 'out.ndjson');
  });

  it('export-events: exit 1 naming the file, not exit 0 with the file cut short (or a run that never ends)', async () => {
    world = await startWorld();
    const hour = parseHourArg('20240301T05', 'start');
    // Events with many long properties: small gzip'd in the download, large once written out.
    const props = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, 'a'.repeat(200)]));
    world.store.add([...generateExportRows(hour, 200, { users: 50 })].map((row) => ({ ...row, event_properties: props })));
    world.writeConfig();
    // 512 blocks of 512 bytes: the download (gzip'd) fits in 256 KB, the events written out (about 1.7 MB) do not.
    const r = await runWithin(30_000, ['export-events', '--start', '20240301T05', '--end', '20240301T05', '--output', 'out.ndjson', '--log-format', 'json'], world.dir, {}, { fileSizeLimit: 512 });
    expect(statSync(join(world.dir, 'out.ndjson')).size).toBe(256 * 1024);
    expect(r.code, r.stderr).toBe(1);
    expectFileError(r.stderr, 'out.ndjson');
    expect(readFileSync(join(world.dir, 'out.ndjson'), 'utf8')).toMatch(/^\{"/);
  });
});
