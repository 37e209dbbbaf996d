import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { messageFor } from '../../src/cli/exit-codes.js';
import { defaultConfig } from '../../src/config/defaults.js';
import { InterruptedError } from '../../src/errors.js';
import type { Config } from '../../src/config/types.js';
import { createMemoryLogger, silentLogger, type Logger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runRetry } from '../../src/pipeline/retry.js';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { FaultScript, type ForcedResponse } from '../../src/sandbox/faults.js';
import { createFmeEventsEmulator } from '../../src/sandbox/fme-events.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { tempDir } from '../helpers/temp-dir.js';

const SDK_KEY = 'retry-progress-sdk-key-1';
const AMPLITUDE_KEY = 'retry-progress-amplitude-key-1';
/** A FaultScript that also tells the test of each request the emulator receives (every request takes one `next()`). */
class WatchedFaults extends FaultScript {
  onRequest: (() => void) | undefined;
  override next(): ForcedResponse | undefined {
    this.onRequest?.();
    return super.next();
  }
}
const amplitudeFaults = new WatchedFaults();
const fme = createFmeEventsEmulator({ sdkKey: SDK_KEY });
const amplitude = createAmplitudeIngestionEmulator({ apiKey: AMPLITUDE_KEY, faults: amplitudeFaults });
let server: RunningServer;
beforeAll(async () => {
  server = await startServer([fme.route, amplitude.route]);
});
afterAll(async () => server.close());
afterEach(() => {
  amplitudeFaults.onRequest = undefined;
});

/** A dead-letter file of `count` FME events that FME had rejected (user-N on line N), and a config that sends to the emulator. */
/** Adds to `file` the dead letter of one Amplitude event (a file of both commands), and gives `config` Amplitude's key and emulator. */
function addAmplitudeLetter(file: string, config: Config, userId: string, insertId: string): void {
  const event = { user_id: userId, event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: insertId, event_properties: { flag: 'f', treatment: 'on' } };
  writeFileSync(file, `${readFileSync(file, 'utf8')}${JSON.stringify({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: event })}\n`);
  config.amplitude.apiKey = AMPLITUDE_KEY;
  config.amplitude.ingestionBaseUrl = server.url;
}

function rejectedBatchFile(dir: string, count = 3): { file: string; config: Config } {
  const file = join(dir, 'old.ndjson');
  const letters = Array.from({ length: count }, (_, n) => n + 1).map((i) => ({
    command: 'export-events',
    reason: 'fme_rejected',
    retriable: true,
    payload: { eventTypeId: 'amp.A', trafficTypeName: 'user', key: `user-${i}`, timestamp: 1_709_287_200_000 + i },
  }));
  writeFileSync(file, `${letters.map((l) => JSON.stringify(l)).join('\n')}\n`);
  const config = defaultConfig();
  config.fme.sdkKey = SDK_KEY;
  config.fme.eventsBaseUrl = `${server.url}/api`;
  return { file, config };
}

/** A dead-letter file of one push-impressions record with `payload`, and a config that sends to the Amplitude emulator. */
function amplitudeLetterFile(dir: string, reason: string, payload: unknown): { file: string; config: Config } {
  const file = join(dir, 'push.ndjson');
  writeFileSync(file, `${JSON.stringify({ command: 'push-impressions', reason, retriable: true, payload })}\n`);
  const config = defaultConfig();
  config.amplitude.apiKey = AMPLITUDE_KEY;
  config.amplitude.ingestionBaseUrl = server.url;
  return { file, config };
}

