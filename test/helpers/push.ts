import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';
import { createMemoryLogger, type Logger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runPushImpressions, type PushImpressionsOptions } from '../../src/pipeline/push-impressions.js';
import { createAmplitudeIngestionEmulator, type AmplitudeIngestionEmulatorOptions } from '../../src/sandbox/amplitude-ingestion.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { tempDir } from './temp-dir.js';

/** A push-impressions config aimed at an ingestion emulator, with retries and throttling waits of milliseconds. */
export function pushConfig(apiKey: string, ingestionBaseUrl: string, throttleMs: number, mut?: (c: Config) => void): Config {
  const c = defaultConfig();
  c.amplitude.apiKey = apiKey;
  c.amplitude.ingestionBaseUrl = ingestionBaseUrl;
  c.http.retries = 3;
  c.http.retryBaseDelayMs = 1;
  c.http.retryMaxDelayMs = 5;
  c.pushImpressions.throttleDelayMs = { httpapi: throttleMs, batch: throttleMs, identify: throttleMs };
  mut?.(c);
  return c;
}

/** Options for one event-mode Batch run of `runPushImpressions` in `cwd`; `over` changes any of them. */
function pushRunOptions(
  base: { config: Config; files: string[]; logger: Logger; deadLetters: DeadLetterWriter; cwd: string },
  over: Partial<PushImpressionsOptions> = {},
): PushImpressionsOptions {
  return {
    config: base.config,
    files: base.files,
    mode: 'event',
    api: 'batch',
    identity: 'user_id',
    coalesce: 'none',
    dryRun: false,
    logger: base.logger,
    deadLetters: base.deadLetters,
    cwd: base.cwd,
    ...over,
  };
}

/**
 * An Amplitude ingestion emulator on 127.0.0.1 for the test file that calls this at its top level, and a temp
 * folder for that file's dumps: started before its tests, closed after them, emptied after each test.
 */
export function ingestionTestBed(name: string, options: AmplitudeIngestionEmulatorOptions): {
  emulator: ReturnType<typeof createAmplitudeIngestionEmulator>;
  readonly url: string;
  readonly dir: string;
} {
  const emulator = createAmplitudeIngestionEmulator(options);
  let server: RunningServer | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    server = await startServer([emulator.route]);
    dir = tempDir(name);
  });
  afterAll(async () => server?.close());
  afterEach(() => emulator.reset());
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('ingestionTestBed: used before its beforeAll ran');
    return v;
  };
  return {
    emulator,
    get url() {
      return started(server).url;
    },
    get dir() {
      return started(dir);
    },
  };
}

/** A dead-letter record as a push-impressions run writes it. */
export interface PushDeadLetter {
  reason: string;
  detail?: string;
  status?: number;
  source?: Record<string, unknown>;
  retriable: boolean;
  payload: { user_id?: string };
}

let pushRunNo = 0;

/**
 * Starts one push-impressions run of `files` in `bed.dir` (event mode, Batch, unless `over` says otherwise),
 * with a dead-letter file of its own, closed when the run ends; `letters()` reads that file back.
 */
export function startPush(bed: { readonly dir: string }, files: string[], over: Partial<PushImpressionsOptions> & { config: Config }) {
  const deadLetters = new DeadLetterWriter(join(bed.dir, `dl-${++pushRunNo}.ndjson`), 'push-impressions');
  const logger = createMemoryLogger();
  const done = runPushImpressions(pushRunOptions({ config: over.config, files, logger, deadLetters, cwd: bed.dir }, over)).finally(() => deadLetters.close());
  const letters = (): PushDeadLetter[] =>
    existsSync(deadLetters.path) ? readFileSync(deadLetters.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PushDeadLetter) : [];
  return { done, letters, logger, deadLetters };
}

/** Writes `<bed.dir>/<name>`: one webhook impression for each of `users` users (user-00000...), in time order; returns `name`. */
export function usersDump(bed: { readonly dir: string }, name: string, users: number): string {
  const lines = Array.from({ length: users }, (_, i) => JSON.stringify({ key: `user-${String(i).padStart(5, '0')}`, split: 'f', treatment: 'on', time: 1700000000000 + i }));
  writeFileSync(join(bed.dir, name), `${lines.join('\n')}\n`);
  return name;
}

/** Aborts `stop` (as a SIGINT would) as soon as the emulator has received its first request; returns the cancel. */
export function stopOnFirstRequest(emulator: { readonly requests: readonly unknown[] }, stop: AbortController): () => void {
  const timer = setInterval(() => {
    if (emulator.requests.length > 0) {
      clearInterval(timer);
      stop.abort('SIGINT received');
    }
  }, 5);
  return () => clearInterval(timer);
}
