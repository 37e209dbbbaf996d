import { defaultConfig } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';
import type { Logger } from '../../src/log/logger.js';
import type { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import type { PushImpressionsOptions } from '../../src/pipeline/push-impressions.js';

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
export function pushRunOptions(
  base: { config: Config; files: string[]; logger: Logger; deadLetters: DeadLetterWriter; cwd: string; now: number },
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
    now: () => base.now,
    ...over,
  };
}
