import type { Impression, ImpressionShape } from './types.js';

/** Receives what one record holds: impressions, and the parts that could not be used (with the reason). */
export interface ShapeSink {
  impression(imp: Impression, shape: ImpressionShape, item: number | undefined): void;
  invalid(reason: InvalidReason, detail: string, payload: unknown, item: number | undefined): void;
}

export type InvalidReason = 'unknown_shape' | 'missing_field' | 'invalid_field';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys are strings in every SDK; a whole number is accepted as its decimal text (some dumps carry numeric keys). */
function asId(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  return undefined;
}

/**
 * Whether an id is a number that JSON.parse may not have read exactly: from 2^53 on it is rounded to a
 * neighbour (two users' ids could become one), and a fraction such as `1.50` would come back as other text.
 * (Whole numbers written another way, `1e3` or `1.0`, are taken as their value's digits.)
 */
function inexactId(v: unknown): boolean {
  return typeof v === 'number' && !Number.isSafeInteger(v);
}

function asText(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A value as JSON text for a message, cut to 80 characters. */
function shortJson(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}

/** Impression properties arrive as a JSON string (specs/fme.md); some tools already decoded them. */
function parseProperties(v: unknown): Record<string, unknown> | undefined | 'invalid' {
  if (v === undefined || v === null || v === '') return undefined;
  if (isObj(v)) return v;
  if (typeof v !== 'string') return 'invalid';
  try {
    const parsed: unknown = JSON.parse(v);
    return isObj(parsed) ? parsed : 'invalid';
  } catch {
    return 'invalid';
  }
}

interface Fields {
  key: unknown;
  flag: unknown;
  treatment: unknown;
  time: unknown;
  label?: unknown;
  changeNumber?: unknown;
  bucketingKey?: unknown;
  environment?: unknown;
  properties?: unknown;
}

const FIELD_NAMES: Record<ImpressionShape, { key: string; flag: string; treatment: string; time: string }> = {
  webhook: { key: 'key', flag: 'split', treatment: 'treatment', time: 'time' },
  listener: { key: 'impression.keyName', flag: 'impression.feature', treatment: 'impression.treatment', time: 'impression.time' },
  bulk: { key: 'i[].k', flag: 'f', treatment: 'i[].t', time: 'i[].m' },
  grouped: { key: 'keyImpressions[].keyName', flag: 'testName', treatment: 'keyImpressions[].treatment', time: 'keyImpressions[].time' },
};

/** Impression times amp-fme takes: whole epoch milliseconds from 2000 to 2100 (FME's own are from its SDKs' clocks). */
const EARLIEST_TIME = Date.UTC(2000, 0, 1);
const LATEST_TIME = Date.UTC(2100, 0, 1);

/** What is wrong with an impression time, if anything: Amplitude takes whole epoch ms (specs/amplitude.md). */
function checkTime(time: number | undefined): string | undefined {
  if (time === undefined) return 'is not whole epoch milliseconds';
  // Before the whole-number check: seconds with a fraction (Python's time.time(), 1709251199.523) are seconds too, and
  // "not whole" alone would have the user round them and only then hear that they are seconds.
  if (time >= EARLIEST_TIME / 1000 && time < LATEST_TIME / 1000) return 'looks like epoch seconds: FME impression times are milliseconds';
  if (!Number.isInteger(time)) return 'is not whole epoch milliseconds';
  if (time < EARLIEST_TIME || time >= LATEST_TIME) return 'is not epoch milliseconds between 2000 and 2100';
  return undefined;
}

function build(f: Fields, shape: ImpressionShape, payload: unknown, item: number | undefined, sink: ShapeSink): void {
  const names = FIELD_NAMES[shape];
  const inexact = inexactId(f.key) ? names.key : inexactId(f.bucketingKey) ? 'bucketingKey' : undefined;
  if (inexact !== undefined) {
    const value = String(inexact === names.key ? f.key : f.bucketingKey);
    const why = `${inexact} is a number JSON cannot carry exactly (${value}): ids of 2^53 and more are rounded when read, so two users could become one. Write ids as strings`;
    sink.invalid('invalid_field', `${shape} impression: ${why}`, payload, item);
    return;
  }
  const key = asId(f.key);
  const flag = asText(f.flag);
  const treatment = asText(f.treatment);
  const noKey = key === undefined || key === '';
  const noFlag = flag === undefined || flag === '';
  const noTreatment = treatment === undefined || treatment === '';
  const noTime = f.time === undefined || f.time === null;
  if (noKey || noFlag || noTreatment || noTime) {
    // A field that is there with a value of another type (true, 1.5, an object) is not missing: say what it holds.
    const unusable = (
      [
        [noKey, names.key, f.key, 'text or a whole number'],
        [noFlag, names.flag, f.flag, 'text'],
        [noTreatment, names.treatment, f.treatment, 'text'],
      ] as const
    ).filter(([no, , v]) => no && v !== undefined && v !== null && v !== '');
    if (unusable.length > 0) {
      const said = unusable.map(([, name, v, want]) => `${name} is not ${want} (${shortJson(v)})`).join('; ');
      sink.invalid('invalid_field', `${shape} impression: ${said}`, payload, item);
      return;
    }
    const missing = [noKey && names.key, noFlag && names.flag, noTreatment && names.treatment, noTime && names.time].filter((n) => n !== false);
    sink.invalid('missing_field', `${shape} impression without ${missing.join(', ')}`, payload, item);
    return;
  }
  const time = asNumber(f.time);
  const timeProblem = checkTime(time);
  if (timeProblem !== undefined) {
    sink.invalid('invalid_field', `${shape} impression: ${names.time} ${timeProblem} (${JSON.stringify(f.time)})`, payload, item);
    return;
  }
  const imp: Impression = { key: key as string, flag: flag as string, treatment: treatment as string, time: time as number };
  const label = asText(f.label);
  if (label !== undefined && label !== '') imp.label = label;
  const changeNumber = asNumber(f.changeNumber);
  if (changeNumber !== undefined) imp.changeNumber = changeNumber;
  const bucketingKey = asId(f.bucketingKey);
  if (bucketingKey !== undefined && bucketingKey !== '') imp.bucketingKey = bucketingKey;
  const environment = asText(f.environment);
  if (environment !== undefined && environment !== '') imp.environment = environment;
  const props = parseProperties(f.properties);
  if (props === 'invalid') {
    sink.invalid('invalid_field', `${shape} impression: properties is not a JSON object`, payload, item);
    return;
  }
  if (props !== undefined) imp.properties = props;
  sink.impression(imp, shape, item);
}

/**
 * Recognises one parsed record as one of the four impression shapes of specs/fme.md and reports each
 * impression it holds. A grouped record (bulk `{f, i:[...]}`, listener `{impressions:[...]}`) holds many;
 * a record that is itself an array (one webhook body per NDJSON line) is read element by element.
 * `item` numbers the impressions inside a grouped or array record (0, 1, 2... in reading order), so dead
 * letters can point at them; it is undefined for a record that is one impression.
 */
export function readRecord(value: unknown, sink: ShapeSink): void {
  if (Array.isArray(value)) {
    const seq = { n: 0 };
    for (const el of value as unknown[]) readOne(el, sink, seq);
    return;
  }
  readOne(value, sink, undefined);
}

/** The item number of the next impression of an array record; undefined for a record that is one impression. */
function nextItem(seq: { n: number } | undefined): number | undefined {
  return seq ? seq.n++ : undefined;
}

function readOne(value: unknown, sink: ShapeSink, seq: { n: number } | undefined): void {
  if (!isObj(value)) {
    sink.invalid('unknown_shape', `not an impression object (${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value})`, value, nextItem(seq));
    return;
  }
  // 2. SDK impression listener (JS `feature`/`label`, Java `split`/`appliedRule`).
  const inner = value['impression'];
  if (isObj(inner)) {
    build(
      {
        key: inner['keyName'],
        flag: inner['feature'] ?? inner['split'],
        treatment: inner['treatment'],
        time: inner['time'],
        label: inner['label'] ?? inner['appliedRule'],
        changeNumber: inner['changeNumber'],
        bucketingKey: inner['bucketingKey'],
        properties: inner['properties'],
      },
      'listener',
      value,
      nextItem(seq),
      sink,
    );
    return;
  }
  // 3. SDK bulk (testImpressions), grouped by flag.
  if (Array.isArray(value['i']) && 'f' in value) {
    const flag = value['f'];
    const items = value['i'] as unknown[];
    const grouped = seq ?? { n: 0 };
    items.forEach((it: unknown) => {
      const item = grouped.n++;
      if (!isObj(it)) {
        sink.invalid('unknown_shape', 'bulk impression entry is not an object', { f: flag, i: it }, item);
        return;
      }
      build(
        { key: it['k'], flag, treatment: it['t'], time: it['m'], label: it['r'], changeNumber: it['c'], bucketingKey: it['b'], properties: it['properties'] },
        'bulk',
        { f: flag, i: it },
        item,
        sink,
      );
    });
    return;
  }
  // 4. Synchronizer/evaluator listener body, grouped by flag.
  if (Array.isArray(value['impressions'])) {
    const grouped = seq ?? { n: 0 };
    for (const group of value['impressions'] as unknown[]) {
      if (!isObj(group) || !Array.isArray(group['keyImpressions'])) {
        sink.invalid('unknown_shape', 'impressions[] entry without testName/keyImpressions', group, grouped.n++);
        continue;
      }
      const flag = group['testName'];
      for (const ki of group['keyImpressions'] as unknown[]) {
        const item = grouped.n++;
        if (!isObj(ki)) {
          sink.invalid('unknown_shape', 'keyImpressions entry is not an object', { testName: flag, keyImpression: ki }, item);
          continue;
        }
        build(
          {
            key: ki['keyName'],
            flag,
            treatment: ki['treatment'],
            time: ki['time'],
            label: ki['label'],
            changeNumber: ki['changeNumber'],
            bucketingKey: ki['bucketingKey'],
            properties: ki['properties'],
          },
          'grouped',
          { testName: flag, keyImpression: ki },
          item,
          sink,
        );
      }
    }
    return;
  }
  // 1. Impressions webhook object.
  if ('split' in value || ('key' in value && 'treatment' in value)) {
    build(
      {
        key: value['key'],
        flag: value['split'],
        treatment: value['treatment'],
        time: value['time'],
        label: value['label'],
        changeNumber: value['splitVersionNumber'] ?? value['changeNumber'],
        bucketingKey: value['bucketingKey'],
        environment: value['environmentName'],
        properties: value['properties'],
      },
      'webhook',
      value,
      nextItem(seq),
      sink,
    );
    return;
  }
  sink.invalid('unknown_shape', 'record matches none of the impression shapes (webhook, listener, bulk, grouped)', value, nextItem(seq));
}
