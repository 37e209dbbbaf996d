import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { floorHour, formatHour, HOUR_MS } from '../../src/amplitude/hours.js';
import { CLOCK_AHEAD_TOLERANCE_MS } from '../../src/pipeline/export-events.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { zipToBuffer } from '../../src/sandbox/zip-writer.js';
import { tempDir } from '../helpers/temp-dir.js';
import { FAST_HTTP, KEYS, logLines, runCli, startWorld, type CliResult, type World } from '../helpers/world.js';

/** Preload that SIGKILLs amp-fme just before it renames a state file `<file>.taken-over`. */
const KILL_BEFORE_RETIRE = join(__dirname, '../helpers/kill-before-retire.cjs');
/** Preload that moves the CLI's wall clock by AMP_FME_TEST_CLOCK_SHIFT_HOURS hours. */
const SHIFT_CLOCK = join(__dirname, '../helpers/shift-clock.cjs');
/** Preload whose state file writes fail with ENOSPC from the first whose content matches AMP_FME_TEST_STATE_FAIL_WHEN. */
const STATE_DISK_FULL = join(__dirname, '../helpers/state-disk-full.cjs');

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** Hours relative to now, so that --since-last-run's settling lag applies for real. */
const nowHour = floorHour(Date.now());
const ago = (hours: number): number => nowHour - hours * HOUR_MS;

function seedHours(w: World, from: number, hours: number, perHour: number): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (let i = 0; i < hours; i++) for (const r of generateExportRows(from + i * HOUR_MS, perHour, { users: 400, treatmentShare: 0 })) rows.push(r);
  w.store.add(rows);
  return rows.filter((r) => typeof r.user_id === 'string');
}

/** A world of two seeded hours (ago(8), ago(7)) whose cursor has delivered the first: its state file exists. */
async function cursorAtFirstHour(): Promise<World> {
  const w = await startWorld();
  seedHours(w, ago(8), 2, 5);
  w.writeConfig(CONFIG);
  const first = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(8)), '--end', formatHour(ago(8))], w.dir);
  expect(first.code).toBe(0);
  return w;
}

function stateFile(w: World, stateDir = '.amp-fme'): string {
  const dir = join(w.dir, stateDir);
  const f = readdirSync(dir).find((n) => n.startsWith('export-events-') && n.endsWith('.json'));
  if (!f) throw new Error('no state file');
  return join(dir, f);
}

/** Rewrites the state file as `change` leaves it (to set up what earlier runs, or earlier versions, would have left). */
function editState<T>(file: string, change: (state: T) => void): void {
  const state = JSON.parse(readFileSync(file, 'utf8')) as T;
  change(state);
  writeFileSync(file, JSON.stringify(state));
}

/** FME received `n` distinct events (by uuid), each exactly once; returns the counts per uuid. */
function expectEachOnce(w: World, n: number): Map<string, number> {
  const counts = uuidCounts(w);
  expect(counts.size).toBe(n);
  expect([...counts.values()].every((c) => c === 1)).toBe(true);
  return counts;
}

function uuidCounts(w: World): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of w.fme.events) {
    const u = String(e.properties?.uuid);
    m.set(u, (m.get(u) ?? 0) + 1);
  }
  return m;
}

/** The next --since-last-run, with FME healthy again, leaves every wanted event in FME exactly once. */
async function expectNextRunCompletesExactlyOnce(w: World, wanted: Record<string, unknown>[]): Promise<void> {
  w.fme.faults.clear();
  const again = await runCli(['export-events', '--since-last-run'], w.dir);
  expect(again.code).toBe(0);
  expectEachOnce(w, wanted.length);
}

const CONFIG = { exportEvents: { properties: ['uuid'], windowHours: 6, lagHours: 3 } };

/**
 * A world whose FME takes the test SDK key and `newKeys`, with nine hours seeded from ago(12), of which the test
 * (old) key's cursor delivered ago(12)..ago(10): its state file is what a --take-over takes.
 */
async function oldKeysWorld(newKeys: string[], stateDir = '.amp-fme'): Promise<{ w: World; wanted: Record<string, unknown>[]; oldFile: string }> {
  const w = await startWorld({ fmeOptions: { sdkKey: [KEYS.fmeSdkKey, ...newKeys] } });
  world = w; // closed after the test, whatever happens below
  const wanted = seedHours(w, ago(12), 9, 10);
  w.writeConfig({ ...CONFIG, state: { dir: stateDir } });
  expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(12)), '--end', formatHour(ago(10))], w.dir)).code).toBe(0);
  return { w, wanted, oldFile: stateFile(w, stateDir) };
}

/** What /bin/sh makes of `text`, pasted as one argument: a path a message suggests comes back whole, or split. */
async function asShellReadsIt(text: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('/bin/sh', ['-c', `printf '%s\\0' ${text}`]);
  return stdout.split('\0').slice(0, -1);
}

/** A first `--since-last-run --start` whose FME requests all fail: exit 1, nothing delivered. FME answers again afterwards. */
async function failedFirstRun(w: World, start: number): Promise<CliResult> {
  w.writeConfig({ ...CONFIG, http: { ...FAST_HTTP, retries: 0 } });
  w.fme.faults.push({ status: 500 }, 10_000);
  const r = await runCli(['export-events', '--since-last-run', '--start', formatHour(start)], w.dir);
  expect(r.code).toBe(1);
  expect(w.fme.count).toBe(0);
  w.fme.faults.clear();
  return r;
}

/** Resolves once the run has logged `text` on stderr (true), or when it ends without having logged it (false). */
function logged(run: ReturnType<typeof runCli>, text: string): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = '';
    run.child.stderr?.on('data', (d: string) => {
      seen += d;
      if (seen.includes(text)) resolve(true);
    });
    run.child.once('close', () => resolve(false));
  });
}

/** Waits for `check` to hold, at most 15 s. */
async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function lockFiles(w: World): string[] {
  const dir = join(w.dir, '.amp-fme');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.lock')) : [];
}

