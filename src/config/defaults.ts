import type { Config } from './types.js';

export const DEFAULT_FME_EVENTS_BASE_URL = 'https://events.split.io/api';

export function defaultConfig(): Config {
  return {
    amplitude: {
      region: 'us',
      apiKey: undefined,
      secretKey: undefined,
      exportBaseUrl: undefined,
      ingestionBaseUrl: undefined,
      minIdLength: undefined,
    },
    fme: { sdkKey: undefined, eventsBaseUrl: DEFAULT_FME_EVENTS_BASE_URL },
    exportEvents: {
      windowHours: 24,
      startAt: undefined,
      lagHours: 3,
      identities: [{ trafficType: 'user', from: 'user_id' }],
      eventTypePrefix: 'amp.',
      valueFrom: undefined,
      properties: ['event_properties.*'],
      includeEventTypes: [],
      // FME's own impressions come back from Amplitude as get_treatment: sending them to FME would loop.
      excludeEventTypes: ['get_treatment'],
      // FME's own tools send 500-5000 events per request and advise payloads under 1 MB (specs/fme.md):
      // with typical events of a few hundred bytes, batchBytes is what closes a batch. Fewer, fuller
      // requests mean fewer state writes and less per-request work (the benchmark: ~3,800 events a batch).
      batchSize: 5000,
      batchBytes: 900_000,
      concurrency: 4,
      workers: undefined,
    },
    pushImpressions: {
      mode: 'event',
      api: 'batch',
      identity: 'user_id',
      eventType: 'get_treatment',
      propertyNames: {
        flag: 'flag',
        treatment: 'treatment',
        label: 'label',
        changeNumber: 'change_number',
        environment: 'environment',
        bucketingKey: 'bucketing_key',
      },
      userPropertyPrefix: '',
      coalesce: 'none',
      // The most a request may carry (specs/amplitude.md: Batch takes 2000 events, HTTP V2 fewer than 2000
      // and Identify is capped at 1000 by the client): half the requests of 1000 each, which made the
      // benchmark 10-14% faster, per-request work on both ends being what halves.
      batchSize: 2000,
      concurrency: 4,
      workers: undefined,
      // specs/amplitude.md: pause a throttled id ~30 s on HTTP V2, ~15 s on Batch and Identify.
      throttleDelayMs: { httpapi: 30_000, batch: 15_000, identify: 15_000 },
    },
    http: {
      timeoutMs: 60_000,
      // Exports can be silent for minutes while Amplitude builds the zip (specs/amplitude.md).
      exportTimeoutMs: 300_000,
      retries: 6,
      retryBaseDelayMs: 1000,
      retryMaxDelayMs: 60_000,
    },
    state: { dir: '.amp-fme' },
    log: { format: undefined, level: 'info' },
  };
}
