/** The resolved configuration: defaults < config file < environment < flags. See amp-fme.config.example.json. */

export type Region = 'us' | 'eu';

/** Identities per exported event at most: progress marks pack this many per line (pipeline/positions.ts). */
export const MAX_EXPORT_IDENTITIES = 16;

export interface IdentityRule {
  /** FME traffic type (lowercase), e.g. `user`, `anonymous`. */
  trafficType: string;
  /** Amplitude export field holding the key, e.g. `user_id`, `device_id`, `amplitude_id`. */
  from: string;
}

export interface AmplitudeConfig {
  region: Region;
  apiKey: string | undefined;
  secretKey: string | undefined;
  /** Overrides the Export API host (proxies, tests). */
  exportBaseUrl: string | undefined;
  /** Overrides the ingestion host for Batch, HTTP V2 and Identify (proxies, tests). */
  ingestionBaseUrl: string | undefined;
  /** Sent as `options.min_id_length` when ids are shorter than Amplitude's default 5. */
  minIdLength: number | undefined;
}

export interface FmeConfig {
  sdkKey: string | undefined;
  /** Base of the events API, `https://events.split.io/api` by default. */
  eventsBaseUrl: string;
}

export interface ExportEventsConfig {
  /** Hours per Export API request; windows never overlap. */
  windowHours: number;
  /** First upload hour for the very first `--since-last-run`. */
  startAt: string | undefined;
  /** Hours to wait after an hour ends before exporting it (data settles ~2 h after upload). */
  lagHours: number;
  identities: IdentityRule[];
  eventTypePrefix: string;
  /** Path of a numeric field for FME's `value`, e.g. `event_properties.revenue`. */
  valueFrom: string | undefined;
  /** Paths (with `*` wildcards) of fields copied into FME `properties`. */
  properties: string[];
  /** Event type globs to include; empty means all. */
  includeEventTypes: string[];
  /** Event type globs to leave out (applied after include). */
  excludeEventTypes: string[];
  batchSize: number;
  batchBytes: number;
  concurrency: number;
  /** Threads that parse and map export rows (0: the main thread does); unset: one per core but one, 1 to 4. */
  workers: number | undefined;
}

export type ImpressionIdentity = 'user_id' | 'device_id';
export type IngestionApi = 'batch' | 'httpapi';
export type PushMode = 'event' | 'identify';
export type CoalesceMode = 'none' | 'first';

export interface ImpressionPropertyNames {
  flag: string;
  treatment: string;
  label: string;
  changeNumber: string;
  environment: string;
  bucketingKey: string;
}

export interface PushImpressionsConfig {
  mode: PushMode;
  api: IngestionApi;
  identity: ImpressionIdentity;
  eventType: string;
  propertyNames: ImpressionPropertyNames;
  userPropertyPrefix: string;
  coalesce: CoalesceMode;
  /** Events (or identifications) per request; capped by the API's own limit. */
  batchSize: number;
  concurrency: number;
  /** Threads that parse and map impressions (0: the main thread does); unset: one per core but one, 1 to 4. */
  workers: number | undefined;
  /** How long to hold back throttled ids after a 429, per API, ms. */
  throttleDelayMs: { httpapi: number; batch: number; identify: number };
}

export interface HttpConfig {
  /** Inactivity timeout for ingestion and FME requests, ms. */
  timeoutMs: number;
  /** Inactivity timeout for Export API requests, ms (exports are slow). */
  exportTimeoutMs: number;
  retries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
}

export interface StateConfig {
  /** Directory for state, locks and dead letters. Relative paths resolve against the config file's folder. */
  dir: string;
}

export interface LogConfig {
  format: 'text' | 'json' | undefined;
  level: 'debug' | 'info' | 'warn' | 'error';
}

export interface Config {
  amplitude: AmplitudeConfig;
  fme: FmeConfig;
  exportEvents: ExportEventsConfig;
  pushImpressions: PushImpressionsConfig;
  http: HttpConfig;
  state: StateConfig;
  log: LogConfig;
}

export const AMPLITUDE_HOSTS: Record<Region, { export: string; ingestion: string }> = {
  us: { export: 'https://amplitude.com', ingestion: 'https://api2.amplitude.com' },
  eu: { export: 'https://analytics.eu.amplitude.com', ingestion: 'https://api.eu.amplitude.com' },
};

export function exportBaseUrl(c: AmplitudeConfig): string {
  return (c.exportBaseUrl ?? AMPLITUDE_HOSTS[c.region].export).replace(/\/+$/, '');
}

/** The FME events API base as the client uses it (no trailing slash): `…/api` and `…/api/` are one endpoint. */
export function fmeEventsBaseUrl(c: FmeConfig): string {
  return c.eventsBaseUrl.replace(/\/+$/, '');
}

export function ingestionBaseUrl(c: AmplitudeConfig): string {
  return (c.ingestionBaseUrl ?? AMPLITUDE_HOSTS[c.region].ingestion).replace(/\/+$/, '');
}