describe('an interrupted retry', () => {
  it('records as done only the lines it handled, so the next retry re-sends every record exactly once', async () => {
    const dir = tempDir('retry-progress');
    const { file, config } = rejectedBatchFile(dir);
    const retry = (signal?: AbortSignal) =>
      runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false, signal });

    // Interrupted before the first line: nothing is sent, and nothing is marked as done.
    const stop = new AbortController();
    stop.abort();
    const first = await retry(stop.signal);
    expect(first.resent.fme).toBe(0);
    expect(fme.count).toBe(0);
    expect(existsSync(file)).toBe(true);
    const progress = `${file}.retry-progress.json`;
    expect(JSON.parse(readFileSync(progress, 'utf8'))).toMatchObject({ linesDone: 0 });

    const second = await retry();
    expect(second.alreadyHandled).toBe(0);
    expect(second.resent.fme).toBe(3);
    expect(fme.events.map((e) => e.key)).toEqual(['user-1', 'user-2', 'user-3']);
    expect(second.renamedTo).toBe(`${file}.retried`);
  });

  it('removes the progress temp files that retries killed while writing it left', async () => {
    const dir = tempDir('retry-stale-temps');
    const { file, config } = rejectedBatchFile(dir);
    const stale = `${file}.retry-progress.json.4242.tmp`;
    writeFileSync(stale, '{"version":1,"lines');
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false });
    expect(s.resent.fme).toBe(3);
    expect(existsSync(stale)).toBe(false);
  });

  it('has what still fails on disk before each progress write counts those lines as done', async () => {
    const dir = tempDir('retry-durable');
    // Six records, user-N on line N, re-sent two at a time: three progress writes, each after a batch with a refusal.
    const { file, config } = rejectedBatchFile(dir, 6);
    config.exportEvents.batchSize = 2;
    // Each batch is refused whole, then one of its two events is refused alone: user-2, user-3 and user-6 still fail.
    const bad = { status: 400, body: '{"message":"bad event"}' };
    const ok = { status: 202, afterProcessing: true };
    fme.faults.push(bad).push(ok).push(bad).push(bad).push(bad).push(ok).push(bad).push(ok).push(bad);
    const progressPath = `${file}.retry-progress.json`;
    const lineOf = (key: string): number => Number(key.replace('user-', ''));
    const keysIn = (text: string): string[] => text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { payload: { key: string } }).payload.key);
    /**
     * What a crash would leave, looked at whenever the retry next touches its dead letters (a write, or the sync before
     * a progress write): every record of a line the progress file counts as done must be in the file by then.
     */
    const looks: { at: string; linesDone: number; due: string[]; inFile: string[] }[] = [];
    const dl = new (class extends DeadLetterWriter {
      private readonly written: string[] = [];
      private look(at: string): void {
        const linesDone = existsSync(progressPath) ? (JSON.parse(readFileSync(progressPath, 'utf8')) as { linesDone: number }).linesDone : 0;
        const inFile = existsSync(this.path) ? keysIn(readFileSync(this.path, 'utf8')) : [];
        looks.push({ at, linesDone, due: this.written.filter((k) => lineOf(k) <= linesDone), inFile });
      }
      override write(letter: Parameters<DeadLetterWriter['write']>[0]): void {
        this.look('write');
        this.written.push((letter.payload as { key: string }).key);
        super.write(letter);
      }
      override sync(): void {
        this.look('sync');
        super.sync();
      }
    })(join(dir, 'new.ndjson'), 'retry');
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: dl, force: false });
    await dl.close();
    expect(s.resent.fme).toBe(3);
    expect(s.stillFailing).toEqual({ fme_rejected: 3 });
    expect(keysIn(readFileSync(dl.path, 'utf8'))).toEqual(['user-2', 'user-3', 'user-6']);
    expect(looks.filter((l) => l.due.some((k) => !l.inFile.includes(k)))).toEqual([]);
    // Not vacuous: progress was seen covering lines with records still failing, after the first and second writes.
    expect(looks.filter((l) => l.due.length > 0).map((l) => l.linesDone)).toEqual(expect.arrayContaining([2, 4]));
  });

  it('lets the request in flight finish when stopped, as SIGINT promises, instead of cancelling it', async () => {
    const dir = tempDir('retry-stop');
    const event = { user_id: 'user-00042', event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: 'fme-abc123', event_properties: { flag: 'f', treatment: 'on' } };
    const { file, config } = amplitudeLetterFile(dir, 'amplitude_daily_quota', event);
    // The stop comes as Amplitude receives the request, whose answer comes a little later.
    const stop = new AbortController();
    amplitudeFaults.onRequest = () => stop.abort('SIGINT received');
    amplitude.faults.push({ status: 200, afterProcessing: true, delayMs: 100 });
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false, signal: stop.signal });
    expect(s.resent.amplitudeEvents).toBe(1);
    expect(amplitude.events.map((e) => e.insert_id)).toEqual(['fme-abc123']);
    expect(stop.signal.aborted).toBe(true);
    expect(JSON.parse(readFileSync(`${file}.retry-progress.json`, 'utf8'))).toMatchObject({ linesDone: 1 });
  });

  it('ends a wait between attempts when stopped, as an interruption that records nothing', async () => {
    const dir = tempDir('retry-stop-wait');
    const { file, config } = rejectedBatchFile(dir);
    config.http.retryBaseDelayMs = 60_000;
    config.http.retryMaxDelayMs = 60_000;
    fme.faults.push({ status: 503 });
    // The stop comes once the wait has begun: just after the retry says it will try again.
    const stop = new AbortController();
    const logger: Logger = {
      ...silentLogger,
      warn: (message) => {
        if (message.startsWith('retrying')) setImmediate(() => stop.abort('SIGINT received'));
      },
    };
    const started = Date.now();
    const err = await runRetry({ config, file, logger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false, signal: stop.signal }).catch((e: unknown) => e);
    // The wait is 30 to 60 s (jitter on 60 s): the run did not sit it out.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(messageFor(err)).toMatch(/^stopped \(SIGINT received\) while waiting to try FME events API: HTTP 503 .* again; it was not delivered$/);
    expect(existsSync(`${file}.retry-progress.json`)).toBe(false);
  });

  it('sends a flush to FME last, so that a batch Amplitude fails does not make the next retry store FME events twice', async () => {
    const dir = tempDir('retry-mixed');
    // Dead letters of both commands in one file (dead-letter files put together to retry them at once).
    const { file, config } = rejectedBatchFile(dir, 2);
    addAmplitudeLetter(file, config, 'user-00044', 'fme-mixed-1');
    config.http.retries = 1;
    // Amplitude is down for the first retry: both its attempts fail.
    amplitude.faults.push({ status: 503 }, 2);
    const before = fme.count;
    const retry = (name: string) => runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, name), 'retry'), force: false });
    await expect(retry('new1.ndjson')).rejects.toThrow(/503/);
    expect(fme.count - before).toBe(0);

    const s = await retry('new2.ndjson');
    expect(s.resent).toEqual({ fme: 2, amplitudeEvents: 1, amplitudeIdentifications: 0 });
    expect(fme.events.slice(before).map((e) => e.key)).toEqual(['user-1', 'user-2']);
    expect(amplitude.events.filter((e) => e.insert_id === 'fme-mixed-1')).toHaveLength(1);
  });

  it('sends nothing more once stopped: a flush stopped during its Amplitude request does not send its FME batch after it', async () => {
    const dir = tempDir('retry-stop-mixed');
    const { file, config } = rejectedBatchFile(dir, 2);
    addAmplitudeLetter(file, config, 'user-00045', 'fme-mixed-stop');
    // The stop comes as Amplitude (sent first) receives its request, which then finishes.
    const stop = new AbortController();
    amplitudeFaults.onRequest = () => stop.abort('SIGINT received');
    const before = fme.count;
    const dl = new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry');
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: dl, force: false, signal: stop.signal });
    await dl.close();
    expect(s.resent).toEqual({ fme: 0, amplitudeEvents: 1, amplitudeIdentifications: 0 });
    expect(fme.count - before).toBe(0);
    expect(s.notSent).toBe(2);
    const letters = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; retriable: boolean; payload: { key: string } });
    expect(letters.map((l) => [l.reason, l.retriable, l.payload.key])).toEqual([['fme_not_sent', true, 'user-1'], ['fme_not_sent', true, 'user-2']]);
    // Their lines count as done: they are in the new file, and the same retry run again does not send them too.
    expect(JSON.parse(readFileSync(`${file}.retry-progress.json`, 'utf8'))).toMatchObject({ linesDone: 3 });
    expect(s.renamedTo).toBeUndefined();
  });

  it('re-sends identifications with a warning that they may put older treatments back', async () => {
    const dir = tempDir('retry-identify');
    const { file, config } = amplitudeLetterFile(dir, 'amplitude_throttled', { user_id: 'user-00043', user_properties: { checkout: 'on' } });
    const logger = createMemoryLogger();
    const s = await runRetry({ config, file, logger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false });
    expect(s.resent.amplitudeIdentifications).toBe(1);
    expect(amplitude.userProperties.get('user-00043')).toEqual({ checkout: 'on' });
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([expect.stringContaining('this retry puts the older ones back')]);
  });

  it('keeps each request of identifications under the Identify limit, counting them form-encoded as they are sent', async () => {
    const dir = tempDir('retry-identify-size');
    const { file, config } = amplitudeLetterFile(dir, 'amplitude_daily_quota', null);
    // 1000 users with 40 flags each: about 1 KB of JSON per identification, and about 1.6 KB form-encoded.
    const flags = Object.fromEntries(Array.from({ length: 40 }, (_, f) => [`fme.flag_number_${f}`, 'on']));
    const letters = Array.from({ length: 1000 }, (_, u) => ({ command: 'push-impressions', reason: 'amplitude_daily_quota', retriable: true, payload: { user_id: `user-size-${u}`, user_properties: { $set: flags } } }));
    writeFileSync(file, `${letters.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const before = amplitude.requests.length;
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false });
    expect(s.resent.amplitudeIdentifications).toBe(1000);
    const requests = amplitude.requests.slice(before);
    // Not one refused as too large (413) and split: each request within the 800 KB push-impressions keeps to.
    expect(requests.map((r) => r.status)).not.toContain(413);
    expect(Math.max(...requests.map((r) => r.bytes))).toBeLessThanOrEqual(800_000);
  });

  it('re-sends the rest of a batch FME refuses for one event, and keeps only that one failing', async () => {
    const dir = tempDir('retry-split');
    const { file, config } = rejectedBatchFile(dir);
    // FME refuses every request holding user-2: all three, then [user-2, user-3], then user-2 alone.
    const bad = { status: 400, body: '{"message":"bad event"}' };
    const ok = { status: 202, afterProcessing: true };
    fme.faults.push(bad).push(ok).push(bad, 2).push(ok);
    const dl = new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry');
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: dl, force: false });
    await dl.close();
    expect(s.resent.fme).toBe(2);
    expect(s.stillFailing).toEqual({ fme_rejected: 1 });
    const failing = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { payload: { key: string } }).payload.key);
    expect(failing).toEqual(['user-2']);
  });

  it('records a refused batch it stopped sending in parts as done, so the next retry sends none of it again', async () => {
    const dir = tempDir('retry-split-stop');
    const { file, config } = rejectedBatchFile(dir);
    config.http.retries = 1;
    config.http.retryBaseDelayMs = 1;
    // Refused whole; user-1 goes in; FME fails the rest until the retries run out.
    fme.faults.push({ status: 400, body: '{"message":"bad event"}' }).push({ status: 202, afterProcessing: true }).push({ status: 503 }, 2);
    const before = fme.count;
    const dl = new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry');
    await expect(runRetry({ config, file, logger: silentLogger, deadLetters: dl, force: false })).rejects.toThrow(/503/);
    await dl.close();
    expect(fme.count - before).toBe(1);
    expect(JSON.parse(readFileSync(`${file}.retry-progress.json`, 'utf8'))).toMatchObject({ linesDone: 3 });
    const notSent = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; payload: { key: string } });
    expect(notSent.map((l) => [l.reason, l.payload.key])).toEqual([['fme_not_sent', 'user-2'], ['fme_not_sent', 'user-3']]);
    const again = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new2.ndjson'), 'retry'), force: false });
    expect(again.resent.fme).toBe(0);
    expect(fme.count - before).toBe(1);
  });
});
