import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import type { Impression } from '../../src/impressions/types.js';
import {
  checkId,
  coalesceKey,
  compileEventJson,
  IdentifyFold,
  impressionInsertId,
  impressionToEvent,
  isPlaceholderId,
  toIdentification,
  type EventMapping,
} from '../../src/mapping/impression-to-amplitude.js';

const base: Impression = { key: 'user-00001', flag: 'new_checkout', treatment: 'on', time: 1700000000000, label: 'default rule', changeNumber: 17, environment: 'Production', bucketingKey: 'bk-1' };
const mapping: EventMapping = { eventType: 'get_treatment', identity: 'user_id', propertyNames: defaultConfig().pushImpressions.propertyNames, library: 'amp-fme/9.9.9' };

describe('impression -> Amplitude event', () => {
  it('maps every field, with the configured property names', () => {
    expect(impressionToEvent(base, mapping)).toEqual({
      user_id: 'user-00001',
      event_type: 'get_treatment',
      time: 1700000000000,
      insert_id: impressionInsertId(base),
      library: 'amp-fme/9.9.9',
      event_properties: { flag: 'new_checkout', treatment: 'on', label: 'default rule', change_number: 17, environment: 'Production', bucketing_key: 'bk-1' },
    });
    const renamed = impressionToEvent({ key: 'device-0001', flag: 'f', treatment: 't', time: 5 }, {
      ...mapping,
      identity: 'device_id',
      eventType: '[FME] Impression',
      propertyNames: { ...mapping.propertyNames, flag: 'split_name', treatment: 'variant' },
    });
    expect(renamed).toMatchObject({ device_id: 'device-0001', event_type: '[FME] Impression', event_properties: { split_name: 'f', variant: 't' } });
    expect(renamed.user_id).toBeUndefined();
    expect(Object.keys(renamed.event_properties)).toEqual(['split_name', 'variant']);
  });

  it("lets the impression's own properties override built-ins of the same name (as FME's integration does)", () => {
    const e = impressionToEvent({ ...base, properties: { treatment: 'custom', page: 'cart' } }, mapping);
    expect(e.event_properties).toMatchObject({ treatment: 'custom', page: 'cart', flag: 'new_checkout' });
  });

  it('insert_id is deterministic, depends on the content, not on properties, and fits Amplitude', () => {
    const id = impressionInsertId(base);
    expect(impressionInsertId({ ...base })).toBe(id);
    expect(impressionInsertId({ ...base, properties: { a: 1 } })).toBe(id);
    for (const change of [{ key: 'user-00002' }, { flag: 'x' }, { treatment: 'off' }, { time: base.time + 1 }, { changeNumber: 18 }, { label: 'l' }, { bucketingKey: 'b' }, { environment: 'Staging' }]) {
      expect(impressionInsertId({ ...base, ...change })).not.toBe(id);
    }
    // No separator tricks: the fields are encoded as a JSON list.
    expect(impressionInsertId({ ...base, key: 'a|b', flag: 'c' })).not.toBe(impressionInsertId({ ...base, key: 'a', flag: 'b|c' }));
    expect(id).toMatch(/^fme-[0-9a-f]{40}$/);
  });

  it('coalesce key: same key, flag, treatment and change number; time and label do not matter', () => {
    const k = coalesceKey(base);
    expect(k).toHaveLength(16);
    expect(coalesceKey({ ...base, time: 1, label: 'other' })).toBe(k);
    expect(coalesceKey({ ...base, changeNumber: 18 })).not.toBe(k);
    expect(coalesceKey({ ...base, treatment: 'off' })).not.toBe(k);
  });
});

describe('ids Amplitude refuses (specs/amplitude.md)', () => {
  it('placeholders, in any case and with spaces', () => {
    for (const id of ['anonymous', 'NIL', 'none', 'null', 'N/A', 'na', 'undefined', 'Unknown', '', ' ', '0', '-1', '00000000-0000-0000-0000-000000000000']) {
      expect(isPlaceholderId(id), id).toBe(true);
      expect(checkId(id, 1)?.reason, id).toBe('placeholder_id');
    }
    expect(isPlaceholderId('nullable-user')).toBe(false);
  });

  it('short ids: refused below 5, accepted down to amplitude.minIdLength', () => {
    expect(checkId('abcd', undefined)).toMatchObject({ reason: 'id_too_short', detail: expect.stringMatching(/minIdLength/) });
    expect(checkId('abcde', undefined)).toBeUndefined();
    expect(checkId('abc', 3)).toBeUndefined();
    expect(checkId('ab', 3)?.reason).toBe('id_too_short');
    expect(checkId('x'.repeat(1025), undefined)?.reason).toBe('id_too_long');
  });
});

describe('identify folding', () => {
  it('keeps the latest treatment per user and flag by time, whatever the reading order', () => {
    const fold = new IdentifyFold();
    fold.add({ key: 'user-1', flag: 'a', treatment: 'on', time: 20 });
    fold.add({ key: 'user-1', flag: 'a', treatment: 'off', time: 10 });
    fold.add({ key: 'user-1', flag: 'b', treatment: 'v1', time: 5 });
    fold.add({ key: 'user-2', flag: 'a', treatment: 'off', time: 1 });
    fold.add({ key: 'user-2', flag: 'a', treatment: 'on', time: 1 });
    expect(fold.userCount).toBe(2);
    expect(fold.pairCount).toBe(3);
    const ids = [...fold.entries()].map(([k, flags]) => toIdentification(k, flags, 'user_id', 'fme_'));
    expect(ids).toEqual([
      { user_id: 'user-1', user_properties: { fme_a: 'on', fme_b: 'v1' } },
      { user_id: 'user-2', user_properties: { fme_a: 'on' } },
    ]);
    expect(toIdentification('dev-1', new Map([['f', { treatment: 't', time: 1 }]]), 'device_id', '')).toEqual({ device_id: 'dev-1', user_properties: { f: 't' } });
  });
});

