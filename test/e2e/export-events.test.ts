import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { KEYS, logLines, runCli, startWorld, type World } from '../helpers/world.js';

const h = (s: string): number => parseHourArg(s, 'start');
let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

function seedDays(w: World, firstDay: string, days: number, perHour: number): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (let i = 0; i < days * 24; i++) for (const r of generateExportRows(h(firstDay) + i * 3_600_000, perHour, { users: 500 })) rows.push(r);
  w.store.add(rows);
  return rows;
}

function expectNoSecrets(text: string): void {
  for (const k of Object.values(KEYS)) expect(text).not.toContain(k);
}

describe('amp-fme (spawned)', () => {
  it('prints help with the commands and exit codes', async () => {
    const r = await runCli(['--help'], process.cwd());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('export-events');
    expect(r.stdout).toContain('75  another run holds the lock');
    const sub = await runCli(['export-events', '--help'], process.cwd());
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--since-last-run');
  });

  it('syncs a week of events: exit 0, JSON summary on stdout, every event once', async () => {
    world = await startWorld({ exportOptions: { entriesPerHour: 2, zip: { method: 'deflate', dataDescriptor: true } } });
    const rows = seedDays(world, '2024-03-01', 7, 12);
    world.writeConfig({ exportEvents: { properties: ['event_properties.*', 'uuid'] } });
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-07', '--json'], world.dir);
    expect(r.stderr).not.toMatch(/"level":"error"/);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as Record<string, unknown>;
    const expected = rows.filter((x) => typeof x.user_id === 'string' && x.event_type !== 'get_treatment');
    expect(summary).toMatchObject({ command: 'export-events', windows: 7, eventsRead: rows.length, fmeEventsSent: expected.length, deadLetters: 0 });
    expect((summary.skipped as Record<string, number>).excluded_event_type).toBe(rows.filter((x) => x.event_type === 'get_treatment').length);
    expect(world.fme.count).toBe(expected.length);
    expect(new Set(world.fme.events.map((e) => e.properties?.uuid)).size).toBe(expected.length);
    expect(world.exportApi.requests.length).toBe(7);
    // Non-TTY stderr: JSON log lines, one summary line.
    expect(logLines(r.stderr).filter((l) => l.message === 'summary').length).toBe(1);
    expectNoSecrets(r.stdout + r.stderr);
  });

  it('writes only JSON log lines under cron however many export requests a run makes', async () => {
    world = await startWorld();
    seedDays(world, '2024-03-01', 1, 2);
    // One request per hour: 24 with data, then 6 that Amplitude answers with its 404 "no data".
    world.writeConfig({ exportEvents: { windowHours: 1 } });
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-02T05', '--json'], world.dir);
    expect(r.code).toBe(0);
    expect(world.exportApi.requests.length).toBe(30);
    // README: under cron every stderr line is one JSON object (no Node warning about listeners left on the run's stop signal).
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines.filter((l) => !l.startsWith('{'))).toEqual([]);
  });

  it('refuses a copy of the example config that still holds its placeholder keys, with exit 2 and nothing sent', async () => {
    world = await startWorld();
    seedDays(world, '2024-03-01', 1, 2);
    const example = JSON.parse(readFileSync(join(__dirname, '../../amp-fme.config.example.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    // The quick start's copy, edited to point at the emulators, with the placeholders left in and the variables not set.
    world.writeConfig({ amplitude: { ...example.amplitude }, fme: { sdkKey: example.fme?.sdkKey } });
    const unset = { AMPLITUDE_API_KEY: '', AMPLITUDE_SECRET_KEY: '', FME_SDK_KEY: '' };
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--log-format', 'text'], world.dir, unset);
    expect(r.code).toBe(2);
    for (const name of ['AMPLITUDE_API_KEY', 'AMPLITUDE_SECRET_KEY', 'FME_SDK_KEY']) expect(r.stderr).toContain(`still holds the placeholder of amp-fme.config.example.json: set ${name}`);
    expect(world.exportApi.requests.length).toBe(0);
    expect(world.fme.requestCount).toBe(0);
    // With the keys in the environment, as the quick start has them, the same copy runs.
    const ok = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--json'], world.dir);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it.runIf(existsSync('/usr/bin/script'))('on a terminal draws progress bars, but not with --json, for export-events and push-impressions alike', async () => {
    world = await startWorld();
    seedDays(world, '2024-03-01', 1, 2);
    world.writeConfig();
    const dump = join(world.dir, 'dump.ndjson');
    writeFileSync(dump, `${JSON.stringify({ key: 'user-00001', split: 'f', treatment: 'on', time: Date.now() - 60_000 })}\n`);
    const runs = [
      ['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--dry-run'],
      ['push-impressions', dump, '--dry-run'],
    ];
    for (const args of runs) {
      const bars = await runCli(args, world.dir, {}, { terminal: true });
      expect(bars.code, bars.stdout).toBe(0);
      expect(bars.stdout).toMatch(/\u001b\[\?25l/); // a bar hides the cursor while it draws
      const json = await runCli([...args, '--json'], world.dir, {}, { terminal: true });
      expect(json.code, json.stdout).toBe(0);
      expect(json.stdout).not.toMatch(/\u001b\[\?25l/);
      expect(json.stdout).toContain(`"command":"${args[0]}"`);
    }
  });

  it('keeps timestamps right under a non-UTC TZ', async () => {
    world = await startWorld();
    world.store.add([{ uuid: 'tz-1', event_type: 'Tz', user_id: 'user-1', event_time: '2024-03-10 09:30:00.5', server_upload_time: '2024-03-10 09:31:00' }]);
    world.writeConfig();
    const r = await runCli(['export-events', '--start', '2024-03-10T09:00:00Z', '--end', '20240310T09'], world.dir, { TZ: 'America/Los_Angeles' });
    expect(r.code).toBe(0);
    expect(world.fme.events[0]?.timestamp).toBe(Date.UTC(2024, 2, 10, 9, 30, 0, 500));
    expect(world.exportApi.requests[0]).toMatchObject({ start: '20240310T09', end: '20240310T09' });
  });

  it('reports every config problem with its dot path and exits 2', async () => {
    world = await startWorld();
    writeFileSync(join(world.dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { region: 'mars' }, exportEvents: { batchSize: 'big', windowHour: 3 } }));
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--log-format', 'text'], world.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('amplitude.region');
    expect(r.stderr).toContain('exportEvents.batchSize');
    expect(r.stderr).toContain('exportEvents.windowHour: unknown key');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('exits 2 on bad flags and missing secrets, naming what to set', async () => {
    world = await startWorld();
    world.writeConfig();
    const bad = await runCli(['export-events', '--start', 'yesterday', '--end', '2024-03-01', '--log-format', 'text'], world.dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('YYYYMMDDTHH');
    const unknown = await runCli(['export-events', '--strat', '2024-03-01'], world.dir);
    expect(unknown.code).toBe(2);
    // Not a terminal (as under cron): the flag error is a JSON log line like every other error; text when asked.
    expect(unknown.stderr.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      { time: expect.any(String) as unknown, level: 'error', message: "unknown option '--strat'\n(Did you mean --start?)\n(run with --help for usage)", exitCode: 2 },
    ]);
    const unknownText = await runCli(['export-events', '--strat', '2024-03-01', '--log-format', 'text'], world.dir);
    expect(unknownText.code).toBe(2);
    expect(unknownText.stderr).toBe("error: unknown option '--strat'\n(Did you mean --start?)\n(run with --help for usage)\n");
    const noKey = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--log-format', 'text'], world.dir, { FME_SDK_KEY: '' });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('FME_SDK_KEY');
    // An --output path that cannot be written: exit 2 naming it, no stack trace.
    const noDir = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--output', join(world.dir, 'missing', 'out.ndjson'), '--log-format', 'text'], world.dir);
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toContain(`cannot write the --output file ${join(world.dir, 'missing', 'out.ndjson')}`);
    expect(noDir.stderr).not.toMatch(/Unexpected error|\n\s+at /);
    // A mapping setting that is wrong stops the run before an existing --output file is touched.
    const out = join(world.dir, 'kept.ndjson');
    writeFileSync(out, 'earlier output\n');
    world.writeConfig({ exportEvents: { valueFrom: 'event_properties..revenue' } });
    const badMapping = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--output', out], world.dir);
    expect(badMapping.code).toBe(2);
    expect(readFileSync(out, 'utf8')).toBe('earlier output\n');
  });

  it('says the current folder is gone when it was deleted, and runs on an absolute --config all the same', async () => {
    world = await startWorld();
    const config = world.writeConfig();
    const gone = join(world.dir, 'gone');
    mkdirSync(gone);
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--dry-run', '--log-format', 'text'], gone, {}, { removeCwd: true });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the current folder no longer exists (it was deleted or moved)');
    expect(r.stderr).not.toMatch(/uv_cwd|\n\s+at /);
    mkdirSync(gone);
    const withConfig = await runCli(['export-events', '--config', config, '--start', '2024-03-01', '--end', '2024-03-01', '--dry-run', '--log-format', 'text'], gone, {}, { removeCwd: true });
    expect(withConfig.code, withConfig.stderr).toBe(0);
  });

  it('stops with exit 1 on Amplitude 403, naming credentials and region', async () => {
    world = await startWorld();
    world.writeConfig();
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01'], world.dir, { AMPLITUDE_SECRET_KEY: 'not-the-secret-key-999' });
    expect(r.code).toBe(1);
    const err = logLines(r.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(/API key|secret key/i);
    // The test world pins the host (amplitude.exportBaseUrl): the region picks none, so the message names the URL.
    expect(err?.message).toMatch(/amplitude\.exportBaseUrl \(http:\/\/127\.0\.0\.1:\d+\) is not the Export API host of the project's data region \(amplitude\.region, "us", has no effect while it is set\)/);
    expect(r.stderr).not.toContain('not-the-secret-key-999');
  });

  it('stops with exit 1 when FME refuses the SDK key', async () => {
    world = await startWorld();
    seedDays(world, '2024-03-01', 1, 3);
    world.writeConfig();
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01'], world.dir, { FME_SDK_KEY: 'client-side-key-12345' });
    expect(r.code).toBe(1);
    expect(logLines(r.stderr).find((l) => l.level === 'error')?.message).toMatch(/SDK key/);
    expect(r.stderr).not.toContain('client-side-key-12345');
  });

  it('stops with exit 1 when the download cannot be spooled, naming the file, without retrying or leaving it behind', async () => {
    world = await startWorld();
    world.store.add(generateExportRows(h('20240301T05'), 3000, { users: 500 }));
    world.writeConfig();
    const spool = join(world.dir, 'spool');
    mkdirSync(spool);
    // A 32 KB file size limit (dash counts 512-byte blocks): the download fails as it would on a full disk.
    const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05'], world.dir, { TMPDIR: spool }, { fileSizeLimit: 64 });
    expect(r.code).toBe(1);
    const err = logLines(r.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(new RegExp(`^could not write ${spool}/amp-fme-export-\\d+-[^ ]+\\.zip: the file would be larger than .*\\(EFBIG\\)`));
    expect(r.stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
    expect(world.exportApi.requests.length).toBe(1); // a disk problem, not a network error to retry
    expect(world.fme.count).toBe(0);
    expect(readdirSync(spool)).toEqual([]);
  });

  it('leaves no lock behind when the disk cannot take it, so the next run is not told another one runs', async () => {
    world = await startWorld();
    world.store.add(generateExportRows(h('20240301T05'), 10, { users: 5 }));
    world.writeConfig();
    const args = ['export-events', '--start', '20240301T05', '--end', '20240301T05'];
    // No file may grow at all: the lock is the first file written.
    const full = await runCli(args, world.dir, {}, { fileSizeLimit: 0 });
    expect(full.code).toBe(1);
    const err = logLines(full.stderr).find((l) => l.level === 'error');
    expect(err?.message).toMatch(new RegExp(`^could not write ${world.dir}/\\.amp-fme/export-events-[0-9a-f]{16}\\.lock: .*\\(EFBIG\\)`));
    expect(readdirSync(join(world.dir, '.amp-fme'))).toEqual([]);
    const next = await runCli(args, world.dir);
    expect(next.code, next.stderr).toBe(0);
  });

  it('finishes with exit 3 and prints the dead-letter file when lines are bad', async () => {
    const hour = h('20240301T05');
    const lines = [
      '{"uuid":"a","event_type":"A","user_id":"user-1","event_time":"2024-03-01 05:00:00","server_upload_time":"2024-03-01 05:00:00"}',
      'not json at all',
      '{"uuid":"b","event_type":"B","user_id":"user-2","event_time":"2024-03-01 05:10:00","server_upload_time":"2024-03-01 05:10:00"}',
    ];
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? lines : []), entriesPerHour: 1 } });
    world.writeConfig();
    const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05', '--json'], world.dir);
    expect(r.code).toBe(3);
    const summary = JSON.parse(r.stdout) as { deadLetters: number; deadLetterFile: string; fmeEventsSent: number };
    expect(summary.deadLetters).toBe(1);
    expect(summary.fmeEventsSent).toBe(2);
    expect(summary.deadLetterFile.startsWith(join(world.dir, '.amp-fme', 'dead-letters', 'export-events-'))).toBe(true);
    expect(r.stderr).toContain(summary.deadLetterFile);
    const letter = JSON.parse(readFileSync(summary.deadLetterFile, 'utf8').trim()) as { reason: string; payload: string; source: { line: number } };
    expect(letter).toMatchObject({ reason: 'invalid_json', payload: 'not json at all', source: { line: 2 } });
  });

  it('says which dead letters could not be written, and names no file, when the dead-letter folder cannot be made', async () => {
    const hour = h('20240301T05');
    const lines = ['not json', '{"uuid":"a","event_type":"A","user_id":"user-1","event_time":"2024-03-01 05:00:00","server_upload_time":"2024-03-01 05:00:00"}'];
    world = await startWorld({ exportOptions: { source: (hourMs) => (hourMs === hour ? lines : []), entriesPerHour: 1 } });
    world.writeConfig();
    // A file where the dead-letter folder should be.
    mkdirSync(join(world.dir, '.amp-fme'), { recursive: true });
    writeFileSync(join(world.dir, '.amp-fme', 'dead-letters'), 'not a folder');
    const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05', '--json'], world.dir);
    expect(r.code).toBe(1);
    const summary = JSON.parse(r.stdout) as { deadLetters: number; deadLetterFile?: string };
    expect(summary.deadLetters).toBe(1);
    expect(summary.deadLetterFile).toBeUndefined();
    expect(r.stderr).toMatch(/1 record\(s\) of this run could not be written to the dead-letter file .*dead-letters\/export-events-.*\.ndjson \(.*\)\. No progress past them was recorded: running again reads them again/);
    expect(r.stderr).not.toMatch(/are in the dead-letter file/);
  });

  it('--dry-run reads and maps, sends nothing and writes no state', async () => {
    world = await startWorld();
    seedDays(world, '2024-03-01', 1, 5);
    world.writeConfig();
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--dry-run', '--json'], world.dir);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'dry-run', fmeEventsSent: 0 });
    expect(world.fme.requestCount).toBe(0);
    expect(existsSync(join(world.dir, '.amp-fme'))).toBe(false);
  });

  it('--output writes the FME events to the file, sends nothing, takes no lock and writes no state', async () => {
    world = await startWorld();
    const rows = seedDays(world, '2024-03-01', 1, 5);
    world.writeConfig();
    const out = join(world.dir, 'events.ndjson');
    const r = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--output', out, '--json'], world.dir);
    expect(r.code, r.stderr).toBe(0);
    const expected = rows.filter((x) => typeof x.user_id === 'string' && x.event_type !== 'get_treatment');
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'output', fmeEventsSent: 0 });
    expect(world.fme.requestCount).toBe(0);
    const stateDir = join(world.dir, '.amp-fme');
    const stateFiles = existsSync(stateDir) ? readdirSync(stateDir).filter((f) => /^export-events-.*\.(json|lock)$/.test(f)) : [];
    expect(stateFiles).toEqual([]);
    const written = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(written).toHaveLength(expected.length);
    expect(new Set(written.map((e) => e.key))).toEqual(new Set(expected.map((x) => x.user_id)));
    for (const e of written) expect(e).toMatchObject({ trafficTypeName: 'user', eventTypeId: expect.stringMatching(/^amp\./), timestamp: expect.any(Number) });

    // Nothing was recorded as delivered: the same range is then sent without --force, and FME gets what the file holds.
    const send = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01', '--json'], world.dir);
    expect(send.code, send.stderr).toBe(0);
    const sorted = (list: unknown[]): string[] => list.map((e) => JSON.stringify(e)).sort();
    expect(sorted(world.fme.events)).toEqual(sorted(written));
  });

  it('--output is not stopped by a lock another run holds, and leaves that lock and the state as they were', async () => {
    world = await startWorld();
    const rows = seedDays(world, '2024-03-01', 2, 5);
    const day2 = rows.filter((x) => String(x.server_upload_time).startsWith('2024-03-02') && typeof x.user_id === 'string' && x.event_type !== 'get_treatment');
    world.writeConfig();
    // A sending run makes the state file; its lock sits beside it.
    const first = await runCli(['export-events', '--start', '2024-03-01', '--end', '2024-03-01'], world.dir);
    expect(first.code, first.stderr).toBe(0);
    const stateDir = join(world.dir, '.amp-fme');
    const stateFile = readdirSync(stateDir).find((f) => /^export-events-.*\.json$/.test(f));
    expect(stateFile).toBeDefined();
    const statePath = join(stateDir, stateFile as string);
    const lockPath = statePath.replace(/\.json$/, '.lock');
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      const lockText = `${JSON.stringify({ pid: holder.pid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events --since-last-run' })}\n`;
      writeFileSync(lockPath, lockText);
      const stateBefore = readFileSync(statePath, 'utf8');
      const sentBefore = world.fme.requestCount;
      // The lock is live: a sending run is refused.
      const blocked = await runCli(['export-events', '--start', '2024-03-02', '--end', '2024-03-02'], world.dir);
      expect(blocked.code).toBe(75);

      const out = join(world.dir, 'day2.ndjson');
      const r = await runCli(['export-events', '--start', '2024-03-02', '--end', '2024-03-02', '--output', out, '--json'], world.dir);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'output', fmeEventsWritten: day2.length });
      const written = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { key: string });
      expect(day2.length).toBeGreaterThan(0);
      expect(written.map((e) => e.key).sort()).toEqual(day2.map((x) => x.user_id).sort());
      expect(world.fme.requestCount).toBe(sentBefore);
      expect(readFileSync(lockPath, 'utf8')).toBe(lockText);
      expect(readFileSync(statePath, 'utf8')).toBe(stateBefore);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
