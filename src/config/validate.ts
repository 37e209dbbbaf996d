import { InvalidHourError, parseHourArg } from '../amplitude/hours.js';
import type { ConfigProblem } from '../errors.js';
import { redact } from '../http/redact.js';
import { defaultConfig } from './defaults.js';
import { MAX_EXPORT_IDENTITIES, type Config } from './types.js';

/**
 * Validates a raw config object (from a file) against the known keys, collecting every problem with its
 * dot path, unknown keys included (a typo must not silently fall back to a default). Returns the merged
 * config (defaults overlaid with what the file says) and the problems.
 */

type Check = (value: unknown, path: string, problems: ConfigProblem[]) => unknown;
interface Schema {
  [key: string]: Check | Schema;
}

const INVALID = Symbol('invalid');

function fail(problems: ConfigProblem[], path: string, message: string): typeof INVALID {
  problems.push({ path, message });
  return INVALID;
}

/** Text with no space, dot, slash or colon, with a digit, as long as a key: a key pasted into the wrong field is not echoed (a name like `user_properties_id` is). */
const KEY_LIKE = /^(?=.*\d)[A-Za-z0-9_+=-]{20,}$/;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') {
    if (KEY_LIKE.test(v.trim())) return `a ${v.length}-character value that looks like a key (not shown)`;
    return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  }
  if (typeof v === 'object') return 'an object';
  return String(v);
}

const str =
  (opts: { nonEmpty?: boolean; maxLength?: number; secret?: boolean } = {}): Check =>
  (v, path, problems) => {
    if (typeof v !== 'string') return fail(problems, path, `must be a string, got ${opts.secret ? typeof v : describe(v)}`);
    if (opts.nonEmpty && v.trim() === '') return fail(problems, path, 'must not be empty');
    if (opts.maxLength !== undefined && v.length > opts.maxLength) return fail(problems, path, `must be at most ${opts.maxLength} characters`);
    return v;
  };

/** A URL as messages may show it: a user name or password in it (`https://user:pass@proxy`) masked, as in all output. */
function describeUrl(v: unknown): string {
  return describe(typeof v === 'string' ? redact(v) : v);
}

