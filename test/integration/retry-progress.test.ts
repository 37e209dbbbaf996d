import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageFor } from '../../src/cli/exit-codes.js';
import { defaultConfig } from '../../src/config/defaults.js';
import { InterruptedError } from '../../src/errors.js';
import type { Config } from '../../src/config/types.js';
import { createMemoryLogger, silentLogger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runRetry } from '../../src/pipeline/retry.js';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { createFmeEventsEmulator } from '../../src/sandbox/fme-events.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { tempDir } from '../helpers/temp-dir.js';

const SDK_KEY = 'retry-progress-sdk-key-1';
const AMPLITUDE_KEY = 'retry-progress-amplitude-key-1';
const fme = createFmeEventsEmulator({ sdkKey: SDK_KEY });
const amplitude = createAmplitudeIngestionEmulator({ apiKey: AMPLITUDE_KEY });
let server: RunningServer;
beforeAll(async () => {
  server = await startServer([fme.route, amplitude.route]);
});
afterAll(async () => server.close());

/** A dead-letter file of three FME events that FME had rejected, and a config that sends to the emulator. */
function rejectedBatchFile(dir: string): { file: string; config: Config } {
  const file = join(dir, 'old.ndjson');
  const letters = [1, 2, 3].map((i) => ({
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

  it('has what still fails on disk before its progress counts those lines as done', async () => {
    const dir = tempDir('retry-durable');
    const { file, config } = rejectedBatchFile(dir);
    config.exportEvents.batchSize = 1;
    // FME rejects the first record, and the run is stopped as it fails, as by SIGTERM.
    const stop = new AbortController();
    fme.faults.push({ status: 400, body: '{"message":"bad event"}' });
    const dl = new (class extends DeadLetterWriter {
      override write(letter: Parameters<DeadLetterWriter['write']>[0]): void {
        super.write(letter);
        stop.abort();
      }
    })(join(dir, 'new.ndjson'), 'retry');
    await runRetry({ config, file, logger: silentLogger, deadLetters: dl, force: false, signal: stop.signal });
    const done = (JSON.parse(readFileSync(`${file}.retry-progress.json`, 'utf8')) as { linesDone: number }).linesDone;
    expect(done).toBeGreaterThanOrEqual(1);
    // Read before the writer is closed: what a crash at this moment would leave.
    const failing = readFileSync(dl.path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { payload: { key: string } }).payload.key);
    expect(failing[0]).toBe('user-1');
    await dl.close();
  });

  it('lets the request in flight finish when stopped, as SIGINT promises, instead of cancelling it', async () => {
    const dir = tempDir('retry-stop');
    const event = { user_id: 'user-00042', event_type: 'get_treatment', time: Date.now() - 60_000, insert_id: 'fme-abc123', event_properties: { flag: 'f', treatment: 'on' } };
    const { file, config } = amplitudeLetterFile(dir, 'amplitude_daily_quota', event);
    // The request takes 300 ms; the stop comes 50 ms into it.
    amplitude.faults.push({ status: 200, afterProcessing: true, delayMs: 300 });
    const stop = new AbortController();
    setTimeout(() => stop.abort('SIGINT received'), 50);
    const s = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false, signal: stop.signal });
    expect(s.resent.amplitudeEvents).toBe(1);
    expect(amplitude.events.map((e) => e.insert_id)).toEqual(['fme-abc123']);
    expect(JSON.parse(readFileSync(`${file}.retry-progress.json`, 'utf8'))).toMatchObject({ linesDone: 1 });
  });

  it('ends a wait between attempts when stopped, as an interruption that records nothing', async () => {
    const dir = tempDir('retry-stop-wait');
    const { file, config } = rejectedBatchFile(dir);
    config.http.retryBaseDelayMs = 60_000;
    config.http.retryMaxDelayMs = 60_000;
    fme.faults.push({ status: 503 });
    const stop = new AbortController();
    setTimeout(() => stop.abort('SIGINT received'), 100);
    const started = Date.now();
    const err = await runRetry({ config, file, logger: silentLogger, deadLetters: new DeadLetterWriter(join(dir, 'new.ndjson'), 'retry'), force: false, signal: stop.signal }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(messageFor(err)).toMatch(/^stopped \(SIGINT received\) while waiting to try FME events API: HTTP 503 .* again; it was not delivered$/);
    expect(existsSync(`${file}.retry-progress.json`)).toBe(false);
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
