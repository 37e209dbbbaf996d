import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readRecord, type InvalidReason } from '../../src/impressions/shapes.js';
import type { Impression, ImpressionShape } from '../../src/impressions/types.js';

interface Got {
  imps: { imp: Impression; shape: ImpressionShape; item: number | undefined }[];
  bad: { reason: InvalidReason; detail: string; item: number | undefined }[];
}

function read(value: unknown): Got {
  const got: Got = { imps: [], bad: [] };
  readRecord(value, {
    impression: (imp, shape, item) => got.imps.push({ imp, shape, item }),
    invalid: (reason, detail, _payload, item) => got.bad.push({ reason, detail, item }),
  });
  return got;
}

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/impressions/${name}`, import.meta.url), 'utf8');

describe('impression shapes (specs/fme.md)', () => {
  it('1. webhook objects: environment, change number, bucketing key and parsed properties', () => {
    const arr = JSON.parse(fixture('webhook.json')) as unknown[];
    const first = read(arr[0]);
    expect(first.imps).toEqual([
      {
        shape: 'webhook',
        item: undefined,
        imp: {
          key: 'user-00001',
          flag: 'new_checkout',
          treatment: 'on',
          time: 1700000000000,
          label: 'default rule',
          changeNumber: 1699999999000,
          environment: 'Production',
          properties: { page: 'cart', flag: 'overridden' },
        },
      },
    ]);
    expect(read(arr[1]).imps[0]?.imp.bucketingKey).toBe('bk-2');
  });

  it('2. SDK listener objects, JS (feature/label) and Java (split/appliedRule)', () => {
    const [js1, js2] = fixture('listener-js.ndjson').trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(read(js1).imps[0]).toEqual({
      shape: 'listener',
      item: undefined,
      imp: { key: 'user-00010', flag: 'new_checkout', treatment: 'on', time: 1700000010000, label: 'default rule', changeNumber: 1699999999000, bucketingKey: 'user-00010' },
    });
    expect(read(js2).imps[0]?.imp.properties).toEqual({ source: 'listener' });
    const java = read(JSON.parse(fixture('listener-java.ndjson')));
    expect(java.imps[0]?.imp).toEqual({ key: 'user-00020', flag: 'search_v2', treatment: 'v1', time: 1700000020000, label: 'default rule', changeNumber: 1699999990000 });
  });

  it('3. bulk {f, i:[...]} groups expand to one impression per entry', () => {
    const arr = JSON.parse(fixture('bulk.json')) as unknown[];
    const g = read(arr[0]);
    expect(g.imps.map((x) => [x.shape, x.item, x.imp.key, x.imp.flag, x.imp.treatment, x.imp.time, x.imp.changeNumber, x.imp.label])).toEqual([
      ['bulk', 0, 'user-00030', 'new_checkout', 'on', 1700000030000, 1699999999000, 'default rule'],
      ['bulk', 1, 'user-00031', 'new_checkout', 'off', 1700000031000, 1699999999000, 'in segment beta'],
    ]);
    expect(g.imps[0]?.imp.bucketingKey).toBe('bk-30');
    expect(g.imps[1]?.imp.properties).toEqual({ ab: 1 });
  });

  it('4. grouped {impressions:[{testName, keyImpressions}]} bodies expand across flags', () => {
    const g = read(JSON.parse(fixture('grouped.ndjson')));
    expect(g.imps.map((x) => [x.shape, x.item, x.imp.key, x.imp.flag, x.imp.treatment])).toEqual([
      ['grouped', 0, 'user-00040', 'new_checkout', 'on'],
      ['grouped', 1, 'user-00041', 'new_checkout', 'off'],
      ['grouped', 2, 'user-00040', 'search_v2', 'v1'],
    ]);
  });

  it('an array record (a webhook body on one line) is read element by element', () => {
    const g = read(JSON.parse(fixture('webhook.json')));
    expect(g.imps.map((x) => [x.item, x.imp.key])).toEqual([[0, 'user-00001'], [1, 'user-00002'], [2, 'user-00003']]);
  });

  it('names what is missing or wrong, and keeps the valid siblings of a group', () => {
    expect(read({ key: 'user-1', split: 'f', time: 1 }).bad).toEqual([{ reason: 'missing_field', detail: 'webhook impression without treatment', item: undefined }]);
    // There, but not usable: said as what it holds, not as missing.
    expect(read({ key: true, split: 'f', treatment: { on: 1 }, time: 1 }).bad).toEqual([
      { reason: 'invalid_field', detail: 'webhook impression: key is not text or a whole number (true); treatment is not text ({"on":1})', item: undefined },
    ]);
    expect(read({ key: ['user-1'], split: 'f', treatment: 'on', time: 1 }).bad[0]?.detail).toBe('webhook impression: key is not text or a whole number (["user-1"])');
    expect(read({ impression: { feature: 'f', treatment: 'on' } }).bad[0]?.detail).toBe('listener impression without impression.keyName, impression.time');
    expect(read({ key: 'user-1', split: 'f', treatment: 'on', time: 'yesterday' }).bad[0]?.reason).toBe('invalid_field');
    expect(read({ key: 'user-1', split: 'f', treatment: 'on', time: 1700000000000, properties: '{not json' }).bad[0]?.detail).toMatch(/properties/);
    expect(read({ hello: 'world' }).bad[0]?.reason).toBe('unknown_shape');
    expect(read(42).bad[0]?.reason).toBe('unknown_shape');
    const g = read({ f: 'flag', i: [{ k: 'user-1', t: 'on', m: 1700000000010 }, { k: 'user-2', m: 1700000000011 }, 'x'] });
    expect(g.imps.map((x) => x.imp.key)).toEqual(['user-1']);
    expect(g.bad.map((b) => [b.reason, b.item])).toEqual([['missing_field', 1], ['unknown_shape', 2]]);
  });

  it('takes whole epoch milliseconds from 2000 to 2100 as times, and says what else it got', () => {
    const detail = (time: unknown): string | undefined => read({ key: 'user-1', split: 'f', treatment: 'on', time }).bad[0]?.detail;
    expect(detail(1700000000)).toBe('webhook impression: time looks like epoch seconds: FME impression times are milliseconds (1700000000)');
    expect(detail(1e20)).toBe('webhook impression: time is not epoch milliseconds between 2000 and 2100 (100000000000000000000)');
    expect(detail(1e300)).toMatch(/is not epoch milliseconds between 2000 and 2100/);
    expect(detail(5)).toMatch(/is not epoch milliseconds between 2000 and 2100/);
    expect(detail(1700000000000.5)).toBe('webhook impression: time is not whole epoch milliseconds (1700000000000.5)');
    // Seconds with a fraction (Python's time.time()) are named as seconds too, not only as "not whole".
    expect(detail(1709251199.523)).toBe('webhook impression: time looks like epoch seconds: FME impression times are milliseconds (1709251199.523)');
    expect(detail(-1)).toMatch(/between 2000 and 2100/);
    expect(detail(946684800000)).toBeUndefined();
  });

  it('accepts numeric keys and numeric-string times', () => {
    expect(read({ key: 123456, split: 'f', treatment: 'on', time: '1700000000000' }).imps[0]?.imp).toEqual({ key: '123456', flag: 'f', treatment: 'on', time: 1700000000000 });
  });

  it('refuses numeric ids JSON cannot carry exactly, rather than send a rounded one (another user)', () => {
    // As read from a dump: both keys parse to 9007199254740992, and 12345678901234567890 to 12345678901234567000.
    const records = JSON.parse(
      '[{"key":12345678901234567890,"split":"f","treatment":"on","time":1700000000000},' +
        '{"key":9007199254740993,"split":"f","treatment":"on","time":1700000000000},' +
        '{"impression":{"keyName":"user-1","bucketingKey":1.50,"feature":"f","treatment":"on","time":1700000000000}},' +
        '{"key":9007199254740991,"split":"f","treatment":"on","time":1700000000000}]',
    ) as unknown[];
    const got = records.map(read);
    expect(got.slice(0, 3).map((g) => g.imps)).toEqual([[], [], []]);
    expect(got[0]?.bad[0]).toMatchObject({ reason: 'invalid_field', detail: expect.stringMatching(/^webhook impression: key is a number JSON cannot carry exactly \(12345678901234567000\).*Write ids as strings$/) as unknown });
    expect(got[1]?.bad[0]?.detail).toMatch(/key is a number JSON cannot carry exactly \(9007199254740992\)/);
    expect(got[2]?.bad[0]?.detail).toMatch(/^listener impression: bucketingKey is a number JSON cannot carry exactly \(1\.5\)/);
    // The largest exact one is still taken.
    expect(got[3]?.imps[0]?.imp.key).toBe('9007199254740991');
  });
});