const url =
  (opts: { credentials?: boolean } = {}): Check =>
  (v, path, problems) => {
    if (typeof v !== 'string') return fail(problems, path, `must be a URL string, got ${describeUrl(v)}`);
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      return fail(problems, path, `must be a URL like https://example.com, got ${describeUrl(v)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail(problems, path, `must be an http(s) URL, got ${describeUrl(v)}`);
    // new URL() takes a space at the end of "http://host " (it trims the text), but the request URL built on it
    // ("http://host /api/2/export") is invalid: every request would fail as a "network error", and be retried.
    if (/[\s\u0000-\u001f\u007f]/.test(v)) return fail(problems, path, 'holds a space, a tab or a line break (one at the end, pasted with the URL?): remove it');
    // got turns `user:pass@` into an Authorization header that replaces the one carrying the keys (the Export API's
    // Basic key pair, FME's SDK key): every request would be refused as if the key were wrong, and messages that
    // name the URL would print the password.
    if (!opts.credentials && (u.username !== '' || u.password !== '')) {
      return fail(problems, path, 'must not hold a user name or password (user:password@): they would replace the API key amp-fme sends in the Authorization header, so every request would be refused as with a wrong key (the value is not shown)');
    }
    return v;
  };

const int =
  (min: number, max: number): Check =>
  (v, path, problems) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) return fail(problems, path, `must be a whole number, got ${describe(v)}`);
    if (v < min || v > max) return fail(problems, path, `must be between ${min} and ${max}, got ${v}`);
    return v;
  };

const oneOf =
  <T extends string>(...values: T[]): Check =>
  (v, path, problems) => {
    if (typeof v !== 'string' || !values.includes(v as T)) return fail(problems, path, `must be one of ${values.map((x) => `"${x}"`).join(', ')}, got ${describe(v)}`);
    return v;
  };

const strArray =
  (opts: { nonEmptyItems?: boolean } = {}): Check =>
  (v, path, problems) => {
    if (!Array.isArray(v)) return fail(problems, path, `must be an array of strings, got ${describe(v)}`);
    let ok = true;
    v.forEach((item, i) => {
      if (typeof item !== 'string' || (opts.nonEmptyItems && item.trim() === '')) {
        fail(problems, `${path}[${i}]`, `must be a non-empty string, got ${describe(item)}`);
        ok = false;
      }
    });
    return ok ? v : INVALID;
  };

/** An hour as the --start flag takes it (parseHourArg, the same parser), so the config accepts what the flag does and nothing else. */
const hourText = (): Check => (v, path, problems) => {
  let ok = typeof v === 'string';
  let why: string | undefined;
  if (ok) {
    try {
      parseHourArg(v as string, 'start', path);
    } catch (err) {
      ok = false;
      if (err instanceof InvalidHourError) why = err.why;
    }
  }
  if (!ok) return fail(problems, path, `must be an upload hour like "20240301T00", "2024-03-01" or "2024-03-01T05:00:00Z", got ${describe(v)}${why !== undefined ? ` (${why})` : ''}`);
  return v;
};

const TRAFFIC_TYPE = /^[a-z0-9][-_a-z0-9]*$/;
const identities = (): Check => (v, path, problems) => {
  if (!Array.isArray(v) || v.length === 0) return fail(problems, path, 'must be a non-empty array of {"trafficType", "from"} objects');
  if (v.length > MAX_EXPORT_IDENTITIES) return fail(problems, path, `has ${v.length} identities; at most ${MAX_EXPORT_IDENTITIES} are supported`);
  let ok = true;
  v.forEach((item, i) => {
    const p = `${path}[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      fail(problems, p, `must be an object like {"trafficType": "user", "from": "user_id"}, got ${describe(item)}`);
      ok = false;
      return;
    }
    const rec = item as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      if (k !== 'trafficType' && k !== 'from') {
        fail(problems, `${p}.${k}`, 'unknown key (expected "trafficType" and "from")');
        ok = false;
      }
    }
    if (typeof rec.trafficType !== 'string' || !TRAFFIC_TYPE.test(rec.trafficType)) {
      fail(problems, `${p}.trafficType`, `must be a lowercase FME traffic type name like "user", got ${describe(rec.trafficType)}`);
      ok = false;
    }
    if (typeof rec.from !== 'string' || rec.from.trim() === '') {
      fail(problems, `${p}.from`, `must name an Amplitude field such as "user_id" or "device_id", got ${describe(rec.from)}`);
      ok = false;
    }
  });
  return ok ? v : INVALID;
};

