import { defaultConfig } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';

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
