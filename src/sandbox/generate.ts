/**
 * Realistic generated data for the emulators, the tests, the benchmark and `amp-fme sandbox`: Amplitude
 * export rows with every one of the ~55 keys (specs/amplitude.md), and FME impressions. Deterministic for
 * a given seed, so a test or a benchmark run can be repeated exactly.
 */

/** Small fast seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EVENT_TYPES = [
  'Page Viewed',
  'Button Clicked',
  'Checkout Completed',
  'Add To Cart',
  'Search',
  '[Amplitude] Start Session',
  '[Amplitude] End Session',
  'Signup: Step 2',
  'Vidéo lue',
  '注文完了',
  'get_treatment',
];
const COUNTRIES = ['United States', 'Germany', 'France', 'Japan', 'Brazil', 'India'];
const PLATFORMS = ['Web', 'iOS', 'Android'];
const PLANS = ['free', 'pro', 'enterprise'];

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `2021-02-22 21:10:00.123000`: Amplitude's export time format (UTC, space separator, 6 fraction digits). */
export function amplitudeTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}000`;
}

export interface GenerateOptions {
  /** Distinct users; a third of the events are anonymous (user_id null). */
  users?: number;
  seed?: number;
  /** Share of `get_treatment` rows (FME's own impressions coming back). */
  treatmentShare?: number;
}

/**
 * `count` export rows uploaded during the hour starting at `hourMs`, as objects with the full key set.
 * Event times are a few seconds to minutes before upload; user properties carry a plan; event properties
 * are nested with arrays.
 */
export function* generateExportRows(hourMs: number, count: number, options: GenerateOptions = {}): Generator<Record<string, unknown>> {
  const rand = rng((options.seed ?? 1) * 100_003 + Math.floor(hourMs / 3_600_000));
  const users = options.users ?? 2000;
  const treatmentShare = options.treatmentShare ?? 0.03;
  for (let i = 0; i < count; i++) {
    const upload = hourMs + Math.floor((i / count) * 3_600_000);
    const eventTime = upload - Math.floor(rand() * 120_000);
    const userNo = Math.floor(rand() * users);
    const anonymous = rand() < 0.33;
    const eventType = rand() < treatmentShare ? 'get_treatment' : (EVENT_TYPES[Math.floor(rand() * (EVENT_TYPES.length - 1))] as string);
    const price = Math.round(rand() * 20000) / 100;
    const uuid = `${hourMs.toString(16)}-${i.toString(16).padStart(8, '0')}-4000-8000-${Math.floor(rand() * 2 ** 32).toString(16).padStart(12, '0')}`;
    yield {
      $insert_id: `ins-${uuid}`,
      $schema: 12,
      adid: null,
      amplitude_attribution_ids: null,
      amplitude_event_type: null,
      amplitude_id: 100_000_000 + userNo,
      app: 187520,
      city: 'Berlin',
      client_event_time: amplitudeTime(eventTime),
      client_upload_time: amplitudeTime(upload - 500),
      country: COUNTRIES[userNo % COUNTRIES.length],
      data: {},
      data_type: 'event',
      device_brand: null,
      device_carrier: null,
      device_family: 'Mac',
      device_id: `device-${userNo.toString(36)}-${(userNo * 7919).toString(36)}`,
      device_manufacturer: null,
      device_model: null,
      device_type: 'Mac',
      dma: null,
      event_id: i,
      event_properties:
        eventType === 'get_treatment'
          ? { flag: 'new_checkout', treatment: rand() < 0.5 ? 'on' : 'off' }
          : {
              price,
              currency: 'EUR',
              path: `/products/${Math.floor(rand() * 500)}`,
              cart: { items: Math.floor(rand() * 5), coupon: rand() < 0.1 ? 'SPRING' : null },
              tags: ['a', 'b'],
            },
      event_time: amplitudeTime(eventTime),
      event_type: eventType,
      global_user_properties: null,
      group_properties: {},
      groups: {},
      idfa: null,
      ip_address: '203.0.113.7',
      is_attribution_event: false,
      language: 'English',
      library: 'amplitude-ts/2.0.0',
      location_lat: null,
      location_lng: null,
      os_name: 'Chrome',
      os_version: '120',
      partner_id: null,
      paying: null,
      plan: {},
      platform: PLATFORMS[userNo % PLATFORMS.length],
      processed_time: amplitudeTime(upload + 1500),
      region: 'Berlin',
      sample_rate: null,
      server_received_time: amplitudeTime(upload - 200),
      server_upload_time: amplitudeTime(upload),
      session_id: eventTime - Math.floor(rand() * 600_000),
      source_id: null,
      start_version: '1.0.0',
      user_creation_time: amplitudeTime(hourMs - 86_400_000 * 30),
      user_id: anonymous ? null : `user-${String(userNo).padStart(6, '0')}`,
      user_properties: { plan: PLANS[userNo % PLANS.length], signup: { source: 'ads', week: userNo % 52 } },
      uuid,
      version_name: '1.4.2',
    };
  }
}

const FLAGS = ['new_checkout', 'search_v2', 'dark_mode', 'pricing_page_test', 'onboarding_flow'];
const TREATMENTS = ['on', 'off', 'control'];

export interface ImpressionOptions {
  users?: number;
  seed?: number;
  /** First and last impression time (epoch ms). */
  from: number;
  to: number;
  environment?: string;
}

/**
 * FME impressions as the webhook sends them (specs/fme.md shape 1), for the demo and the benchmark:
 * keys match `generateExportRows` users, so a demo shows the same people on both sides.
 */
export function* generateWebhookImpressions(count: number, options: ImpressionOptions): Generator<Record<string, unknown>> {
  const rand = rng((options.seed ?? 7) * 7_919);
  const users = options.users ?? 2000;
  const span = Math.max(1, options.to - options.from);
  for (let i = 0; i < count; i++) {
    const userNo = Math.floor(rand() * users);
    const flagNo = Math.floor(rand() * FLAGS.length);
    const key = `user-${String(userNo).padStart(6, '0')}`;
    yield {
      key,
      split: FLAGS[flagNo],
      environmentId: 'env-5e1a2b',
      environmentName: options.environment ?? 'Production',
      treatment: TREATMENTS[(userNo + flagNo) % (flagNo === 4 ? 3 : 2)],
      time: options.from + Math.floor((i / count) * span),
      bucketingKey: null,
      label: flagNo === 2 ? 'whitelisted' : 'default rule',
      machineName: 'web-1',
      machineIp: '10.0.0.7',
      splitVersionNumber: 1_700_000_000_000 + flagNo,
      sdk: 'nodejs',
      sdkVersion: '10.25.0',
      properties: i % 10 === 0 ? JSON.stringify({ page: '/checkout' }) : null,
    };
  }
}