const SCHEMA: Schema = {
  amplitude: {
    region: oneOf('us', 'eu'),
    apiKey: str({ nonEmpty: true, secret: true }),
    secretKey: str({ nonEmpty: true, secret: true }),
    exportBaseUrl: url(),
    // Batch, HTTP V2 and Identify carry the key in the body: a proxy's Basic credentials take nothing away.
    ingestionBaseUrl: url({ credentials: true }),
    minIdLength: int(1, 5),
  },
  fme: {
    sdkKey: str({ nonEmpty: true, secret: true }),
    eventsBaseUrl: url(),
  },
  exportEvents: {
    windowHours: int(1, 24 * 365),
    startAt: hourText(),
    lagHours: int(0, 24 * 30),
    identities: identities(),
    eventTypePrefix: (v, path, problems) => {
      if (typeof v !== 'string' || v.length > 40) return fail(problems, path, `must be a string of at most 40 characters, got ${describe(v)}`);
      // No `:`: event type ids are made to pass FME's stricter documented rule too (fme/rules.ts), which turns a
      // `:` into `_`, so a prefix with one would never be the prefix the FME metrics were defined on.
      if (v !== '' && !/^[a-zA-Z0-9][-_.a-zA-Z0-9]*$/.test(v)) return fail(problems, path, `may hold only letters, digits and - _ . and must start with a letter or digit (FME's stricter event type rule: no ":"), got ${describe(v)}`);
      return v;
    },
    valueFrom: str({ nonEmpty: true }),
    properties: strArray({ nonEmptyItems: true }),
    includeEventTypes: strArray({ nonEmptyItems: true }),
    excludeEventTypes: strArray({ nonEmptyItems: true }),
    // FME's SDKs and tools send 500-5000 events per request (specs/fme.md).
    batchSize: int(1, 5000),
    batchBytes: int(40_000, 1_000_000),
    concurrency: int(1, 64),
    workers: int(0, 64),
  },
  pushImpressions: {
    mode: oneOf('event', 'identify'),
    api: oneOf('batch', 'httpapi'),
    identity: oneOf('user_id', 'device_id'),
    eventType: str({ nonEmpty: true, maxLength: 1024 }),
    propertyNames: {
      flag: str({ nonEmpty: true, maxLength: 1024 }),
      treatment: str({ nonEmpty: true, maxLength: 1024 }),
      label: str({ nonEmpty: true, maxLength: 1024 }),
      changeNumber: str({ nonEmpty: true, maxLength: 1024 }),
      environment: str({ nonEmpty: true, maxLength: 1024 }),
      bucketingKey: str({ nonEmpty: true, maxLength: 1024 }),
    },
    userPropertyPrefix: (v, path, problems) => {
      const prefix = str({ maxLength: 200 })(v, path, problems);
      // A user property named `$...` is read as an operation (`$set`, `$unset`, ...; specs/amplitude.md): with such a
      // prefix every flag would be taken for an unknown operation and no user property set, while the run says sent.
      if (typeof prefix === 'string' && prefix.startsWith('$')) {
        return fail(problems, path, `must not start with "$": Amplitude reads user properties named "$..." as operations ($set, $unset, ...), so no flag would be set; got ${describe(v)}`);
      }
      return prefix;
    },
    coalesce: oneOf('none', 'first'),
    batchSize: int(1, 2000),
    concurrency: int(1, 64),
    workers: int(0, 64),
    throttleDelayMs: {
      httpapi: int(0, 600_000),
      batch: int(0, 600_000),
      identify: int(0, 600_000),
    },
  },
  http: {
    timeoutMs: int(100, 3_600_000),
    exportTimeoutMs: int(100, 3_600_000),
    retries: int(0, 100),
    retryBaseDelayMs: int(0, 600_000),
    retryMaxDelayMs: int(0, 3_600_000),
  },
  state: {
    dir: str({ nonEmpty: true }),
  },
  log: {
    format: oneOf('text', 'json'),
    level: oneOf('debug', 'info', 'warn', 'error'),
  },
};

function walk(raw: unknown, schema: Schema, target: Record<string, unknown>, path: string, problems: ConfigProblem[]): void {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ path: path || '(root)', message: `must be an object, got ${describe(raw)}` });
    return;
  }
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const p = path ? `${path}.${key}` : key;
    // Own keys only: `constructor`, `toString` or `__proto__` would otherwise find Object.prototype's members,
    // pass as known keys, and (for `__proto__`) write into Object.prototype itself.
    const node = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (key === '$schema' && !path) continue;
    if (node === undefined) {
      problems.push({ path: p, message: `unknown key (known keys here: ${Object.keys(schema).join(', ')})` });
      continue;
    }
    if (typeof node === 'function') {
      const checked = node(value, p, problems);
      if (checked !== INVALID) target[key] = checked;
    } else {
      const sub = (target[key] ??= {}) as Record<string, unknown>;
      walk(value, node, sub, p, problems);
    }
  }
}

/** Merges a raw file object over the defaults, collecting every problem. */
export function validateConfig(raw: unknown): { config: Config; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const config = defaultConfig();
  if (raw !== undefined) walk(raw, SCHEMA, config as unknown as Record<string, unknown>, '', problems);
  crossChecks(config, problems);
  return { config, problems };
}

function crossChecks(c: Config, problems: ConfigProblem[]): void {
  if (c.http.retryMaxDelayMs < c.http.retryBaseDelayMs) {
    problems.push({ path: 'http.retryMaxDelayMs', message: `must be at least http.retryBaseDelayMs (${c.http.retryBaseDelayMs})` });
  }
  const seen = new Set<string>();
  c.exportEvents.identities.forEach((id, i) => {
    const k = `${id.trafficType}\u0000${id.from}`;
    if (seen.has(k)) problems.push({ path: `exportEvents.identities[${i}]`, message: 'duplicates an earlier identity: each event would be sent twice' });
    seen.add(k);
  });
}

/** Every key path the schema knows, for the test that checks the example config documents them all. */
export function knownKeyPaths(schema: Schema = SCHEMA, prefix = ''): string[] {
  return Object.entries(schema).flatMap(([k, node]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    return typeof node === 'function' ? [p] : knownKeyPaths(node, p);
  });
}