describe('unattended runs (spawned)', () => {
  it('three hourly --since-last-run runs in a row deliver every event once', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(12), 9, 20); // hours now-12 .. now-4: all settled with a 3 h lag
    world.writeConfig(CONFIG);
    const runs = [
      ['--start', formatHour(ago(12)), '--end', formatHour(ago(9))],
      ['--end', formatHour(ago(7))],
      [],
    ];
    for (const extra of runs) {
      const r = await runCli(['export-events', '--since-last-run', ...extra, '--json'], world.dir);
      expect(r.stderr).not.toMatch(/"level":"error"/);
      expect(r.code).toBe(0);
    }
    expectEachOnce(world, wanted.length);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { lastDeliveredHour: string; inProgress: unknown } };
    // The newest settled hour: it ended at least 3 h ago (the clock may have crossed an hour since the run).
    const settled = floorHour(Date.now() - 3 * HOUR_MS) - HOUR_MS;
    expect([formatHour(settled), formatHour(settled - HOUR_MS)]).toContain(state.cursor.lastDeliveredHour);
    expect(state.cursor.inProgress).toBeNull();
    expect(readFileSync(stateFile(world), 'utf8')).not.toContain('fme-sdk-key');
  });

  it('does nothing, with exit 0 and a log line, when no new hour has settled', async () => {
    world = await startWorld();
    seedHours(world, ago(8), 4, 5);
    world.writeConfig(CONFIG);
    const first = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(8))], world.dir);
    expect(first.code).toBe(0);
    const requests = world.exportApi.requests.length;
    const again = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(again.code).toBe(0);
    expect(logLines(again.stderr).some((l) => l.message.startsWith('nothing to do'))).toBe(true);
    expect(logLines(again.stderr).filter((l) => l.message === 'summary')).toEqual([expect.objectContaining({ command: 'export-events', nothingToDo: true })]);
    expect(world.exportApi.requests.length).toBe(requests);
  });

  it('after a key change, will not start from exportEvents.startAt again; --take-over goes on exactly where the old keys stopped, through a window they were part-way through and past a range they delivered', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    world = await startWorld({ fmeOptions: { sdkKey: [KEYS.fmeSdkKey, rotated] } });
    const wanted = seedHours(world, ago(12), 9, 20); // ago(12) .. ago(4), the newest settled hour
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, startAt: formatHour(ago(12)), batchSize: 10, concurrency: 1 }, http: { ...FAST_HTTP, retries: 0 } });
    // The old keys' last cron run stops inside its first window (ago(12)..ago(7)) after two acknowledged batches...
    world.fme.faults.push({ status: 202, afterProcessing: true }, 2).push({ status: 500 }, 10_000);
    expect((await runCli(['export-events', '--since-last-run'], world.dir)).code).toBe(1);
    world.fme.faults.clear();
    expect(world.fme.count).toBe(20);
    // ... and a range was sent by hand ahead of it.
    expect((await runCli(['export-events', '--start', formatHour(ago(5)), '--end', formatHour(ago(5))], world.dir)).code).toBe(0);
    const oldFile = stateFile(world);
    const sent = world.fme.count;

    // The cron job, unchanged, with the new FME key: a new state scope, whose cursor would start at startAt.
    const cron = (...more: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--since-last-run', '--log-format', 'text', ...more], world!.dir, { FME_SDK_KEY: rotated });
    const refused = await cron();
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--since-last-run --take-over ${oldFile}`);
    expect(refused.stderr).not.toContain(rotated);
    expect(world.fme.count).toBe(sent);

    // As the message says, once: the window is finished; then cron goes on, passing over the range's hour.
    const once = await cron('--take-over', oldFile);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stderr).toContain(`took over ${oldFile}`);
    expect(existsSync(oldFile)).toBe(false);
    expect(existsSync(`${oldFile}.taken-over`)).toBe(true);
    expect((await cron()).code).toBe(0);
    expectEachOnce(world, wanted.length);
    expect(world.fme.count).toBe(wanted.length);
    const after = await cron();
    expect(after.code).toBe(0);
    expect(after.stderr).toMatch(/nothing to do: the next hour to export is/);
    expect(world.fme.count).toBe(wanted.length);
  });

  it('--take-over is refused, with nothing sent or moved, into a state that holds runs, from a file that is not a state file, while a run of the old keys holds its lock, and with --dry-run', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    world = await startWorld({ fmeOptions: { sdkKey: [KEYS.fmeSdkKey, rotated] } });
    seedHours(world, ago(10), 2, 10);
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--end', formatHour(ago(10))], world.dir)).code).toBe(0);
    const oldFile = stateFile(world);
    const oldText = readFileSync(oldFile, 'utf8');
    const sent = world.fme.count;
    const run = (...args: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--log-format', 'text', ...args], world!.dir, { FME_SDK_KEY: rotated });
    // With no exportEvents.startAt, the refusal does not pretend there is one.
    const refused = await run('--since-last-run');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--since-last-run --take-over ${oldFile}`);
    expect(refused.stderr).toContain('amp-fme does not guess a start: FME does not deduplicate');

    const dry = await run('--since-last-run', '--take-over', oldFile, '--dry-run');
    expect(dry.code).toBe(2);
    expect(dry.stderr).toContain('--take-over changes the state, which --dry-run and --output never do');
    const notState = await run('--since-last-run', '--take-over', join(world.dir, 'amp-fme.config.json'));
    expect(notState.code).toBe(2);
    expect(notState.stderr).toContain('is not one');
    const folder = join(world.dir, 'export-events-0123456789abcdef.json');
    mkdirSync(folder);
    const isFolder = await run('--since-last-run', '--take-over', folder);
    expect(isFolder.code).toBe(2);
    expect(isFolder.stderr).toContain(`${folder} is a folder`);
    const own = await runCli(['export-events', '--since-last-run', '--take-over', oldFile, '--log-format', 'text'], world.dir);
    expect(own.code).toBe(2);
    expect(own.stderr).toContain('that is already the state file of this config');

    // A run of the old keys is going (its lock is held by a live process: this test's).
    const oldLock = oldFile.replace(/\.json$/, '.lock');
    writeFileSync(oldLock, `${JSON.stringify({ pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString(), command: 'export-events --since-last-run' })}\n`);
    const locked = await run('--since-last-run', '--take-over', oldFile);
    expect(locked.code).toBe(75);
    rmSync(oldLock);

    // These keys already ran (an explicit range): their history and the old one cannot be merged.
    expect((await run('--start', formatHour(ago(9)), '--end', formatHour(ago(9)))).code).toBe(0);
    const withRange = world.fme.count;
    expect(withRange).toBeGreaterThan(sent);
    const used = await run('--since-last-run', '--take-over', oldFile);
    expect(used.code).toBe(2);
    expect(used.stderr).toContain('already records runs of these keys');

    expect(readFileSync(oldFile, 'utf8')).toBe(oldText);
    expect(world.fme.count).toBe(withRange);
  });

  it('--take-over into a state that holds runs says which file to move away, which hours the take-over would send twice, and how to leave them out: followed, each event reaches FME once', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    const { w, wanted, oldFile } = await oldKeysWorld([rotated]); // the old keys delivered ago(12)..ago(10)
    const run = (...args: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--log-format', 'text', ...args], w.dir, { FME_SDK_KEY: rotated });
    // The new keys sent an hour by hand before the take-over: the old cursor, taken over, would reach it.
    expect((await run('--start', formatHour(ago(6)), '--end', formatHour(ago(6)))).code).toBe(0);
    const newFile = readdirSync(join(w.dir, '.amp-fme'))
      .map((f) => join(w.dir, '.amp-fme', f))
      .find((f) => f.endsWith('.json') && f !== oldFile) as string;
    const sent = w.fme.count;

    const refused = await run('--since-last-run', '--take-over', oldFile);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${newFile} already records runs of these keys (delivered ${formatHour(ago(6))})`);
    expect(refused.stderr).toContain(`move ${basename(newFile)} out of ${join(w.dir, '.amp-fme')}`);
    expect(refused.stderr).toContain(`goes on at ${formatHour(ago(9))}, and would send ${formatHour(ago(6))} again`);
    const [, end, pass] = /add (--end \S+) to that command, then run once with --since-last-run (--skip-to \S+ --end \S+)\./.exec(refused.stderr) ?? [];
    expect(end).toBe(`--end ${formatHour(ago(7))}`);
    expect(w.fme.count).toBe(sent);

    // As the message says: the file kept aside, the take-over stopping before the hour, then a skip past it.
    renameSync(newFile, `${newFile}.kept`);
    const taken = await run('--since-last-run', '--take-over', oldFile, ...(end as string).split(' '));
    expect(taken.code, taken.stderr).toBe(0);
    expect((await run('--since-last-run', ...(pass as string).split(' '))).code).toBe(0);
    expect((await run('--since-last-run')).code).toBe(0);
    expectEachOnce(w, wanted.length);
  });

  it('--take-over into a state whose runs lie before where the old cursor goes on says none of them would be sent again, and so it is', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    const { w, wanted, oldFile } = await oldKeysWorld([rotated]); // the old keys delivered ago(12)..ago(10)
    const run = (...args: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--log-format', 'text', ...args], w.dir, { FME_SDK_KEY: rotated });
    // By mistake, the new keys sent again an hour the old keys had delivered.
    expect((await run('--start', formatHour(ago(11)), '--end', formatHour(ago(11)), '--force')).code).toBe(0);
    const newFile = readdirSync(join(w.dir, '.amp-fme'))
      .map((f) => join(w.dir, '.amp-fme', f))
      .find((f) => f.endsWith('.json') && f !== oldFile) as string;
    const refused = await run('--since-last-run', '--take-over', oldFile);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`goes on at ${formatHour(ago(9))}, passing over what its ranges delivered: none of the hours these keys delivered would be sent again`);
    renameSync(newFile, `${newFile}.kept`);
    expect((await run('--since-last-run', '--take-over', oldFile)).code).toBe(0);
    const counts = uuidCounts(w);
    // Every event once, but those of ago(11), which the mistake had already sent twice: the take-over sent none again.
    expect(counts.size).toBe(wanted.length);
    const twice = [...counts.values()].filter((c) => c === 2).length;
    expect([...counts.values()].every((c) => c === 1 || c === 2)).toBe(true);
    expect(w.fme.count).toBe(wanted.length + twice);
  });

  it('a --take-over killed between writing the new state and renaming the old file: the same command run again, or the next cron run, finishes it, and a later rotation names one file', async () => {
    const [rotated, third] = ['fme-sdk-key-server-rotated-9876', 'fme-sdk-key-server-third-5555'];
    const { w, wanted, oldFile } = await oldKeysWorld([rotated, third]);
    world = w;
    const cron = (key: string, ...more: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--since-last-run', '--log-format', 'text', ...more], world!.dir, { FME_SDK_KEY: key });
    const killed = await runCli(['export-events', '--since-last-run', '--take-over', oldFile], world.dir, { FME_SDK_KEY: rotated, NODE_OPTIONS: `--require ${KILL_BEFORE_RETIRE}` });
    expect(killed.signal).toBe('SIGKILL');
    expect(existsSync(oldFile)).toBe(true); // written under the new name, not yet renamed

    const again = await cron(rotated, '--take-over', oldFile, '--end', formatHour(ago(8)));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('was taken over by these keys already');
    expect(existsSync(oldFile)).toBe(false);
    expect(existsSync(`${oldFile}.taken-over`)).toBe(true);
    expect((await cron(rotated)).code).toBe(0);
    // The next rotation is told of one state to take over: the one that went on.
    const refused = await cron(third);
    expect(refused.code).toBe(2);
    expect(refused.stderr).not.toContain(basename(oldFile));
    expectEachOnce(world, wanted.length);
  });

  it('after a --take-over killed before the rename, runs of the old keys going on from the old file stop the new keys: nothing is sent twice, and the command the message gives goes on', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    const { w, wanted, oldFile } = await oldKeysWorld([rotated]);
    world = w;
    const killed = await runCli(['export-events', '--since-last-run', '--take-over', oldFile], world.dir, { FME_SDK_KEY: rotated, NODE_OPTIONS: `--require ${KILL_BEFORE_RETIRE}` });
    expect(killed.signal).toBe('SIGKILL');
    // Back to the old keys for a while: they go on from their file, which is still there.
    expect((await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(7))], world.dir)).code).toBe(0);
    const sent = world.fme.count;

    const cron = (...more: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--since-last-run', '--log-format', 'text', ...more], world!.dir, { FME_SDK_KEY: rotated });
    const stopped = await cron();
    expect(stopped.code).toBe(2);
    expect(world.fme.count).toBe(sent);
    const newFile = readdirSync(join(world.dir, '.amp-fme'))
      .map((f) => join(world!.dir, '.amp-fme', f))
      .find((f) => f.endsWith('.json') && f !== oldFile) as string;
    expect(stopped.stderr).toContain(`move ${newFile} away and run once with --since-last-run --take-over ${oldFile}`);
    rmSync(newFile);
    expect((await cron('--take-over', oldFile)).code).toBe(0);
    expectEachOnce(world, wanted.length);
  });

  it("in a state.dir whose path has a space and a quote, the commands the take-over messages suggest paste into a shell as they are, and go on", async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    const stateDir = "cron's state";
    const { w, wanted, oldFile } = await oldKeysWorld([rotated], stateDir);
    const killed = await runCli(['export-events', '--since-last-run', '--take-over', oldFile], w.dir, { FME_SDK_KEY: rotated, NODE_OPTIONS: `--require ${KILL_BEFORE_RETIRE}` });
    expect(killed.signal).toBe('SIGKILL');
    expect((await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(7))], w.dir)).code).toBe(0);
    const cron = (pasted?: string): ReturnType<typeof runCli> =>
      runCli(['export-events', '--since-last-run', '--log-format', 'text'], w.dir, { FME_SDK_KEY: rotated }, pasted === undefined ? {} : { pasted });

    // The old keys went on from their file: the message says which file to move away and what to run then.
    const stopped = await cron();
    expect(stopped.code).toBe(2);
    const [, move, from] = /move (.+?) away and run once with --since-last-run --take-over (.+?) \(if/.exec(stopped.stderr) ?? [];
    const newFile = join(w.dir, stateDir, readdirSync(join(w.dir, stateDir)).find((f) => f.endsWith('.json') && join(w.dir, stateDir, f) !== oldFile) as string);
    expect(await asShellReadsIt(move as string)).toEqual([newFile]);
    expect(await asShellReadsIt(from as string)).toEqual([oldFile]);
    rmSync(newFile);

    // A fresh cursor is refused with the command to run, which pastes as it is.
    const refused = await cron();
    expect(refused.code).toBe(2);
    const [, suggested] = /--since-last-run --take-over (.+?): the new keys/.exec(refused.stderr) ?? [];
    expect(await asShellReadsIt(suggested as string)).toEqual([oldFile]);
    const once = await cron(`--take-over ${suggested as string}`);
    expect(once.code, once.stderr).toBe(0);
    expect(existsSync(`${oldFile}.taken-over`)).toBe(true);
    expectEachOnce(w, wanted.length);
  });

  it('a --take-over run that stops on a mistake after taking over: the corrected command, --take-over still in it, goes on', async () => {
    const rotated = 'fme-sdk-key-server-rotated-9876';
    const { w, wanted, oldFile } = await oldKeysWorld([rotated]);
    world = w;
    const run = (...more: string[]): ReturnType<typeof runCli> => runCli(['export-events', '--since-last-run', '--log-format', 'text', '--take-over', oldFile, ...more], world!.dir, { FME_SDK_KEY: rotated });
    const wrong = await run('--start', formatHour(ago(5)));
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('Drop --start');
    const right = await run();
    expect(right.code, right.stderr).toBe(0);
    expect(right.stderr).toContain('was taken over by these keys already');
    expectEachOnce(world, wanted.length);
  });

  it('needs a start on the very first --since-last-run', async () => {
    world = await startWorld();
    world.writeConfig(CONFIG);
    const r = await runCli(['export-events', '--since-last-run', '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('exportEvents.startAt');
  });

  it('a first --since-last-run --start that fails before its first batch is acknowledged still leaves the cursor, so the next run goes on without --start', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(10), 2, 20);
    const first = await failedFirstRun(world, ago(10));
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { firstHour: string; lastDeliveredHour: string } };
    expect(state.cursor).toMatchObject({ firstHour: formatHour(ago(10)), lastDeliveredHour: formatHour(ago(11)) });
    // The hour before the start is where the cursor stands, not an hour it delivered.
    expect(logLines(first.stderr).find((l) => l.message.startsWith('stopped'))?.message).toMatch(/^stopped before the first window/);
    await expectNextRunCompletesExactlyOnce(world, wanted);
  });

  it('a cursor that has delivered nothing yet takes a new --start', async () => {
    world = await startWorld();
    seedHours(world, ago(10), 1, 20);
    const later = seedHours(world, ago(9), 1, 20);
    await failedFirstRun(world, ago(10));
    const again = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(9)), '--json'], world.dir);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ start: formatHour(ago(9)) });
    expect(world.fme.count).toBe(later.length);
    expect(new Set(world.fme.events.map((e) => e.properties?.uuid))).toEqual(new Set(later.map((r) => r.uuid)));
  });

  it('a placed cursor re-placed with --skip-to counts as delivered exactly what it sent, and then keeps its place', async () => {
    world = await startWorld();
    const h12 = seedHours(world, ago(12), 1, 10);
    seedHours(world, ago(11), 1, 10);
    const h10 = seedHours(world, ago(10), 1, 10);
    await failedFirstRun(world, ago(12));
    // Placed again at h-11, which is skipped; h-10 is delivered.
    const moved = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(11)), '--skip-to', formatHour(ago(10)), '--end', formatHour(ago(10))], world.dir);
    expect(moved.code).toBe(0);
    expect(world.fme.count).toBe(h10.length);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { firstHour: string; lastDeliveredHour: string; skipped: unknown[] } };
    expect(state.cursor).toMatchObject({ firstHour: formatHour(ago(11)), lastDeliveredHour: formatHour(ago(10)), skipped: [{ start: formatHour(ago(11)), end: formatHour(ago(11)) }] });
    // h-12 was never sent: an explicit range may send it. h-10 was: it is refused, and so is a new --start.
    const h12Run = await runCli(['export-events', '--start', formatHour(ago(12)), '--end', formatHour(ago(12))], world.dir);
    expect(h12Run.code).toBe(0);
    expect(world.fme.count).toBe(h10.length + h12.length);
    const again = await runCli(['export-events', '--start', formatHour(ago(10)), '--end', formatHour(ago(10)), '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already delivered');
    const restart = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--log-format', 'text'], world.dir);
    expect(restart.code).toBe(2);
    expect(world.fme.count).toBe(h10.length + h12.length);
  });

  it('after SIGKILL mid-window, the next run delivers the rest, duplicating no more than the in-flight batches', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(10), 6, 400); // ~1600 user events in one 6 h window
    const batchSize = 25;
    const concurrency = 2;
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize, concurrency } });
    // Every FME request is slow and stored on arrival: a kill leaves stored-but-unacknowledged batches.
    world.fme.faults.push({ status: 202, afterProcessing: true, delayMs: 40 }, 10_000);
    const tmp = tempDir('kill-tmp'); // where the runs spool their downloads
    const run = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir, { TMPDIR: tmp });
    // Wait until some batches are acknowledged in the state file, then kill hard.
    const deadline = Date.now() + 15_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      let acked = 0;
      try {
        const s = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { inProgress: { acked: [number, number][] } | null } };
        acked = s.cursor.inProgress?.acked.length ?? 0;
      } catch {
        // not written yet
      }
      if (acked > 0 && world.fme.count > 10 * batchSize) break;
      if (Date.now() > deadline) throw new Error('the run never got going');
    }
    run.child.kill('SIGKILL');
    const killed = await run;
    expect(killed.signal).toBe('SIGKILL');
    const before = world.fme.count;
    expect(before).toBeLessThan(wanted.length);
    world.fme.faults.clear();
    // The killed run could not remove its download; made to look an hour old, the next run removes it.
    const leftBehind = readdirSync(tmp);
    expect(leftBehind).toEqual([expect.stringMatching(new RegExp(`^amp-fme-export-${run.child.pid}-[0-9a-f]{12}\\.zip$`))]);
    const hourAgo = new Date(Date.now() - 61 * 60_000);
    utimesSync(join(tmp, leftBehind[0] as string), hourAgo, hourAgo);

    const again = await runCli(['export-events', '--since-last-run', '--json'], world.dir, { TMPDIR: tmp });
    expect(again.code).toBe(0);
    expect(readdirSync(tmp)).toEqual([]);
    expect(again.stderr).toContain('removed 1 export download(s) left by killed runs');
    const counts = uuidCounts(world);
    expect(counts.size).toBe(wanted.length); // nothing lost
    const duplicates = [...counts.values()].reduce((n, c) => n + (c - 1), 0);
    // Only batches in flight at the kill can be re-sent: at most `concurrency` of them.
    expect(duplicates).toBeLessThanOrEqual(concurrency * batchSize);
    const summary = JSON.parse(again.stdout) as { fmeEventsAlreadyDelivered: number };
    expect(summary.fmeEventsAlreadyDelivered).toBeGreaterThan(0);
  });

  it('SIGTERM drains in-flight requests, records progress and exits non-zero saying where it stopped', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(10), 6, 300);
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize: 20, concurrency: 2 } });
    world.fme.faults.push({ status: 202, afterProcessing: true, delayMs: 30 }, 10_000);
    const run = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    const deadline = Date.now() + 15_000;
    while (world.fme.count < 100) {
      await new Promise((r) => setTimeout(r, 20));
      if (Date.now() > deadline) throw new Error('the run never got going');
    }
    run.child.kill('SIGTERM');
    const r = await run;
    expect(r.code).toBe(1);
    const lines = logLines(r.stderr);
    expect(lines.some((l) => l.message.includes('SIGTERM'))).toBe(true);
    expect(lines.some((l) => /^stopped inside window .*continues from there/.test(l.message))).toBe(true);
    // One summary line all the same, with what was sent before the stop.
    const summaries = lines.filter((l) => l.message === 'summary');
    expect(summaries).toEqual([expect.objectContaining({ command: 'export-events', exitCode: 1, fmeEventsSent: world.fme.count, error: expect.stringMatching(/^stopped early \(SIGTERM received\)/) })]);
    expect(existsSync(join(world.dir, '.amp-fme', readdirSync(join(world.dir, '.amp-fme')).find((f) => f.endsWith('.lock')) ?? 'none'))).toBe(false);
    // Drained: everything FME stored was acknowledged, so the next run sends no duplicates at all.
    await expectNextRunCompletesExactlyOnce(world, wanted);
  });

  it('SIGTERM while Amplitude is still preparing the export stops cleanly (exit 1, no stack trace)', async () => {
    world = await startWorld();
    seedHours(world, ago(10), 2, 5);
    world.writeConfig(CONFIG);
    world.exportApi.faults.push({ status: 503, delayMs: 5000 });
    const run = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    while (world.exportApi.requests.length === 0) await new Promise((r) => setTimeout(r, 20));
    run.child.kill('SIGTERM');
    const r = await run;
    expect(r.code).toBe(1);
    const lines = logLines(r.stderr);
    expect(lines.some((l) => l.message.includes('SIGTERM'))).toBe(true);
    expect(lines.find((l) => l.level === 'error')?.message).toMatch(/^stopped early/);
    expect(r.stderr).not.toContain('Unexpected error');
    expect(world.fme.count).toBe(0);
  });

  it('a second signal while stopping exits at once, releasing the lock; the next run sends what was in flight again', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(10), 6, 100);
    const batchSize = 20;
    const concurrency = 2;
    // A held request must not time out (and be retried) while the test signals.
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize, concurrency }, http: { timeoutMs: 60_000 } });
    // FME takes the first batches at once, then stores each batch but answers none until the run has ended: the
    // first signal has requests to wait for.
    const quick = 3;
    let answer = (): void => {};
    const answers = new Promise<void>((resolve) => (answer = resolve));
    world.fme.faults.push({ status: 202, afterProcessing: true }, quick).push({ status: 202, afterProcessing: true, until: answers }, 10_000);
    const run = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    const stopping = logged(run, 'SIGTERM received: stopping at the next clean point');
    try {
      await waitFor(() => world!.fme.requests.length > quick, 'an FME request that is held');
      expect(lockFiles(world)).toHaveLength(1);
      run.child.kill('SIGTERM');
      expect(await stopping).toBe(true);
      // Still waiting for FME (README: up to 30 s); the second signal ends that.
      expect(run.child.exitCode).toBeNull();
      run.child.kill('SIGINT');
      const r = await run;
      expect(r.code).toBe(1);
      const errors = logLines(r.stderr).filter((l) => l.level === 'error').map((l) => l.message);
      expect(errors).toEqual(['SIGINT received again while stopping; exiting now, without a summary. Batches that were in flight were not recorded and will be sent again by the next run.']);
      // Nothing was sent after the first signal: the quick batches, and at most one held batch per lane.
      expect(world.fme.requests.length).toBeLessThanOrEqual(quick + concurrency);
      expect(lockFiles(world)).toEqual([]);
    } finally {
      answer();
    }
    // Not refused as locked (75): the next run continues, re-sending only the batches that were in flight.
    world.fme.faults.clear();
    const again = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(again.code).toBe(0);
    const counts = uuidCounts(world);
    expect(counts.size).toBe(wanted.length);
    const duplicates = [...counts.values()].reduce((n, c) => n + (c - 1), 0);
    expect(duplicates).toBeGreaterThan(0);
    expect(duplicates).toBeLessThanOrEqual(concurrency * batchSize);
  }, 45_000);

  it('a second run while one is active exits 75 at once, naming the holder', async () => {
    world = await startWorld();
    seedHours(world, ago(10), 6, 200);
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize: 20, concurrency: 1 } });
    // ~40 batches of 100 ms, one at a time: the first run is busy for seconds.
    world.fme.faults.push({ status: 202, afterProcessing: true, delayMs: 100 }, 10_000);
    const first = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    while (world.fme.count === 0) await new Promise((r) => setTimeout(r, 20));
    const second = await runCli(['export-events', '--since-last-run', '--log-format', 'text'], world.dir);
    expect(second.code).toBe(75);
    // "At once": it did not wait for the lock; the first run is still sending.
    expect(first.child.exitCode).toBeNull();
    expect(first.child.signalCode).toBeNull();
    expect(second.stderr).toContain(`pid ${first.child.pid}`);
    first.child.kill('SIGTERM');
    await first;
  });

  it('takes over a lock left by a dead process', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(8), 2, 10);
    world.writeConfig(CONFIG);
    // Learn the lock path from a first run, then plant a lock of a dead pid there.
    const first = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(8)), '--end', formatHour(ago(8))], world.dir);
    expect(first.code).toBe(0);
    const lockPath = stateFile(world).replace(/\.json$/, '.lock');
    const dead = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim());
    writeFileSync(lockPath, JSON.stringify({ pid: dead, hostname: hostname(), startedAt: new Date(Date.now() - 3_600_000).toISOString(), command: 'export-events' }));
    const r = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(r.code).toBe(0);
    expect(existsSync(lockPath)).toBe(false);
    expect(uuidCounts(world).size).toBe(wanted.length);
  });

  it('a sending run removes the state temp files that runs killed while writing it left; a dry run leaves them', async () => {
    world = await cursorAtFirstHour();
    const path = stateFile(world);
    const dir = join(world.dir, '.amp-fme');
    // What a kill -9 during writeFileAtomic leaves: the next content, half written, beside the file.
    const stale = [`${path}.4242.tmp`, `${path}.77.tmp`];
    for (const f of stale) writeFileSync(f, '{"version":1,"kind":"expo');
    const other = join(dir, 'notes.4242.tmp'); // not a temp of the state file: left alone
    writeFileSync(other, 'mine');
    const dry = await runCli(['export-events', '--since-last-run', '--dry-run'], world.dir);
    expect(dry.code).toBe(0);
    expect(stale.every((f) => existsSync(f))).toBe(true);
    const r = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(stale.filter((f) => existsSync(f))).toEqual([]);
    expect(existsSync(other)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual(['notes.4242.tmp']);
  });

  it('stops with exit 1 on a corrupt state file and leaves it untouched', async () => {
    world = await cursorAtFirstHour();
    const path = stateFile(world);
    writeFileSync(path, '{"version":1,"kind":"export-events","cursor":');
    const r = await runCli(['export-events', '--since-last-run', '--log-format', 'text'], world.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('state file');
    expect(readFileSync(path, 'utf8')).toBe('{"version":1,"kind":"export-events","cursor":');
  });

  it("after a corrupt state file, the run its message says to make keeps cron from sending every hour since exportEvents.startAt again", async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(8), 4, 5);
    // As a cron set-up has it: the first hour in the config, runs without --start.
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, startAt: formatHour(ago(8)) } });
    const first = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(7))], world.dir);
    expect(first.code).toBe(0);
    const delivered = world.fme.count;
    expect(delivered).toBeGreaterThan(0);
    const path = stateFile(world);
    writeFileSync(path, '{"version":1,"kind":"export-events","cursor":');
    const refused = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(refused.code).toBe(1);
    const message = logLines(refused.stderr).find((l) => l.level === 'error')?.message ?? '';
    // The message names the run that places the cursor, with the hour to fill in.
    const [, command] = /: amp-fme (export-events --since-last-run --start) <the hour after the last one you know was delivered>/.exec(message) ?? [];
    expect(command, message).toBe('export-events --since-last-run --start');
    expect(message).toContain('starts again at exportEvents.startAt');
    // Done as it says: the file moved out of the way, the cursor placed after the last hour delivered, then cron.
    renameSync(path, `${path}.broken`);
    const placed = await runCli([...(command as string).split(' '), formatHour(ago(6))], world.dir);
    expect(placed.code, placed.stderr).toBe(0);
    const cron = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(cron.code, cron.stderr).toBe(0);
    // Every event once: nothing of ago(8)..ago(7) was sent again.
    const counts = uuidCounts(world);
    expect(counts.size).toBe(wanted.length);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
  });

  it('--max-runtime stops at a clean point and the next run continues', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(10), 6, 300);
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize: 20, concurrency: 2 } });
    // ~60 batches of 100 ms over 2 lanes: about 3 s of sending, well past the 1 s limit.
    world.fme.faults.push({ status: 202, afterProcessing: true, delayMs: 100 }, 10_000);
    const r = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--max-runtime', '1s'], world.dir);
    expect(r.code).toBe(1);
    expect(logLines(r.stderr).some((l) => l.message.includes('--max-runtime'))).toBe(true);
    await expectNextRunCompletesExactlyOnce(world, wanted);
  });

  it('on a machine whose clock jumped ahead, does not move the --since-last-run cursor past hours that have not settled by Amplitude\'s clock', async () => {
    world = await startWorld();
    // Settled hours, and the hours that have not settled yet (a real project's would still receive events).
    const settled = [...generateExportRows(ago(8), 40, { users: 30, treatmentShare: 0 })];
    world.store.add(settled);
    const unsettled = [...generateExportRows(ago(1), 40, { users: 30, treatmentShare: 0 })];
    world.store.add(unsettled);
    world.writeConfig({ exportEvents: { properties: ['uuid'], windowHours: 2, lagHours: 3 } });
    const start = ['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--end', formatHour(ago(7))];
    expect((await runCli(start, world.dir)).code).toBe(0);
    const before = world.fme.count;

    // The clock jumps two days ahead: by it, every hour up to 45 hours from now has settled.
    const ahead = await runCli(['export-events', '--since-last-run'], world.dir, {
      NODE_OPTIONS: `--require ${SHIFT_CLOCK}`,
      AMP_FME_TEST_CLOCK_SHIFT_HOURS: '48',
    });
    expect(ahead.code).toBe(1);
    const err = logLines(ahead.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(/clock .* ahead of Amplitude's/);
    expect(err?.message).toMatch(/NTP/);
    // Nothing past what Amplitude's clock calls settled is recorded as delivered: ago(4), or ago(3) in the last
    // minutes of an hour (the tolerance for a clock a little fast).
    const newestSettled = floorHour(Date.now() + CLOCK_AHEAD_TOLERANCE_MS - 3 * HOUR_MS) - HOUR_MS;
    const cursor = (): { lastDeliveredHour: string } => (JSON.parse(readFileSync(stateFile(world!), 'utf8')) as { cursor: { lastDeliveredHour: string } }).cursor;
    expect(cursor().lastDeliveredHour <= formatHour(newestSettled)).toBe(true);

    // None of the unsettled hours' events went out: their export would miss what Amplitude still adds to them.
    const unsettledUuids = new Set(unsettled.map((r) => String(r.uuid)));
    expect(world.fme.events.slice(before).filter((e) => unsettledUuids.has(String(e.properties?.uuid)))).toEqual([]);

    // With the clock right again, the next run goes on and stops at the newest settled hour, every event sent once.
    const right = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(right.code, right.stderr).toBe(0);
    expect([formatHour(ago(4)), formatHour(newestSettled)]).toContain(cursor().lastDeliveredHour);
    const uuids = world.fme.events.map((e) => String(e.properties?.uuid));
    const wanted = settled.filter((r) => typeof r.user_id === 'string').map((r) => String(r.uuid));
    expect(uuids.sort()).toEqual(wanted.sort());
  });

  it.runIf(existsSync('/dev/full'))('a state write that fails part-way (disk full): the stop line says where the state file, not the run, got to', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(12), 4, 20); // ago(12)..ago(9), one window an hour
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, windowHours: 1, concurrency: 1 } });
    // Placing the cursor, the first hour's batch and the hour done are written: the write for the second hour's batch fails.
    const r = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(12)), '--end', formatHour(ago(9)), '--log-format', 'json'], world.dir, {
      NODE_OPTIONS: `--require ${STATE_DISK_FULL}`,
      AMP_FME_TEST_STATE_FAIL_WHEN: `"inProgress":\\s*\\{\\s*"start":\\s*"${formatHour(ago(11))}"`,
    });
    expect(r.code).toBe(1);
    expect(logLines(r.stderr).some((l) => l.level === 'error' && /ENOSPC/.test(l.message))).toBe(true);
    const stop = logLines(r.stderr).find((l) => l.message.startsWith('stopped '));
    const cursor = (JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { lastDeliveredHour: string; inProgress: { start: string; end: string } | null } }).cursor;
    // The file has the first hour delivered and nothing of the second (whose acknowledged batch could not be
    // recorded), and the stop line says so: not 'inside window' the second hour, as this run had got to.
    expect(cursor).toMatchObject({ lastDeliveredHour: formatHour(ago(12)), inProgress: null });
    expect(stop?.message).toBe(`stopped after ${formatHour(ago(12))}; the next --since-last-run continues from there`);
    expect(stop).toMatchObject({ lastDeliveredHour: formatHour(ago(12)), nextHour: formatHour(ago(11)) });
    // With room again, the next run goes on from there: every event reaches FME (the batch whose record failed, twice).
    const again = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(9))], world.dir);
    expect(again.code, again.stderr).toBe(0);
    expect(uuidCounts(world).size).toBe(wanted.length);
  });

  it('a range with --force over hours of the window --since-last-run is part-way through: cron is refused with the exact commands, and the one that finishes the window goes on', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(12), 4, 4); // ago(12)..ago(9): windows ago(12)..ago(11) and ago(10)..ago(9)
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, windowHours: 2, batchSize: 2, concurrency: 1 }, http: { ...FAST_HTTP, retries: 0 } });
    // The cursor stops inside its first window after two acknowledged batches...
    world.fme.faults.push({ status: 202, afterProcessing: true }, 2).push({ status: 500 }, 10_000);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(12))], world.dir)).code).toBe(1);
    world.fme.faults.clear();
    // ... and ago(11), inside that window, is sent again by hand.
    expect((await runCli(['export-events', '--start', formatHour(ago(11)), '--end', formatHour(ago(11)), '--force'], world.dir)).code).toBe(0);
    const sent = world.fme.count;

    const cron = await runCli(['export-events', '--since-last-run', '--log-format', 'text'], world.dir);
    expect(cron.code).toBe(2);
    expect(world.fme.count).toBe(sent);
    const finish = `amp-fme export-events --since-last-run --force --end ${formatHour(ago(11))}`;
    expect(cron.stderr).toContain(`--since-last-run is part-way through ${formatHour(ago(12))}..${formatHour(ago(11))}`);
    expect(cron.stderr).toContain(finish);
    expect(cron.stderr).toContain(`--since-last-run --skip-to ${formatHour(ago(10))}`);

    // The command it names finishes the window and stops there; cron then goes on as before.
    expect((await runCli(finish.split(' ').slice(1), world.dir)).code).toBe(0);
    expect((await runCli(['export-events', '--since-last-run'], world.dir)).code).toBe(0);
    // Every event reached FME; the only ones twice are of the hour sent with --force.
    const counts = uuidCounts(world);
    expect(counts.size).toBe(wanted.length);
    const forcedHour = new Set(wanted.filter((r) => Number(r.server_upload_time ? Date.parse(`${String(r.server_upload_time).replace(' ', 'T')}Z`) : 0) >= ago(11) && Number(Date.parse(`${String(r.server_upload_time).replace(' ', 'T')}Z`)) < ago(10)).map((r) => String(r.uuid)));
    expect(forcedHour.size).toBeGreaterThan(0);
    for (const [uuid, n] of counts) expect(n, uuid).toBe(forcedHour.has(uuid) ? 2 : 1);
  });

  it('refuses to re-send an explicit range already delivered, unless --force', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 2, 5);
    world.writeConfig(CONFIG);
    const args = ['export-events', '--start', formatHour(ago(30)), '--end', formatHour(ago(29)), '--log-format', 'text'];
    expect((await runCli(args, world.dir)).code).toBe(0);
    const sent = world.fme.count;
    const again = await runCli(args, world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already delivered');
    expect(world.fme.count).toBe(sent);
    const forced = await runCli([...args, '--force'], world.dir);
    expect(forced.code).toBe(0);
    expect(world.fme.count).toBe(sent * 2);
  });

  it('a delivered range run again with --force that stops part-way still counts its first delivery: another range over those hours is refused, and the forced range, resumed, sends the rest', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(30), 4, 5); // ago(30)..ago(27), one window an hour
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, windowHours: 1 }, http: { ...FAST_HTTP, retries: 0 } });
    const range = ['export-events', '--start', formatHour(ago(30)), '--end', formatHour(ago(27)), '--log-format', 'text'];
    expect((await runCli(range, world.dir)).code).toBe(0);
    expectEachOnce(world, wanted.length);
    // Sent again on purpose, and FME fails after its first hour.
    world.fme.faults.push({ status: 202, afterProcessing: true }, 1).push({ status: 500 }, 10_000);
    expect((await runCli([...range, '--force'], world.dir)).code).toBe(1);
    world.fme.faults.clear();
    const sent = world.fme.count;
    const twice = [...uuidCounts(world).values()].filter((c) => c === 2).length;
    expect(twice).toBeGreaterThan(0);
    expect(sent).toBe(wanted.length + twice);

    // ago(28)..ago(27) were delivered by the range's first run: a narrower range over them is not sent a second time.
    const other = await runCli(['export-events', '--start', formatHour(ago(28)), '--end', formatHour(ago(27)), '--log-format', 'text'], world.dir);
    expect(other.code, other.stderr).toBe(2);
    expect(other.stderr).toContain(`${formatHour(ago(28))}..${formatHour(ago(27))} (delivered by the range ${formatHour(ago(30))}..${formatHour(ago(27))})`);
    expect(world.fme.count).toBe(sent);

    // The same command again goes on where the forced run stopped (it does not start over): every event twice in all.
    const resumed = await runCli([...range, '--force'], world.dir);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect([...uuidCounts(world).values()].every((c) => c === 2)).toBe(true);
    expect(world.fme.count).toBe(wanted.length * 2);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { ranges: Record<string, unknown>[] };
    expect(state.ranges[0]).not.toHaveProperty('deliveredBefore');
    expect((await runCli(range, world.dir)).code).toBe(2);
  });

  it('a range run with --force over hours the cursor delivered, stopped part-way, goes on re-sending them when run again without --force', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(30), 4, 5); // ago(30)..ago(27)
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, windowHours: 1 }, http: { ...FAST_HTTP, retries: 0 } });
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30))], world.dir)).code).toBe(0);
    expectEachOnce(world, wanted.length);
    // The events are missing in FME (say), so the range is sent again on purpose, and FME fails after its first hour.
    const range = ['export-events', '--start', formatHour(ago(30)), '--end', formatHour(ago(27)), '--log-format', 'text'];
    world.fme.faults.push({ status: 202, afterProcessing: true }, 1).push({ status: 500 }, 10_000);
    expect((await runCli([...range, '--force'], world.dir)).code).toBe(1);
    world.fme.faults.clear();
    const resumed = await runCli(range, world.dir);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('was run with --force and stopped part-way');
    expect([...uuidCounts(world).values()].every((c) => c === 2)).toBe(true);
    expect(world.fme.count).toBe(wanted.length * 2);
  });
  it("keeps refusing a delivered range after an upgrade when fme.eventsBaseUrl ends in '/': the earlier version's state file is taken over", async () => {
    world = await startWorld();
    seedHours(world, ago(30), 2, 5);
    const slashed = `${world.server.url}/api/`;
    world.writeConfig({ ...CONFIG, fme: { eventsBaseUrl: slashed } });
    const args = ['export-events', '--start', formatHour(ago(30)), '--end', formatHour(ago(29)), '--log-format', 'text'];
    expect((await runCli(args, world.dir)).code).toBe(0);
    const sent = world.fme.count;
    // As an earlier version named it: its scope hashed the URL as written, slash and all.
    const stateDir = join(world.dir, '.amp-fme');
    const [current] = readdirSync(stateDir).filter((f) => /^export-events-[0-9a-f]{16}\.json$/.test(f));
    const earlierScope = createHash('sha256')
      .update(`amplitude:${world.server.url}:${KEYS.amplitudeApiKey}\nfme:${slashed}:${KEYS.fmeSdkKey}\n`)
      .digest('hex')
      .slice(0, 16);
    const written = JSON.parse(readFileSync(join(stateDir, current as string), 'utf8')) as { scope: string };
    const currentScope = written.scope;
    writeFileSync(join(stateDir, `export-events-${earlierScope}.json`), JSON.stringify({ ...written, scope: earlierScope }));
    rmSync(join(stateDir, current as string));

    const again = await runCli(args, world.dir);
    expect(again.code, again.stderr).toBe(2);
    expect(again.stderr).toContain('already delivered');
    expect(world.fme.count).toBe(sent);
    // The file has its current name and scope now (a refused run still took it over, under the lock), and runs on.
    expect(readdirSync(stateDir).filter((f) => f.endsWith('.json'))).toEqual([current]);
    expect((JSON.parse(readFileSync(join(stateDir, current as string), 'utf8')) as { scope: string }).scope).toBe(currentScope);
    // A cron run over the same hours reads that state too: it passes over what the range delivered.
    const cron = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(29)), '--log-format', 'text'], world.dir);
    expect(cron.code, cron.stderr).toBe(0);
    expect(world.fme.count).toBe(sent);
  });

  it('passes over hours an explicit range delivered ahead of the cursor: each event once, and cron is never stopped', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(30), 11, 5); // ago(30) .. ago(20)
    world.writeConfig(CONFIG);
    const since = async (...extra: string[]): Promise<CliResult> => runCli(['export-events', '--since-last-run', ...extra, '--end', formatHour(ago(20)), '--log-format', 'json'], world!.dir);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(27))], world.dir)).code).toBe(0);
    // Sent by hand, ahead of the cursor: ago(24) .. ago(23).
    expect((await runCli(['export-events', '--start', formatHour(ago(24)), '--end', formatHour(ago(23))], world.dir)).code).toBe(0);

    const first = await since();
    expect(first.code, first.stderr).toBe(0);
    expect(logLines(first.stderr).some((l) => l.message.startsWith(`--since-last-run goes up to ${formatHour(ago(25))} this time`))).toBe(true);
    const second = await since();
    expect(second.code, second.stderr).toBe(0);
    expect(logLines(second.stderr).some((l) => l.message === `--since-last-run passes over ${formatHour(ago(24))}..${formatHour(ago(23))}: delivered by the range ${formatHour(ago(24))}..${formatHour(ago(23))}`)).toBe(true);

    expectEachOnce(world, wanted.length);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { lastDeliveredHour: string; skipped: { start: string; end: string; deliveredBy?: string }[] } };
    expect(state.cursor.lastDeliveredHour).toBe(formatHour(ago(20)));
    expect(state.cursor.skipped).toEqual([
      { start: formatHour(ago(24)), end: formatHour(ago(23)), at: expect.any(String) as unknown, deliveredBy: `the range ${formatHour(ago(24))}..${formatHour(ago(23))}` },
    ]);
    // The hours stay delivered: sending them again on their own is still refused.
    const again = await runCli(['export-events', '--start', formatHour(ago(24)), '--end', formatHour(ago(23)), '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
  });

  it('finishes its own interrupted window first, then stops before a range delivered after it; the next run passes over the range', async () => {
    world = await startWorld();
    const wanted = seedHours(world, ago(30), 11, 5); // ago(30) .. ago(20)
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(30))], world.dir)).code).toBe(0);
    expect((await runCli(['export-events', '--start', formatHour(ago(26)), '--end', formatHour(ago(26))], world.dir)).code).toBe(0);
    // The cursor's next window was interrupted before its first batch was acknowledged.
    const file = stateFile(world);
    editState(file, (state: { cursor: { inProgress: unknown } }) => {
      state.cursor.inProgress = { start: formatHour(ago(29)), end: formatHour(ago(28)), acked: [] };
    });

    const first = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(20)), '--log-format', 'json'], world.dir);
    expect(first.code, first.stderr).toBe(0);
    expect(logLines(first.stderr).some((l) => l.message.startsWith(`--since-last-run goes up to ${formatHour(ago(27))} this time`))).toBe(true);
    const second = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(20)), '--log-format', 'json'], world.dir);
    expect(second.code, second.stderr).toBe(0);
    expectEachOnce(world, wanted.length);
  });

  it('stops at a window of a range folded into the older ones while part-way through, since what it delivered is no longer known; the --skip-to it advises works', async () => {
    world = await startWorld();
    const before = seedHours(world, ago(30), 2, 5);
    const window = seedHours(world, ago(28), 1, 5);
    const after = seedHours(world, ago(27), 5, 5); // ago(27) .. ago(23)
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(29))], world.dir)).code).toBe(0);
    // A range delivered further on, as a backfill leaves them.
    expect((await runCli(['export-events', '--start', formatHour(ago(25)), '--end', formatHour(ago(25))], world.dir)).code).toBe(0);
    // As a fold leaves it: the window's hours among the older ranges' delivered hours, and marked partly delivered.
    const file = stateFile(world);
    const hour = formatHour(ago(28));
    editState(file, (state: Record<string, unknown>) => {
      state.earlierRanges = [[hour, hour]];
      state.earlierPartly = [[hour, hour]];
    });
    const sentBefore = world.fme.count;

    const r = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(23)), '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`since folded into the explicit ranges older than the last 50, was interrupted part-way through ${hour}..${hour}`);
    expect(world.fme.count).toBe(sentBefore);
    // The advised skip, word for word, then cron: it goes on after the window and passes over the range.
    const advised = /amp-fme (export-events --since-last-run --skip-to \S+ --end \S+)/.exec(r.stderr)?.[1]?.split(' ');
    expect(advised).toEqual(['export-events', '--since-last-run', '--skip-to', formatHour(ago(27)), '--end', formatHour(ago(28))]);
    const skip = await runCli([...(advised as string[]), '--log-format', 'text'], world.dir);
    expect(skip.code, skip.stderr).toBe(0);
    // Two cron runs: the first goes up to the range, the next passes over it.
    for (let i = 0; i < 2; i++) {
      const cron = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(23)), '--log-format', 'text'], world.dir);
      expect(cron.code, cron.stderr).toBe(0);
    }
    // Every event once, but those of the skipped window (that is what a skip means).
    const counts = uuidCounts(world);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(counts.size).toBe(before.length + after.length);
    expect(window.some((row) => counts.has(String(row.uuid)))).toBe(false);
  });

  it('passes over what older ranges delivered up to a window one of them was part-way through, even past --end, and stops there', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 7, 5); // ago(30) .. ago(24)
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(29))], world.dir)).code).toBe(0);
    // As folds leave it: ago(28)..ago(26) delivered by older ranges, ago(26) only in part.
    const file = stateFile(world);
    editState(file, (state: Record<string, unknown>) => {
      state.earlierRanges = [[formatHour(ago(28)), formatHour(ago(26))]];
      state.earlierPartly = [[formatHour(ago(26)), formatHour(ago(26))]];
    });
    const sentBefore = world.fme.count;

    // --end before the partly window: the older ranges' span reaches into it all the same.
    const r = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(27)), '--log-format', 'json'], world.dir);
    expect(r.code).toBe(2);
    expect(logLines(r.stderr).some((l) => l.message.startsWith(`--since-last-run passes over ${formatHour(ago(28))}..${formatHour(ago(27))}: delivered by`))).toBe(true);
    expect(r.stderr).toContain(`was interrupted part-way through ${formatHour(ago(26))}..${formatHour(ago(26))}`);
    expect(world.fme.count).toBe(sentBefore);
    const after = JSON.parse(readFileSync(file, 'utf8')) as { cursor: { lastDeliveredHour: string } };
    expect(after.cursor.lastDeliveredHour).toBe(formatHour(ago(27)));
    // The advised skip is exactly the window, and says it was delivered in part by ranges.
    const skip = await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(25)), '--end', formatHour(ago(26)), '--log-format', 'json'], world.dir);
    expect(skip.code, skip.stderr).toBe(0);
    expect(logLines(skip.stderr).some((l) => l.message.startsWith(`--skip-to: skipped ${formatHour(ago(26))}`) && l.message.includes('delivered, in full or in part, by explicit ranges'))).toBe(true);
  });

  it('a --skip-to run stops before hours a range delivered after it, and the next run passes over them', async () => {
    world = await startWorld();
    const first = seedHours(world, ago(30), 1, 5);
    seedHours(world, ago(29), 1, 5); // skipped
    const rest = seedHours(world, ago(28), 5, 5); // ago(28) .. ago(24)
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(30))], world.dir)).code).toBe(0);
    expect((await runCli(['export-events', '--start', formatHour(ago(26)), '--end', formatHour(ago(26))], world.dir)).code).toBe(0);

    const skip = await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(28)), '--end', formatHour(ago(24)), '--log-format', 'json'], world.dir);
    expect(skip.code, skip.stderr).toBe(0);
    expect(logLines(skip.stderr).some((l) => l.message.startsWith(`--since-last-run goes up to ${formatHour(ago(27))} this time`))).toBe(true);
    const cron = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(24)), '--log-format', 'json'], world.dir);
    expect(cron.code, cron.stderr).toBe(0);
    const counts = uuidCounts(world);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(counts.size).toBe(first.length + rest.length);
  });

  it('resumes an interrupted range past hours another range delivered since, sending each event once', async () => {
    world = await startWorld();
    const window = seedHours(world, ago(30), 3, 5); // the range's interrupted window, ago(30) .. ago(28)
    const last = seedHours(world, ago(27), 1, 5);
    world.writeConfig(CONFIG);
    const [a, b] = [formatHour(ago(30)), formatHour(ago(27))];
    // Range a..b interrupted inside its first window; then the hour b sent as a range of its own.
    expect((await runCli(['export-events', '--start', b, '--end', b], world.dir)).code).toBe(0);
    const file = stateFile(world);
    editState(file, (state: { ranges: unknown[] }) => {
      state.ranges.push({ start: a, end: b, firstHour: null, lastDeliveredHour: null, inProgress: { start: a, end: formatHour(ago(28)), acked: [[0, 1]] }, updatedAt: new Date().toISOString() });
    });

    const args = ['export-events', '--start', a, '--end', b, '--log-format', 'json'];
    const first = await runCli(args, world.dir);
    expect(first.code, first.stderr).toBe(0);
    expect(logLines(first.stderr).some((l) => l.message.startsWith(`the range ${a}..${b} goes up to ${formatHour(ago(28))} this time`))).toBe(true);
    const second = await runCli(args, world.dir);
    expect(second.code, second.stderr).toBe(0);
    expect(logLines(second.stderr).some((l) => l.message === `the range ${a}..${b} passes over ${b}..${b}: delivered by the range ${b}..${b}`)).toBe(true);
    const third = await runCli(args, world.dir);
    expect(third.code).toBe(2);
    expect(third.stderr).toContain('was already delivered in full');
    // Once each: the window's rows but the two acknowledged before the interruption (as the state says), and hour b's.
    const counts = uuidCounts(world);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(last.every((row) => counts.get(String(row.uuid)) === 1)).toBe(true);
    expect(counts.size).toBeGreaterThanOrEqual(window.length + last.length - 2);
  });

  it('a resuming range does not pass over a window the cursor delivered only in part before a --skip-to passed it', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 6, 5);
    world.writeConfig(CONFIG);
    const [a, e] = [formatHour(ago(30)), formatHour(ago(25))];
    // Written as the runs leave it: the range a..e stopped after ago(28); the cursor was part-way through
    // ago(27)..ago(26) when a --skip-to passed it, then delivered ago(25).
    expect((await runCli(['export-events', '--start', formatHour(ago(22)), '--end', formatHour(ago(22))], world.dir)).code).toBe(0);
    const path = stateFile(world);
    editState(path, (state: Record<string, unknown>) => {
      const at = new Date().toISOString();
      state.ranges = [{ start: a, end: e, firstHour: a, lastDeliveredHour: formatHour(ago(28)), inProgress: null, updatedAt: at }];
      state.cursor = { firstHour: formatHour(ago(27)), lastDeliveredHour: formatHour(ago(25)), inProgress: null, updatedAt: at, skipped: [{ start: formatHour(ago(27)), end: formatHour(ago(26)), at, partlyDelivered: true }] };
    });
    const sentBefore = world.fme.count;
    const r = await runCli(['export-events', '--start', a, '--end', e, '--log-format', 'text'], world.dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('was already delivered');
    expect(world.fme.count).toBe(sentBefore);
  });

  it('a range first run with --force, resumed, passes over hours another range delivered after it stopped, and says so', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 4, 5);
    world.writeConfig(CONFIG);
    const [a, b] = [formatHour(ago(30)), formatHour(ago(27))];
    expect((await runCli(['export-events', '--start', b, '--end', b], world.dir)).code).toBe(0);
    const path = stateFile(world);
    editState(path, (state: { ranges: unknown[] }) => {
      // The range a..b (run with --force: its state looks the same), stopped after ago(28).
      state.ranges.push({ start: a, end: b, firstHour: a, lastDeliveredHour: formatHour(ago(28)), inProgress: null, updatedAt: new Date().toISOString() });
    });
    const sentBefore = world.fme.count;
    const r = await runCli(['export-events', '--start', a, '--end', b, '--log-format', 'json'], world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(logLines(r.stderr).some((l) => l.message === `the range ${a}..${b} passes over ${b}..${b}: delivered by the range ${b}..${b}`)).toBe(true);
    expect(world.fme.count).toBe(sentBefore);
  });

  it('a range run with --force and stopped, then run again with --force, goes on where it stopped: it neither starts over nor sends hours delivered since the force', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 4, 5);
    world.writeConfig(CONFIG);
    const [a, b] = [formatHour(ago(30)), formatHour(ago(27))];
    expect((await runCli(['export-events', '--start', b, '--end', b], world.dir)).code).toBe(0);
    editState(stateFile(world), (state: { ranges: unknown[] }) => {
      // The range a..b, run with --force when nothing in it had been delivered (b..b was sent after), stopped after ago(28).
      state.ranges.push({ start: a, end: b, firstHour: a, lastDeliveredHour: formatHour(ago(28)), inProgress: null, updatedAt: new Date().toISOString(), forcedOver: [] });
    });
    const sentBefore = world.fme.count;
    const r = await runCli(['export-events', '--start', a, '--end', b, '--force', '--log-format', 'json'], world.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(logLines(r.stderr).some((l) => l.message.includes('was run with --force and stopped part-way: it goes on where it stopped'))).toBe(true);
    expect(logLines(r.stderr).some((l) => l.message === `the range ${a}..${b} passes over ${b}..${b}: delivered by the range ${b}..${b}`)).toBe(true);
    expect(world.fme.count).toBe(sentBefore);
  });

  it('refusing to resume a range at a window another range delivered in part, says that --force would also send its delivered part again', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 4, 5);
    world.writeConfig(CONFIG);
    const [a, b] = [formatHour(ago(30)), formatHour(ago(27))];
    expect((await runCli(['export-events', '--start', a, '--end', formatHour(ago(28))], world.dir)).code).toBe(0);
    // The range a..b, interrupted after its first window; a range over b interrupted inside it.
    const file = stateFile(world);
    editState(file, (state: { ranges: unknown[] }) => {
      state.ranges = [
        { start: a, end: b, firstHour: a, lastDeliveredHour: formatHour(ago(28)), inProgress: null, updatedAt: new Date().toISOString() },
        { start: b, end: b, firstHour: null, lastDeliveredHour: null, inProgress: { start: b, end: b, acked: [[0, 1]] }, updatedAt: new Date().toISOString() },
      ];
    });
    const r = await runCli(['export-events', '--start', a, '--end', b, '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('This range was interrupted after delivering part of it: --force would start it over and send that part again as well.');
  });

  it('a range run with --force, resumed, that reaches a window another range delivered in part: --force, as the refusal says, sends that window, and the next run passes over what follows', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 3, 5);
    const partlyHour = seedHours(world, ago(27), 1, 5);
    seedHours(world, ago(26), 1, 5);
    world.writeConfig(CONFIG);
    const [a, b, p, d] = [formatHour(ago(30)), formatHour(ago(26)), formatHour(ago(27)), formatHour(ago(26))];
    expect((await runCli(['export-events', '--start', a, '--end', formatHour(ago(28))], world.dir)).code).toBe(0);
    // The range a..b, run with --force and stopped after ago(28); since then a range over ago(27) was interrupted
    // inside it, and one over ago(26) delivered it.
    editState(stateFile(world), (state: { ranges: unknown[] }) => {
      state.ranges = [
        { start: a, end: b, firstHour: a, lastDeliveredHour: formatHour(ago(28)), inProgress: null, updatedAt: new Date().toISOString(), forcedOver: [] },
        { start: p, end: p, firstHour: null, lastDeliveredHour: null, inProgress: { start: p, end: p, acked: [[0, 1]] }, updatedAt: new Date().toISOString() },
        { start: d, end: d, firstHour: d, lastDeliveredHour: d, inProgress: null, updatedAt: new Date().toISOString() },
      ];
    });
    const sent = world.fme.count;
    const refused = await runCli(['export-events', '--start', a, '--end', b, '--log-format', 'text'], world.dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('add --force to send those hours again');
    expect(refused.stderr).not.toContain('--force would start it over');

    const forced = await runCli(['export-events', '--start', a, '--end', b, '--force', '--log-format', 'text'], world.dir);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toContain(`--force: sending hours that were already delivered again (${p}..${p} (delivered in part by the range ${p}..${p}))`);
    expect(world.fme.count - sent).toBe(partlyHour.length);

    const rest = await runCli(['export-events', '--start', a, '--end', b, '--log-format', 'text'], world.dir);
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.stderr).toContain(`passes over ${d}..${d}: delivered by the range ${d}..${d}`);
    expect(world.fme.count - sent).toBe(partlyHour.length);
    expect((await runCli(['export-events', '--start', a, '--end', b], world.dir)).stderr).toContain('was already delivered in full');
  });

  it('stops, saying how to go on, when the cursor reaches a range an interrupted run was part-way through', async () => {
    world = await startWorld();
    seedHours(world, ago(30), 5, 5);
    world.writeConfig(CONFIG);
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(30)), '--end', formatHour(ago(29))], world.dir)).code).toBe(0);
    // A range whose run stopped inside its window: some of its batches were acknowledged.
    const file = stateFile(world);
    const hour = formatHour(ago(28));
    editState(file, (state: { ranges: unknown[] }) => {
      state.ranges.push({ start: hour, end: hour, firstHour: null, lastDeliveredHour: null, inProgress: { start: hour, end: hour, acked: [[0, 1]] }, updatedAt: new Date().toISOString() });
    });
    const sentBefore = world.fme.count;

    const r = await runCli(['export-events', '--since-last-run', '--end', formatHour(ago(26)), '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the range ${hour}..${hour} was interrupted part-way through ${hour}..${hour}`);
    expect(r.stderr).toContain(`amp-fme export-events --start ${hour} --end ${hour}`);
    expect(world.fme.count).toBe(sentBefore);
  });

  it('an hour Amplitude cannot export stops the run; --skip-to goes on past it, and the hour can be sent later on its own', async () => {
    const huge = [ago(8)];
    world = await startWorld({ exportOptions: { hugeHours: huge } });
    const before = seedHours(world, ago(10), 2, 15);
    const hugeHour = seedHours(world, ago(8), 1, 15);
    const after = seedHours(world, ago(7), 4, 15);
    world.writeConfig(CONFIG);

    const first = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain(`cannot export the single upload hour ${formatHour(ago(8))}`);
    expect(first.stderr).toContain(`add --skip-to ${formatHour(ago(7))} to the next --since-last-run.`);
    expect(first.stderr).not.toContain('an explicit range');
    expect(uuidCounts(world).size).toBe(before.length);
    // The summary of what was sent before the stop, all the same.
    expect(logLines(first.stderr).filter((l) => l.message === 'summary')).toEqual([expect.objectContaining({ exitCode: 1, fmeEventsSent: before.length })]);

    // The cursor cannot be moved back over delivered hours, nor by a run that changes no state.
    expect((await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(9))], world.dir)).code).toBe(2);
    expect((await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(7)), '--dry-run'], world.dir)).code).toBe(2);
    // Nor past hours that can still be exported, nor with a --start once there is a cursor.
    const future = await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(-1)), '--log-format', 'text'], world.dir);
    expect(future.code).toBe(2);
    expect(future.stderr).toContain('it would skip hours that can still be exported');
    expect((await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10)), '--skip-to', formatHour(ago(7))], world.dir)).code).toBe(2);

    // A run refused for its settings records no skip.
    const stateBefore = readFileSync(stateFile(world), 'utf8');
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, valueFrom: 'event_properties..revenue' } });
    expect((await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(7))], world.dir)).code).toBe(2);
    expect(readFileSync(stateFile(world), 'utf8')).toBe(stateBefore);
    world.writeConfig(CONFIG);

    const skipped = await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(7)), '--json'], world.dir);
    expect(skipped.code).toBe(0);
    expect(JSON.parse(skipped.stdout).skippedHours).toBe(formatHour(ago(8)));
    expect(logLines(skipped.stderr).some((l) => l.level === 'warn' && l.message.includes(`skipped ${formatHour(ago(8))}`))).toBe(true);
    let counts = uuidCounts(world);
    expect(counts.size).toBe(before.length + after.length);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    for (const r of hugeHour) expect(counts.has(String(r.uuid))).toBe(false);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { skipped: { start: string; end: string }[] } };
    expect(state.cursor.skipped).toMatchObject([{ start: formatHour(ago(8)), end: formatHour(ago(8)) }]);

    // Once Amplitude can export it, the skipped hour is not "already delivered": an explicit range sends it.
    huge.length = 0;
    const later = await runCli(['export-events', '--start', formatHour(ago(8)), '--end', formatHour(ago(8))], world.dir);
    expect(later.code).toBe(0);
    counts = uuidCounts(world);
    expect(counts.size).toBe(before.length + hugeHour.length + after.length);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
  });
  it('an hour Amplitude cannot export in an explicit range: the advice is a new range after it, or none at the range\'s last hour', async () => {
    world = await startWorld({ exportOptions: { hugeHours: [ago(8)] } });
    seedHours(world, ago(10), 4, 5);
    world.writeConfig(CONFIG);
    const inside = await runCli(['export-events', '--start', formatHour(ago(10)), '--end', formatHour(ago(7)), '--log-format', 'text'], world.dir);
    expect(inside.code).toBe(1);
    expect(inside.stderr).toContain(`go on after it: run --start ${formatHour(ago(7))} --end ${formatHour(ago(7))} as a new range.`);
    expect(inside.stderr).not.toContain('--skip-to');
    const last = await runCli(['export-events', '--start', formatHour(ago(9)), '--end', formatHour(ago(8)), '--dry-run', '--log-format', 'text'], world.dir);
    expect(last.code).toBe(1);
    expect(last.stderr).toContain('go on after it: the range ends there: there is nothing more of it to run.');
    expect(last.stderr).not.toContain(`--start ${formatHour(ago(7))}`);
  });

  it('an hour Amplitude cannot export in a resumed range that stops before hours another range delivered: the advice goes on to the range\'s own end', async () => {
    const huge = [ago(10)];
    world = await startWorld({ exportOptions: { hugeHours: huge } });
    const sent = [...seedHours(world, ago(12), 3, 5), ...seedHours(world, ago(8), 3, 5)];
    const tooLarge = seedHours(world, ago(9), 1, 5);
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, windowHours: 1 } });
    const range = ['--start', formatHour(ago(12)), '--end', formatHour(ago(6))];
    // The range stops at ago(10); another range delivers ago(8) meanwhile.
    expect((await runCli(['export-events', ...range], world.dir)).code).toBe(1);
    expect((await runCli(['export-events', '--start', formatHour(ago(8)), '--end', formatHour(ago(8))], world.dir)).code).toBe(0);
    // Resumed, the range goes up to ago(9) this time, and ago(9) cannot be exported.
    huge.splice(0, 1, ago(9));
    const resumed = await runCli(['export-events', ...range, '--log-format', 'text'], world.dir);
    expect(resumed.code).toBe(1);
    expect(resumed.stderr).toContain(`cannot export the single upload hour ${formatHour(ago(9))}`);
    // ago(7) and ago(6) are still to run: the range does not end at ago(9).
    expect(resumed.stderr).not.toContain('there is nothing more of it to run');
    // A new range over ago(8) would be refused (delivered already): the advice starts after it.
    expect(resumed.stderr).toContain(`go on after it: run --start ${formatHour(ago(7))} --end ${formatHour(ago(6))} as a new range.`);
    // The advised command works: every hour but ago(9) is in FME, once.
    const next = await runCli(['export-events', '--start', formatHour(ago(7)), '--end', formatHour(ago(6)), '--log-format', 'text'], world.dir);
    expect(next.code, next.stderr).toBe(0);
    const counts = uuidCounts(world);
    expect([...counts.keys()].sort()).toEqual(sent.map((r) => String(r.uuid)).sort());
    for (const r of tooLarge) expect(counts.has(String(r.uuid))).toBe(false);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
  });

  it('a damaged entry in an export is dead-lettered from the damage on; the other entries are delivered once, and the run goes on', async () => {
    const hour = ago(6);
    const rows = (entry: string, n: number): Record<string, unknown>[] =>
      Array.from({ length: n }, (_, i) => ({ event_type: 'Viewed page', user_id: `user-${entry}-${i}`, uuid: `${entry}-${i}`, event_time: new Date(hour + i).toISOString().replace('T', ' ').replace('Z', '') }));
    const ndjson = (list: Record<string, unknown>[]): Buffer => Buffer.from(`${list.map((r) => JSON.stringify(r)).join('\n')}\n`);
    // Entry b: a sound gzip member, then one whose deflate data is broken (an invalid block type).
    const broken = gzipSync(ndjson(rows('b', 500)));
    broken.fill(0xff, 10, 40);
    const entries = [
      { name: '123/123_a#0.json.gz', data: gzipSync(ndjson(rows('a', 300))) },
      { name: '123/123_b#0.json.gz', data: Buffer.concat([gzipSync(ndjson(rows('b', 4000))), broken]) },
      { name: '123/123_c#0.json.gz', data: gzipSync(ndjson(rows('c', 300))) },
    ];
    const zipPath = join(tempDir('damaged'), 'export.zip');
    writeFileSync(zipPath, await zipToBuffer(entries, { method: 'deflate' }));
    world = await startWorld({ exportOptions: { prebuiltArchive: (start, end) => (start <= hour && hour <= end ? zipPath : undefined) } });
    world.writeConfig(CONFIG);

    const r = await runCli(['export-events', '--since-last-run', '--start', formatHour(hour), '--json'], world.dir);
    expect(r.code).toBe(3);
    const summary = JSON.parse(r.stdout) as { damagedEntries: number; deadLetterFile: string };
    expect(summary.damagedEntries).toBe(1);
    const letters = readFileSync(summary.deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; source: { entry: string; line: number }; retriable: boolean });
    expect(letters).toHaveLength(1);
    const letter = letters[0]!;
    expect(letter).toMatchObject({ reason: 'damaged_entry', retriable: false, source: { entry: '123/123_b#0.json.gz' } });
    expect(logLines(r.stderr).some((l) => l.level === 'warn' && l.message.includes('123/123_b#0.json.gz'))).toBe(true);
    // Every line is accounted for: entry b's lines before the damage are delivered, the rest is the dead letter.
    const damagedAt = letter.source.line;
    expect(damagedAt).toBeGreaterThan(1);
    expect(damagedAt).toBeLessThanOrEqual(4001);
    const counts = uuidCounts(world);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    const sent = (entry: string): number => [...counts.keys()].filter((u) => u.startsWith(`${entry}-`)).length;
    expect([sent('a'), sent('b'), sent('c')]).toEqual([300, damagedAt - 1, 300]);
    for (let i = 0; i < damagedAt - 1; i++) expect(counts.has(`b-${i}`)).toBe(true);

    // The window is done: the next run sends nothing again.
    const again = await runCli(['export-events', '--since-last-run'], world.dir);
    expect(again.code).toBe(0);
    expect(uuidCounts(world).size).toBe(counts.size);
  });
  it('a window an interrupted run was part-way through is never split, which would re-send it; --skip-to passes over it whole', async () => {
    const huge: number[] = [];
    world = await startWorld({ exportOptions: { hugeHours: huge } });
    const inWindow = seedHours(world, ago(10), 6, 300); // the window ago(10)..ago(5)
    const after = seedHours(world, ago(4), 1, 20);
    world.writeConfig({ exportEvents: { ...CONFIG.exportEvents, batchSize: 20, concurrency: 2 }, http: { timeoutMs: 60_000 } });
    // FME stores each batch at once but holds its answer until the run is stopping, and the stop comes once the first
    // batch has arrived: the run is part-way through the window however fast or slow the machine is (a held request
    // does not time out meanwhile).
    const run = runCli(['export-events', '--since-last-run', '--start', formatHour(ago(10))], world.dir);
    const stopping = logged(run, 'stopping at the next clean point');
    world.fme.faults.push({ status: 202, afterProcessing: true, until: stopping }, 10_000);
    await waitFor(() => world?.fme.requests.length !== 0, 'the first FME request');
    run.child.kill('SIGTERM');
    const first = await run;
    expect(await stopping).toBe(true);
    expect(first.code).toBe(1);
    world.fme.faults.clear();
    const delivered = uuidCounts(world).size;
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(inWindow.length);

    // Amplitude now refuses the whole window (a timeout, say): halving it would send its delivered part again.
    huge.push(ago(7));
    const requestsBefore = world.exportApi.requests.length;
    const second = await runCli(['export-events', '--since-last-run', '--log-format', 'text'], world.dir);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`${formatHour(ago(10))}..${formatHour(ago(5))}, which an interrupted run was part-way through`);
    expect(second.stderr).toContain(`--skip-to ${formatHour(ago(4))}`);
    expect(world.exportApi.requests.slice(requestsBefore).map((r) => `${r.start}..${r.end}`)).toEqual([`${formatHour(ago(10))}..${formatHour(ago(5))}`]);
    expect(uuidCounts(world).size).toBe(delivered);

    // It is passed over whole or not at all.
    expect((await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(7))], world.dir)).code).toBe(2);
    const skipped = await runCli(['export-events', '--since-last-run', '--skip-to', formatHour(ago(4)), '--json'], world.dir);
    expect(skipped.code).toBe(0);
    expect(JSON.parse(skipped.stdout).skippedHours).toBe(`${formatHour(ago(10))}..${formatHour(ago(5))}`);
    const counts = uuidCounts(world);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(counts.size).toBe(delivered + after.length);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { skipped: unknown[]; inProgress: unknown } };
    expect(state.cursor.inProgress).toBeNull();
    expect(state.cursor.skipped).toMatchObject([{ start: formatHour(ago(10)), end: formatHour(ago(5)), partlyDelivered: true }]);

    // Part of it was delivered: sending it again as a range needs --force.
    huge.length = 0;
    const again = await runCli(['export-events', '--start', formatHour(ago(10)), '--end', formatHour(ago(5)), '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already delivered');
  });
  it('when the very first hour cannot be exported, --skip-to with the same --start goes on past it', async () => {
    world = await startWorld({ exportOptions: { hugeHours: [ago(8)] } });
    seedHours(world, ago(8), 1, 10);
    const after = seedHours(world, ago(7), 3, 10);
    world.writeConfig(CONFIG);
    const first = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(8))], world.dir);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain(`--skip-to ${formatHour(ago(7))}`);
    const bad = await runCli(['export-events', '--since-last-run', '--skip-to', 'soon', '--log-format', 'text'], world.dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('Invalid --skip-to hour "soon"');
    const skipped = await runCli(['export-events', '--since-last-run', '--start', formatHour(ago(8)), '--skip-to', formatHour(ago(7)), '--json'], world.dir);
    expect(skipped.code).toBe(0);
    expect(JSON.parse(skipped.stdout).skippedHours).toBe(formatHour(ago(8)));
    expectEachOnce(world, after.length);
    const state = JSON.parse(readFileSync(stateFile(world), 'utf8')) as { cursor: { firstHour: string; skipped: unknown[] } };
    expect(state.cursor.firstHour).toBe(formatHour(ago(8)));
    expect(state.cursor.skipped).toMatchObject([{ start: formatHour(ago(8)), end: formatHour(ago(8)) }]);
  });
});
