import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { startServer, type Route } from '../../src/sandbox/server.js';
import { tempDir } from '../helpers/temp-dir.js';
import { KEYS, logLines, runCli, startWorld, type World } from '../helpers/world.js';

/** An FME event as export-events maps it, for user `key`. */
const fmeEventOf = (key: string): Record<string, unknown> => ({ eventTypeId: 'amp.A', trafficTypeName: 'user', key, timestamp: 1_709_287_200_000 });
/** A dead-letter line of an FME event FME refused (re-sendable), for user `key`. */
const fmeLetter = (key: string): string => JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: fmeEventOf(key) });
/** An Amplitude event as push-impressions maps it, sent a minute ago. */
const amplitudeEvent = (): Record<string, unknown> => ({ user_id: 'user-00042', event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: 'fme-abc123' });

/**
 * A server in front of `w`'s FME emulator that holds the first events request until `release()` (later ones go
 * straight through): a run can then be caught with a request in flight. `arrivals()` counts events requests.
 */
async function holdFirstFmeRequest(w: World): Promise<{ gated: Awaited<ReturnType<typeof startServer>>; firstArrived: Promise<void>; release: () => void; arrivals: () => number }> {
  let arrivals = 0;
  let arrived!: () => void;
  const firstArrived = new Promise<void>((r) => (arrived = r));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const gateRoute: Route = async (req: IncomingMessage) => {
    if (req.method === 'POST' && (req.url ?? '').startsWith('/api/events')) {
      arrivals++;
      if (arrivals === 1) {
        arrived();
        await gate;
      }
    }
    return false;
  };
  const gated = await startServer([gateRoute, w.fme.route]);
  return { gated, firstArrived, release, arrivals: () => arrivals };
}

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('amp-fme retry (spawned)', () => {
  it('re-sends the events FME rejected, exactly once, and marks the file as retried', async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 60, { users: 50, treatmentShare: 0 })];
    world.store.add(rows);
    const wanted = rows.filter((r) => typeof r.user_id === 'string');
    world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1 } });
    // FME refuses the first batch of 10 whole and in every part it is split into (19 requests).
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const first = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(first.code).toBe(3);
    const { deadLetterFile, deadLetters } = JSON.parse(first.stdout) as { deadLetterFile: string; deadLetters: number };
    expect(deadLetters).toBe(10);
    expect(world.fme.count).toBe(wanted.length - 10);

    const retry = await runCli(['retry', deadLetterFile, '--json'], world.dir);
    expect(retry.code).toBe(0);
    const summary = JSON.parse(retry.stdout) as { resent: { fme: number }; deadLetters: number; renamedTo: string };
    expect(summary.resent.fme).toBe(10);
    expect(summary.deadLetters).toBe(0);
    const uuids = world.fme.events.map((e) => e.properties?.uuid);
    expect(uuids.length).toBe(wanted.length);
    expect(new Set(uuids).size).toBe(wanted.length);
    expect(existsSync(deadLetterFile)).toBe(false);
    expect(summary.renamedTo).toBe(`${deadLetterFile}.retried`);

    // A file already retried is not sent twice by accident.
    const again = await runCli(['retry', `${deadLetterFile}.retried`, '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already retried');
    expect(world.fme.count).toBe(wanted.length);
  });

  it("in a state.dir whose path has a space and a quote, the retry command the run suggests pastes into a shell as it is", async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 20, { users: 50, treatmentShare: 0 })];
    world.store.add(rows);
    world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1 }, state: { dir: "cron's state" } });
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    const first = await runCli(['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(first.code).toBe(3);
    const advice = logLines(first.stderr).find((l) => l.message.includes('could not be delivered'))?.message ?? '';
    const [, pasted] = /re-send them with: amp-fme retry (.+)$/.exec(advice) ?? [];
    expect(pasted).toBeDefined();
    const retry = await runCli(['retry', '--json'], world.dir, {}, { pasted: pasted as string });
    expect(retry.code, retry.stderr).toBe(0);
    expect((JSON.parse(retry.stdout) as { resent: { fme: number } }).resent.fme).toBe(10);
  });

  it("the retry command a run suggests carries the run's --config: pasted in another folder, it re-sends to the configured hosts", async () => {
    world = await startWorld();
    const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 20, { users: 50, treatmentShare: 0 })];
    world.store.add(rows);
    const config = world.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency: 1 } });
    world.fme.faults.push({ status: 400, body: '{"code":400,"message":"temporarily refusing"}' }, 19);
    // As cron runs it: the config given by path.
    const first = await runCli(['export-events', '--config', config, '--start', '20240301T10', '--end', '20240301T10', '--json'], world.dir);
    expect(first.code).toBe(3);
    const before = world.fme.count;
    const advice = logLines(first.stderr).find((l) => l.message.includes('could not be delivered'))?.message ?? '';
    const [, pasted] = /re-send them with: amp-fme retry (.+)$/.exec(advice) ?? [];
    expect(pasted).toBeDefined();
    // Pasted where the person reading the log is, not where cron ran: without the config the retry would go to the
    // production FME host (no network here: it would retry until killed).
    const elsewhere = tempDir('retry-elsewhere');
    const retry = runCli(['retry', '--json'], elsewhere, {}, { pasted: pasted as string });
    const killer = setTimeout(() => retry.child.kill('SIGKILL'), 15_000);
    const r = await retry;
    clearTimeout(killer);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { resent: { fme: number } }).resent.fme).toBe(10);
    expect(world.fme.count).toBe(before + 10);
  });

  it('a retry that finds no config file says it runs on the defaults', async () => {
    world = await startWorld();
    const elsewhere = tempDir('retry-noconfig');
    const file = join(elsewhere, 'old.ndjson');
    writeFileSync(file, `${JSON.stringify({ command: 'export-events', reason: 'invalid_json', retriable: false, payload: '{"broken' })}\n`);
    const r = await runCli(['retry', file, '--json'], elsewhere);
    expect(r.code).toBe(3);
    expect(logLines(r.stderr).filter((l) => l.level === 'warn').map((l) => l.message)[0]).toBe(
      `no config file found in ${elsewhere}: re-sending with the defaults (production hosts, amplitude.region "us"), not with the config of the run that wrote ${file}. Give that run's config with --config <file> (or cd to its folder).`,
    );
  });

  it('writes what still fails, and what cannot be re-sent, to a new dead-letter file (exit 3)', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'old.ndjson');
    const fmeEvent = fmeEventOf('user-1');
    writeFileSync(
      file,
      [
        JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: fmeEvent, source: { line: 4 } }),
        JSON.stringify({ command: 'export-events', reason: 'invalid_json', retriable: false, payload: '{"broken', source: { line: 9 } }),
        'this line is not a record',
      ].join('\n'),
    );
    world.fme.faults.push({ status: 400, body: 'still no' });
    const r = await runCli(['retry', file, '--json'], world.dir);
    expect(r.code).toBe(3);
    const s = JSON.parse(r.stdout) as { deadLetterFile: string; stillFailing: Record<string, number>; carriedOver: number; deadLetters: number; deadLettersRetriable: number };
    expect(s.stillFailing).toEqual({ fme_rejected: 1 });
    expect(s.carriedOver).toBe(2);
    expect(s).toMatchObject({ invalid: 1 });
    expect(s).toMatchObject({ deadLetters: 3, deadLettersRetriable: 1 });
    // The advice says how many of them a retry can re-send.
    expect(logLines(r.stderr).filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
      `${file} line 3 is not a dead-letter record retry can use (it is not JSON): it is not re-sent, and goes to the new dead-letter file as unreadable_dead_letter with the line as it was. Any more such lines are counted in the summary (invalid) and named in that file.`,
      `3 record(s) could not be delivered; they are in ${s.deadLetterFile}. 1 of them can be re-sent: fix the cause, then run: amp-fme retry ${s.deadLetterFile} --config ${join(world.dir, 'amp-fme.config.json')} (the other 2 cannot be re-sent as they are; the file gives each one's reason)`,
    ]);
    const lines = readFileSync(s.deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; command: string });
    expect(lines.map((l) => l.reason).sort()).toEqual(['fme_rejected', 'invalid_json', 'unreadable_dead_letter']);
    expect(lines.every((l) => l.command === 'retry')).toBe(true);
    expect(readFileSync(s.deadLetterFile, 'utf8')).not.toContain(KEYS.fmeSdkKey);

    // The new file, retried once FME takes the event: it is sent, and what cannot be re-sent is carried over again.
    const again = await runCli(['retry', s.deadLetterFile, '--json'], world.dir);
    const s2 = JSON.parse(again.stdout) as { resent: { fme: number }; stillFailing: Record<string, number>; carriedOver: number };
    expect(s2).toMatchObject({ resent: { fme: 1 }, stillFailing: {}, carriedOver: 2, deadLetters: 2, deadLettersRetriable: 0 });
    expect(again.code).toBe(3);
    expect(world.fme.events).toEqual([expect.objectContaining({ key: 'user-1' })]);
    // Nothing left that a retry could re-send: no advice to retry (it would only carry them over again).
    const warnings = logLines(again.stderr).filter((l) => l.level === 'warn').map((l) => l.message);
    expect(warnings).toEqual([expect.stringMatching(/^2 record\(s\) could not be delivered; they are in .*\. None of them can be re-sent as they are: the file gives each one's reason\.$/)]);
    expect(warnings.join('\n')).not.toContain('amp-fme retry');
  });

  it('refuses a file that is not a dead-letter file (exit 2) and leaves it where it is', async () => {
    world = await startWorld();
    // A key only in the config file, overridden by the environment, so not one the run would redact.
    const fileOnlySecret = 'fme-sdk-key-only-in-the-file-0123456789';
    const configPath = world.writeConfig({ fme: { sdkKey: fileOnlySecret } });
    const folder = join(world.dir, 'a-folder');
    mkdirSync(folder);
    const before = readdirSync(world.dir).sort();
    for (const target of [configPath, folder]) {
      const r = await runCli(['retry', target, '--json', '--log-format', 'text'], world.dir);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(` error ${target} is `);
      expect(r.stderr).toContain('not a dead-letter file');
      expect(r.stderr).toContain('state.dir/dead-letters/');
      expect(r.stderr).not.toMatch(/a bug|Unexpected error|\n\s+at /);
      expect(r.stderr).not.toContain(fileOnlySecret);
    }
    // The config file is not renamed, no lock or dead-letter file is made, and nothing is sent.
    expect(readdirSync(world.dir).sort()).toEqual(before);
    expect(readFileSync(configPath, 'utf8')).toContain(fileOnlySecret);
    expect(world.fme.count).toBe(0);
  });

  it('refuses a file whose records need a key that is not set (exit 2) before anything is sent, written or renamed', async () => {
    world = await startWorld();
    // One FME event a batch: FME's records would go out before the Amplitude record's key is needed.
    world.writeConfig({ exportEvents: { batchSize: 1 } });
    const file = join(world.dir, 'mixed.ndjson');
    const event = amplitudeEvent();
    const content = `${[
      fmeLetter('user-1'),
      fmeLetter('user-2'),
      JSON.stringify({ command: 'export-events', reason: 'invalid_json', retriable: false, payload: '{"broken' }),
      JSON.stringify({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: event }),
    ].join('\n')}\n`;
    writeFileSync(file, content);
    const before = readdirSync(world.dir, { recursive: true }).sort();
    const r = await runCli(['retry', file, '--json', '--log-format', 'text'], world.dir, { AMPLITUDE_API_KEY: undefined });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('set AMPLITUDE_API_KEY');
    expect(r.stderr).toContain(`${file} line 4 is a record to re-send to Amplitude); nothing was sent, written or renamed`);
    expect(r.stderr).not.toMatch(/a bug|Unexpected error|\n\s+at /);
    // The user's files as they were: no new dead-letter file, no progress file, not renamed; nothing sent.
    expect(world.fme.count).toBe(0);
    expect(readdirSync(world.dir, { recursive: true }).sort()).toEqual(before);
    expect(readFileSync(file, 'utf8')).toBe(content);
  });

  it('names every key the file needs that is not set at once, with the first line that needs each (exit 2)', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'both.ndjson');
    const event = amplitudeEvent();
    const content = `${fmeLetter('user-1')}\n${JSON.stringify({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: event })}\n`;
    writeFileSync(file, content);
    const r = await runCli(['retry', file, '--log-format', 'text'], world.dir, { AMPLITUDE_API_KEY: undefined, FME_SDK_KEY: undefined });
    expect(r.code).toBe(2);
    // One run tells both: fixing one key must not lead to a second refusal for the other.
    expect(r.stderr).toContain('(2 problems)');
    expect(r.stderr).toContain(`set FME_SDK_KEY`);
    expect(r.stderr).toContain(`${file} line 1 is a record to re-send to FME)`);
    expect(r.stderr).toContain('set AMPLITUDE_API_KEY');
    expect(r.stderr).toContain(`${file} line 2 is a record to re-send to Amplitude)`);
    expect(world.fme.count).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(content);
  });

  it('does not refuse for a missing key a record it would only carry over (no "reason": not one it re-sends)', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'odd.ndjson');
    const event = amplitudeEvent();
    writeFileSync(file, `${fmeLetter('user-1')}\n${JSON.stringify({ command: 'push-impressions', retriable: true, payload: event })}\n`);
    const r = await runCli(['retry', file, '--json'], world.dir, { AMPLITUDE_API_KEY: undefined });
    // The FME record is re-sent; the line without a reason is carried over (exit 3), as it is with the key set.
    expect(r.code, r.stderr).toBe(3);
    expect(world.fme.count).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ resent: { fme: 1 }, carriedOver: 1, invalid: 1 });
  });

  it('says a mistyped path is no dead-letter file (exit 2), without a stack trace, whatever the file system answers', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'old.ndjson');
    writeFileSync(file, 'x');
    // Under a file (ENOTDIR), a name longer than the file system takes (ENAMETOOLONG).
    for (const target of [join(file, 'more.ndjson'), join(world.dir, `${'x'.repeat(300)}.ndjson`)]) {
      const r = await runCli(['retry', target, '--log-format', 'text'], world.dir);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(target);
      expect(r.stderr).toContain('Nothing was sent, written or renamed.');
      expect(r.stderr).not.toMatch(/a bug|Unexpected error|\n\s+at /);
    }
  });

  it('re-sends Amplitude events set aside for the daily quota', async () => {
    const amplitude = createAmplitudeIngestionEmulator({ apiKey: KEYS.amplitudeApiKey });
    const server = await startServer([amplitude.route]);
    try {
      world = await startWorld();
      world.writeConfig({ amplitude: { ingestionBaseUrl: server.url } });
      const file = join(world.dir, 'push.ndjson');
      const event = { user_id: 'user-00042', event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: 'fme-abc123', library: 'amp-fme/0.1.0', event_properties: { flag: 'f', treatment: 'on' } };
      writeFileSync(file, `${JSON.stringify({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: event })}\n`);
      const r = await runCli(['retry', file, '--json'], world.dir);
      expect(r.code).toBe(0);
      expect(amplitude.count).toBe(1);
      expect(amplitude.events[0]).toMatchObject({ user_id: 'user-00042', insert_id: 'fme-abc123' });
    } finally {
      await server.close();
    }
  });

  it('a second retry of the same file while the first holds <file>.lock exits 75 and sends nothing', async () => {
    world = await startWorld();
    // The first request to FME is held here until the test lets it go, so the first retry holds its lock meanwhile;
    // later requests go straight to the FME emulator.
    const { gated, firstArrived, release, arrivals } = await holdFirstFmeRequest(world);
    try {
      // A timeout far beyond the test's own: the held request must not be given up on and sent again meanwhile.
      world.writeConfig({ fme: { eventsBaseUrl: `${gated.url}/api` }, http: { timeoutMs: 300_000 } });
      const file = join(world.dir, 'rejected.ndjson');
      const fmeEvent = fmeEventOf('user-1');
      writeFileSync(file, `${JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: fmeEvent, source: { line: 4 } })}\n`);
      const lockFile = `${file}.lock`;

      const first = runCli(['retry', file, '--json'], world.dir);
      await Promise.race([
        firstArrived,
        first.then((r) => {
          throw new Error(`the first retry ended (exit ${r.code}) before sending: ${r.stderr}`);
        }),
      ]);
      expect(JSON.parse(readFileSync(lockFile, 'utf8')).pid).toBe(first.child.pid);

      const second = await runCli(['retry', file, '--json', '--log-format', 'text'], world.dir);
      expect(second.code).toBe(75);
      expect(second.stdout).toBe('');
      expect(second.stderr).toContain(`another amp-fme run holds the lock ${lockFile}: pid ${first.child.pid}`);
      expect(second.stderr).toContain('This run did nothing');
      // Nothing sent by the second run, the file not renamed, the first run's lock left in place.
      expect(arrivals()).toBe(1);
      expect(world.fme.requests).toHaveLength(0);
      expect(existsSync(file)).toBe(true);
      expect(JSON.parse(readFileSync(lockFile, 'utf8')).pid).toBe(first.child.pid);

      release();
      const done = await first;
      expect(done.code).toBe(0);
      expect(JSON.parse(done.stdout)).toMatchObject({ resent: { fme: 1 }, renamedTo: `${file}.retried` });
      expect(arrivals()).toBe(1);
      expect(world.fme.events).toEqual([expect.objectContaining({ key: 'user-1' })]);
      expect(existsSync(lockFile)).toBe(false);
    } finally {
      release();
      await gated.close();
    }
  });

  it('sends nothing more after SIGINT: the batch read but not sent goes to the new file, and the next retries send each event once', async () => {
    world = await startWorld();
    // The first request to FME is held until the test lets it go: the retry gets SIGINT while it is in flight.
    const { gated, firstArrived, release, arrivals } = await holdFirstFmeRequest(world);
    try {
      world.writeConfig({ fme: { eventsBaseUrl: `${gated.url}/api` }, exportEvents: { batchSize: 2 }, http: { timeoutMs: 300_000 } });
      const file = join(world.dir, 'rejected.ndjson');
      // Two batches: user-1 and user-2 go out first; user-3 waits for its batch to fill.
      writeFileSync(file, `${['user-1', 'user-2', 'user-3'].map(fmeLetter).join('\n')}\n`);

      const run = runCli(['retry', file, '--json', '--log-format', 'text'], world.dir);
      await Promise.race([
        firstArrived,
        run.then((r) => {
          throw new Error(`the retry ended (exit ${r.code}) before sending: ${r.stderr}`);
        }),
      ]);
      // The stop is taken (the CLI logs it) while the request is still held; then the request is answered.
      const stopLogged = new Promise<void>((r) => run.child.stderr?.on('data', (d: string) => d.includes('SIGINT received') && r()));
      run.child.kill('SIGINT');
      await stopLogged;
      release();
      const r = await run;
      expect(r.code).toBe(1);
      // The request in flight was answered; the batch after it never went out.
      expect(arrivals()).toBe(1);
      expect(world.fme.events.map((e) => e.key)).toEqual(['user-1', 'user-2']);
      const s = JSON.parse(r.stdout) as { notSent: number; resent: { fme: number }; deadLetterFile: string; deadLettersByReason: Record<string, number> };
      expect(s).toMatchObject({ resent: { fme: 2 }, notSent: 1, deadLettersByReason: { fme_not_sent: 1 } });
      expect(r.stderr).toContain('the 1 record(s) read but not sent are in the new dead-letter file');
      expect(existsSync(file)).toBe(true);
      const notSent = readFileSync(s.deadLetterFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; retriable: boolean; payload: { key: string } });
      expect(notSent.map((l) => [l.reason, l.retriable, l.payload.key])).toEqual([['fme_not_sent', true, 'user-3']]);

      // The same retry again finds nothing left to send in its file; the new file sends user-3: each event once.
      const again = await runCli(['retry', file, '--json'], world.dir);
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ resent: { fme: 0 }, alreadyHandled: 3, renamedTo: `${file}.retried` });
      const rest = await runCli(['retry', s.deadLetterFile, '--json'], world.dir);
      expect(rest.code).toBe(0);
      expect(world.fme.events.map((e) => e.key)).toEqual(['user-1', 'user-2', 'user-3']);
    } finally {
      release();
      await gated.close();
    }
  });

  it('does not take a dead-letter file its run is still writing (exit 75), so no record is left in a file marked .retried', async () => {
    world = await startWorld();
    world.writeConfig();
    // A run under way (this process, as export-events would) has written its first dead letter, and goes on writing.
    const writer = new DeadLetterWriter(join(world.dir, '.amp-fme', 'dead-letters', 'export-events-20240301T110000Z-1.ndjson'), 'export-events');
    const letter = (key: string) => ({ reason: 'fme_rejected', retriable: true, payload: fmeEventOf(key) });
    writer.write(letter('user-1'));
    writer.sync();
    const file = writer.path;

    const during = await runCli(['retry', file, '--log-format', 'text'], world.dir);
    expect(during.code).toBe(75);
    expect(during.stderr).toContain(`another amp-fme run holds the lock ${file}.lock: pid ${process.pid}`);
    expect(world.fme.count).toBe(0);
    expect(existsSync(file)).toBe(true);
    expect(existsSync(`${file}.retried`)).toBe(false);

    // The run writes its last dead letter and ends: now the file is whole, and the retry sends all of it.
    writer.write(letter('user-2'));
    await writer.close();
    const after = await runCli(['retry', file, '--json'], world.dir);
    expect(after.code).toBe(0);
    expect(world.fme.events.map((e) => e.key)).toEqual(['user-1', 'user-2']);
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('refuses a file already renamed .retried (exit 2, nothing sent), and re-sends it with --force', async () => {
    world = await startWorld();
    world.writeConfig();
    const file = join(world.dir, 'once.ndjson');
    const fmeEvent = { eventTypeId: 'amp.B', trafficTypeName: 'user', key: 'user-2', timestamp: 1_709_287_200_000 };
    writeFileSync(file, `${JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: fmeEvent, source: { line: 1 } })}\n`);
    const firstRetry = await runCli(['retry', file, '--json'], world.dir);
    expect(firstRetry.code).toBe(0);
    const retried = `${file}.retried`;
    expect(existsSync(retried)).toBe(true);
    expect(world.fme.count).toBe(1);
    const before = readdirSync(world.dir).sort();

    const refused = await runCli(['retry', retried, '--json', '--log-format', 'text'], world.dir);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain(`${retried} was already retried`);
    expect(refused.stderr).toContain('Add --force to re-send it anyway.');
    expect(world.fme.count).toBe(1);
    // Refused before its lock is made: nothing new beside it, the file where it was.
    expect(readdirSync(world.dir).sort()).toEqual(before);
    // The same command again, on the name it had: said to be retried already, not "not found".
    const again = await runCli(['retry', file, '--log-format', 'text'], world.dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${file} was retried already: it is now once.ndjson.retried`);
    expect(again.stderr).not.toContain('not found');
    expect(world.fme.count).toBe(1);

    const forced = await runCli(['retry', retried, '--force', '--json'], world.dir);
    expect(forced.code).toBe(0);
    const s = JSON.parse(forced.stdout) as { resent: { fme: number }; renamedTo: string; deadLetters: number };
    expect(s).toMatchObject({ resent: { fme: 1 }, deadLetters: 0 });
    // Sent a second time, as --force warns, and the file keeps its .retried name (not .retried.retried).
    expect(world.fme.events.map((e) => e.key)).toEqual(['user-2', 'user-2']);
    expect(s.renamedTo).toBe(retried);
    expect(existsSync(retried)).toBe(true);
    expect(existsSync(`${retried}.retried`)).toBe(false);
    expect(existsSync(`${retried}.lock`)).toBe(false);
  });
});