describe('insert_id and coalesce key values are stable across versions', () => {
  // What earlier versions computed: a replay of an old dump must dedupe against the ids they sent.
  const oldInsertId = (imp: Impression): string =>
    `fme-${createHash('sha256')
      .update(JSON.stringify([imp.key, imp.flag, imp.treatment, imp.time, imp.changeNumber ?? null, imp.label ?? null, imp.bucketingKey ?? null, imp.environment ?? null]))
      .digest()
      .toString('hex', 0, 20)}`;
  const oldCoalesceKey = (imp: Impression): string =>
    createHash('md5').update(JSON.stringify([imp.key, imp.flag, imp.treatment, imp.changeNumber ?? null])).digest().toString('latin1');

  // Deterministic pseudo-random impressions, with the characters JSON escapes and multi-byte text.
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\u0001', '\u001f', '\u007f', 'é', 'ユ', '🎉', '\ud800', '|', ','];
  const text = (): string => Array.from({ length: 1 + rnd(12) }, () => alphabet[rnd(alphabet.length)]).join('');
  const randomImpression = (): Impression => {
    const imp: Impression = { key: text(), flag: text(), treatment: text(), time: [1, 1_700_000_000_000 + rnd(1e9), 2 ** 53, 1.5e21][rnd(4)] as number };
    if (rnd(2)) imp.label = text();
    if (rnd(2)) imp.changeNumber = [0, 17, 1_700_000_000_123, -3][rnd(4)] as number;
    if (rnd(2)) imp.bucketingKey = text();
    if (rnd(2)) imp.environment = text();
    if (rnd(3) === 0) imp.properties = { page: text() };
    return imp;
  };

  it('matches the values earlier versions sent, over many random impressions', () => {
    for (let i = 0; i < 5000; i++) {
      const imp = randomImpression();
      expect(impressionInsertId(imp)).toBe(oldInsertId(imp));
      expect(coalesceKey(imp)).toBe(oldCoalesceKey(imp));
    }
  });

  it('keeps known values', () => {
    expect(impressionInsertId(base)).toBe('fme-fa5e95535e73def8341a81708156bafcc3bfe786');
    expect(impressionInsertId({ key: 'ユーザー', flag: 'f"\\', treatment: 't\u0001', time: 5 })).toBe('fme-9b2d8eb0acf279abd3b0041232a488a2ae602b88');
    expect(Buffer.from(coalesceKey(base), 'latin1').toString('hex')).toBe('ad1162053b8c08a1ee13e902f02103d1');
  });
});

describe('compileEventJson', () => {
  const texts = ['plain', 'quote " and backslash \\', 'new\nline\ttab\u0001', 'ユーザー 🎉', 'lone \ud800 surrogate', '', '</script>'];
  const impressions: Impression[] = [
    base,
    { key: 'user-00002', flag: 'f', treatment: 'off', time: 1 },
    ...texts.map((t, i): Impression => ({ key: `user-${t}`, flag: `flag ${t}`, treatment: t || 'on', time: 1700000000000 + i, label: t, changeNumber: -0, environment: t, bucketingKey: t })),
    { ...base, properties: { treatment: 'custom', page: 'cart', nested: { a: [1, 'x'] } } },
    { ...base, properties: { page: 'cart "quoted"', nested: { a: [1, 'x', null] }, n: 2.5 } },
    { ...base, properties: {} },
    { ...base, properties: { page: 'cart', 42: 'integer-like' } },
    { ...base, properties: JSON.parse('{"__proto__":{"x":1},"page":"cart"}') as Record<string, unknown> },
  ];
  const mappings: EventMapping[] = [
    mapping,
    { ...mapping, identity: 'device_id', eventType: 'FME "impression"' },
    // Colliding and integer-like names: JavaScript objects would merge or reorder them.
    { ...mapping, propertyNames: { ...mapping.propertyNames, label: 'flag' } },
    { ...mapping, propertyNames: { ...mapping.propertyNames, environment: '7' } },
  ];

  it('writes exactly what JSON.stringify(impressionToEvent(...)) writes, for every shape of impression and mapping', () => {
    for (const m of mappings) {
      const eventJson = compileEventJson(m);
      for (const imp of impressions) expect(eventJson(imp)).toBe(JSON.stringify(impressionToEvent(imp, m)));
    }
  });

  it('writes the same text as the generic path over many random impressions', () => {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\u0001', '\u001f', '\ud7ff', '\ue000', 'é', 'ユ', '🎉', '\ud800', '\udfff', ','];
    const text = (): string => Array.from({ length: 1 + rnd(10) }, () => alphabet[rnd(alphabet.length)]).join('');
    const eventJson = compileEventJson(mapping);
    for (let i = 0; i < 3000; i++) {
      const imp: Impression = { key: text(), flag: text(), treatment: text(), time: [1, 1_700_000_000_000 + rnd(1e9), 1.5e21][rnd(3)] as number };
      if (rnd(2)) imp.label = text();
      if (rnd(2)) imp.changeNumber = [0, 17, -3, 1_700_000_000_123][rnd(4)] as number;
      if (rnd(2)) imp.bucketingKey = text();
      if (rnd(2)) imp.environment = text();
      if (rnd(3) === 0) imp.properties = { [text()]: text(), n: rnd(100) };
      expect(eventJson(imp)).toBe(JSON.stringify(impressionToEvent(imp, mapping)));
    }
  });
});
