import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import { ConfigError } from '../../src/errors.js';
import { MAX_EVENT_BYTES } from '../../src/fme/rules.js';
import { fmeContractProblem } from '../../src/sandbox/fme-contract.js';
import { addMapperStats, compileMapper, emptyMapperStats, type MapResult, type MapperConfig, type MappedEvent } from '../../src/mapping/amplitude-to-fme.js';

const defaults = (): MapperConfig => defaultConfig().exportEvents;

function row(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    uuid: 'a1b2',
    $insert_id: 'ins-1',
    event_type: 'Order Completed',
    user_id: 'user-1',
    device_id: 'device-1',
    amplitude_id: 123456789,
    event_time: '2021-02-22 21:10:00.123000',
    client_event_time: '2021-02-22 21:09:59.000000',
    server_upload_time: '2021-02-22 21:10:05.000000',
    event_properties: { plan: 'pro', revenue: 9.99 },
    user_properties: { plan: 'team', country: 'FR' },
    country: 'France',
    ...over,
  };
}

function events(r: MapResult): MappedEvent[] {
  if (r.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(r)}`);
  return r.events;
}

describe('compileMapper with the default configuration', () => {
  it('maps one row to one user event with UTC ms, prefixed sanitised type and event_properties', () => {
    const m = compileMapper(defaults());
    const [e, ...rest] = events(m.map(row()));
    expect(rest).toHaveLength(0);
    expect(e?.event).toEqual({
      eventTypeId: 'amp.Order_Completed',
      trafficTypeName: 'user',
      key: 'user-1',
      timestamp: Date.UTC(2021, 1, 22, 21, 10, 0, 123),
      properties: { plan: 'pro', revenue: 9.99 },
    });
    // Serialised once, identical to a plain JSON.stringify, and legal for FME.
    expect(e?.json).toBe(JSON.stringify(e?.event));
    expect(e?.bytes).toBe(Buffer.byteLength(e?.json ?? ''));
    expect(fmeContractProblem(JSON.parse(e?.json ?? ''))).toBeUndefined();
    expect(m.stats.renamed.get('Order Completed')).toBe('amp.Order_Completed');
  });

  it('excludes get_treatment by default (FME impressions would loop)', () => {
    const m = compileMapper(defaults());
    expect(m.map(row({ event_type: 'get_treatment' }))).toEqual({ kind: 'skipped', reason: 'excluded_event_type' });
    expect(m.stats.skipped.excluded_event_type).toBe(1);
  });

  it('never turns a null user_id into "null"; anonymous rows are skipped and counted', () => {
    const m = compileMapper(defaults());
    for (const user_id of [null, undefined, '', '   ']) {
      expect(m.map(row({ user_id }))).toEqual({ kind: 'skipped', reason: 'no_identity' });
    }
    expect(m.stats.skipped.no_identity).toBe(4);
    expect(m.stats.identities.missing_user_id).toBe(4);
    // A real string "null" is a real (odd) key: FME has no placeholder rule.
    expect(events(m.map(row({ user_id: 'null' })))[0]?.event.key).toBe('null');
  });

  it('treats a row without event_type or timestamp as invalid (dead letter), with a reason', () => {
    const m = compileMapper(defaults());
    expect(m.map(row({ event_type: null }))).toMatchObject({ kind: 'invalid', reason: 'no_event_type' });
    const r = m.map(row({ event_time: null, client_event_time: '', server_upload_time: 'garbage' }));
    expect(r).toMatchObject({ kind: 'invalid', reason: 'no_timestamp' });
    expect(r.kind === 'invalid' && r.detail).toContain('garbage');
    expect(m.stats.invalid).toEqual({ no_event_type: 1, no_timestamp: 1 });
  });
});

describe('identities', () => {
  const both: MapperConfig = {
    ...defaults(),
    identities: [
      { trafficType: 'User', from: 'user_id' },
      { trafficType: 'anonymous', from: 'device_id' },
    ],
  };

  it('sends one event per identity present, traffic types lowercased', () => {
    const m = compileMapper(both);
    const es = events(m.map(row()));
    expect(es.map((e) => [e.event.trafficTypeName, e.event.key, e.identityIndex])).toEqual([
      ['user', 'user-1', 0],
      ['anonymous', 'device-1', 1],
    ]);
    for (const e of es) expect(e.json).toBe(JSON.stringify(e.event));
  });

  it('sends only the identities a row has, counting the missing ones', () => {
    const m = compileMapper(both);
    const es = events(m.map(row({ user_id: null })));
    expect(es.map((e) => [e.event.trafficTypeName, e.identityIndex])).toEqual([['anonymous', 1]]);
    expect(m.map(row({ user_id: null, device_id: null }))).toEqual({ kind: 'skipped', reason: 'no_identity' });
    expect(m.stats.identities).toEqual({ missing_user_id: 2, missing_device_id: 1 });
    expect(m.stats.skipped.no_identity).toBe(1);
  });

  it('turns numeric ids into text and refuses over-long keys (dead letter when nothing else is left)', () => {
    const m = compileMapper({ ...defaults(), identities: [{ trafficType: 'account', from: 'amplitude_id' }] });
    expect(events(m.map(row()))[0]?.event.key).toBe('123456789');
    const m2 = compileMapper(defaults());
    expect(m2.map(row({ user_id: 'u'.repeat(251) }))).toMatchObject({ kind: 'invalid', reason: 'invalid_key' });
    expect(m2.stats.identities.too_long_user_id).toBe(1);
  });

  it('reads identities from dot paths', () => {
    const m = compileMapper({ ...defaults(), identities: [{ trafficType: 'account', from: 'user_properties.account_id' }] });
    expect(events(m.map(row({ user_properties: { account_id: 'acc-9' } })))[0]?.event.key).toBe('acc-9');
  });
});

describe('event types', () => {
  it('sanitises unicode and bracketed names and reports the renames', () => {
    const m = compileMapper({ ...defaults(), eventTypePrefix: '' });
    expect(events(m.map(row({ event_type: '[Amplitude] Start Session' })))[0]?.event.eventTypeId).toBe('Amplitude_Start_Session');
    const uni = events(m.map(row({ event_type: 'Café 注文' })))[0]?.event.eventTypeId;
    expect(uni).toMatch(/^Cafe_[0-9a-f]{8}$/);
    expect(events(m.map(row({ event_type: 'checkout' })))[0]?.event.eventTypeId).toBe('checkout');
    expect([...m.stats.renamed.entries()]).toEqual([
      ['[Amplitude] Start Session', 'Amplitude_Start_Session'],
      ['Café 注文', uni],
    ]);
  });

  it('keeps at most 1000 renamed names and counts the rest', () => {
    const m = compileMapper(defaults());
    for (let i = 0; i < 1005; i++) m.map(row({ event_type: `Name ${i}` }));
    expect(m.stats.renamed.size).toBe(1000);
    expect(m.stats.renamedNotListed).toBe(5);
  });

  it('counts each renamed name once across threads when their counts are added up', () => {
    // Two mappers, as two decode threads, each report the same 1005 renamed names, batch by batch.
    const total = emptyMapperStats();
    for (const m of [compileMapper(defaults()), compileMapper(defaults())]) {
      for (let i = 0; i < 1005; i++) {
        m.map(row({ event_type: `Name ${i}` }));
        if (i % 100 === 99) addMapperStats(total, m.takeStats());
      }
      addMapperStats(total, m.takeStats());
    }
    expect(total.renamed.size).toBe(1000);
    expect(total.renamedNotListed).toBe(5);
  });

  it('applies include globs then exclude globs on the original names', () => {
    const m = compileMapper({ ...defaults(), includeEventTypes: ['[Amplitude] *', 'Order *'], excludeEventTypes: ['*Session End*', 'Order Refunded'] });
    const keep = (t: string) => m.map(row({ event_type: t })).kind === 'events';
    expect(keep('[Amplitude] Start Session')).toBe(true);
    expect(keep('[Amplitude] Session End')).toBe(false);
    expect(keep('Order Completed')).toBe(true);
    expect(keep('Order Refunded')).toBe(false);
    expect(keep('Order step/2')).toBe(true);
    expect(keep('Page Viewed')).toBe(false);
    expect(keep('get_treatment')).toBe(false);
    expect(m.stats.skipped.excluded_event_type).toBe(4);
  });
});

describe('timestamp fallbacks', () => {
  it('falls back to client_event_time, then server_upload_time, and counts it', () => {
    const m = compileMapper(defaults());
    expect(events(m.map(row({ event_time: null })))[0]?.event.timestamp).toBe(Date.UTC(2021, 1, 22, 21, 9, 59));
    expect(events(m.map(row({ event_time: '', client_event_time: null })))[0]?.event.timestamp).toBe(Date.UTC(2021, 1, 22, 21, 10, 5));
    expect(m.stats.timestampFallback).toEqual({ client_event_time: 1, server_upload_time: 1 });
  });
});

describe('value', () => {
  const cfg = (): MapperConfig => ({ ...defaults(), valueFrom: 'event_properties.revenue' });
  it('takes finite numbers and plain numeric text, leaves anything else out and counts it', () => {
    const m = compileMapper(cfg());
    const v = (revenue: unknown) => events(m.map(row({ event_properties: { revenue } })))[0]?.event.value;
    expect(v(9.99)).toBe(9.99);
    expect(v('12.5')).toBe(12.5);
    expect(v('-3')).toBe(-3);
    expect(v('abc')).toBeUndefined();
    expect(v('')).toBeUndefined();
    expect(v('0x10')).toBeUndefined();
    expect(v(true)).toBeUndefined();
    expect(v({ amount: 1 })).toBeUndefined();
    expect(v(null)).toBeUndefined();
    expect(v(undefined)).toBeUndefined();
    expect(m.stats.value).toEqual({ from_string: 2, not_numeric: 5 });
    const e = events(m.map(row()))[0];
    expect(e?.json).toBe(JSON.stringify(e?.event));
    expect(e?.json).toContain('"value":9.99');
  });
});

describe('properties', () => {
  it('keys wildcard children by their own names, explicit paths by the full path, flattens nested values', () => {
    const m = compileMapper({ ...defaults(), properties: ['event_properties.*', 'user_properties.plan', 'country', 'missing.path'] });
    const e = events(
      m.map(row({ event_properties: { plan: 'pro', cart: { items: 2, coupon: { code: 'X' } }, skus: ['a', 'b'], 'page.url': '/x' } })),
    )[0];
    expect(e?.event.properties).toEqual({
      plan: 'pro',
      'cart.items': 2,
      'cart.coupon.code': 'X',
      skus: '["a","b"]',
      'page.url': '/x',
      'user_properties.plan': 'team',
      country: 'France',
    });
    expect(e?.json).toBe(JSON.stringify(e?.event));
  });

  it('finds explicit keys that contain dots and supports globs inside a segment', () => {
    const m = compileMapper({ ...defaults(), properties: ['event_properties.page.url', 'event_properties.utm_*'] });
    const e = events(m.map(row({ event_properties: { 'page.url': '/x', utm_source: 'g', utm_medium: 'cpc', other: 1 } })))[0];
    expect(e?.event.properties).toEqual({ 'event_properties.page.url': '/x', utm_source: 'g', utm_medium: 'cpc' });
  });

  it('leaves properties out when there are none', () => {
    const m = compileMapper(defaults());
    const e = events(m.map(row({ event_properties: {} })))[0];
    expect(e?.event).not.toHaveProperty('properties');
    expect(e?.json).not.toContain('properties');
  });

  it('cuts 256+ character strings and keeps 300 keys, counting both', () => {
    const m = compileMapper(defaults());
    const props: Record<string, unknown> = { long: 'z'.repeat(1000) };
    for (let i = 0; i < 320; i++) props[`k${i}`] = i;
    const e = events(m.map(row({ event_properties: props })))[0];
    expect(e?.event.properties?.long).toBe('z'.repeat(256));
    expect(Object.keys(e?.event.properties ?? {})).toHaveLength(300);
    expect(m.stats.trimmed).toEqual({ string_truncated: 1, key_limit: 21 });
    expect(fmeContractProblem(JSON.parse(e?.json ?? ''))).toBeUndefined();
  });

  it('shrinks an event over 32 KB for every identity, counting each dropped property once per row', () => {
    const m = compileMapper({
      ...defaults(),
      identities: [
        { trafficType: 'user', from: 'user_id' },
        { trafficType: 'anonymous', from: 'device_id' },
      ],
    });
    const props: Record<string, unknown> = {};
    for (let i = 0; i < 200; i++) props[`p${i}`] = `${i}`.padEnd(250, '.');
    const es = events(m.map(row({ event_properties: props, device_id: 'd'.repeat(250) })));
    expect(es).toHaveLength(2);
    for (const e of es) {
      expect(e.bytes).toBeLessThan(MAX_EVENT_BYTES);
      expect(e.json).toBe(JSON.stringify(e.event));
      expect(fmeContractProblem(JSON.parse(e.json))).toBeUndefined();
    }
    const kept = Object.keys(es[0]?.event.properties ?? {}).length;
    expect(kept).toBeGreaterThan(100);
    expect(m.stats.trimmed.size_limit).toBe(200 - kept);
  });
});

describe('configuration problems', () => {
  it('throws a ConfigError naming every bad path', () => {
    let err: unknown;
    try {
      compileMapper({ ...defaults(), identities: [{ trafficType: ' ', from: 'a..b' }], properties: ['x.'], valueFrom: '.v' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual([
      'exportEvents.identities[0].trafficType',
      'exportEvents.identities[0].from',
      'exportEvents.valueFrom',
      'exportEvents.properties[0]',
    ]);
  });
});
