import { describe, expect, it } from 'vitest';
import {
  EVENT_TYPE_ID_RE,
  SAFE_EVENT_TYPE_ID_RE,
  MAX_EVENT_BYTES,
  PropertyBag,
  capString,
  isValidEventTypeId,
  isValidKey,
  isValidTrafficType,
  legalizeProperties,
  normalizeTrafficType,
  sanitizeEventTypeId,
  serializeFitted,
  toFmeKey,
  type TrimCounts,
} from '../../src/fme/rules.js';
import type { FmeEvent } from '../../src/fme/types.js';
import { fmeContractProblem } from '../../src/sandbox/fme-contract.js';

describe('sanitizeEventTypeId', () => {
  it.each([
    ['checkout', 'checkout'],
    ['amp.Order_Completed:v2-x', 'amp.Order_Completed_v2-x'],
    ['Order Completed', 'Order_Completed'],
    ['[Amplitude] Start Session', 'Amplitude_Start_Session'],
    ['amp.[Amplitude] Start Session', 'amp.Amplitude_Start_Session'],
    ['Page Viewed!', 'Page_Viewed'],
    ['a  /  b', 'a_b'],
    ['_private', 'private'],
    ['Café ordered', 'Cafe_ordered'],
  ])('%s -> %s', (input, expected) => {
    expect(sanitizeEventTypeId(input)).toBe(expected);
  });

  it('keeps names that lose non-ASCII characters distinct with a hash', () => {
    const a = sanitizeEventTypeId('注文 done');
    const b = sanitizeEventTypeId('購入 done');
    expect(a).toMatch(/^done_[0-9a-f]{8}$/);
    expect(b).toMatch(/^done_[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
    expect(sanitizeEventTypeId('注文 done')).toBe(a); // deterministic
    expect(sanitizeEventTypeId('Purchase 🎉')).toMatch(/^Purchase_[0-9a-f]{8}$/);
  });

  it('falls back when nothing usable is left', () => {
    expect(sanitizeEventTypeId('')).toBe('event');
    expect(sanitizeEventTypeId('!!! ???')).toBe('event');
    expect(sanitizeEventTypeId('注文')).toMatch(/^event_[0-9a-f]{8}$/);
  });

  it('caps at 63 characters and keeps long names distinct, and leaves out `:` (the stricter docs)', () => {
    const base = 'x'.repeat(100);
    const a = sanitizeEventTypeId(`${base}a`);
    const b = sanitizeEventTypeId(`${base}b`);
    expect(a).toHaveLength(63);
    expect(a).not.toBe(b);
    expect(sanitizeEventTypeId('y'.repeat(63))).toBe('y'.repeat(63));
    expect(sanitizeEventTypeId('y'.repeat(64))).toMatch(/^y{54}_[0-9a-f]{8}$/);
    expect(sanitizeEventTypeId('amp.checkout:step_2')).toBe('amp.checkout_step_2');
    // FME's own regex still takes both (the emulator checks with it).
    expect(isValidEventTypeId(`a:${'b'.repeat(78)}`)).toBe(true);
  });

  it('always yields a legal id', () => {
    const samples = ['', ' ', '.', '-a', ':x', '🎉', 'a'.repeat(500), '[x]', 'é'.repeat(90), '\u0000\n\t', 'ok', '1', '__', 'a b\u00a0c', '\ud83d'];
    for (let i = 0; i < 500; i++) {
      let s = '';
      const n = (i * 7919) % 120;
      for (let j = 0; j < n; j++) s += String.fromCharCode(((i + 1) * (j + 3) * 2654435761) % 0x3000);
      samples.push(s);
    }
    for (const s of samples) {
      const id = sanitizeEventTypeId(s);
      expect(id, JSON.stringify(s)).toMatch(SAFE_EVENT_TYPE_ID_RE);
      expect(id).toMatch(EVENT_TYPE_ID_RE);
      expect(isValidEventTypeId(id)).toBe(true);
    }
  });
});

describe('traffic type and key', () => {
  it('lowercases and trims traffic types', () => {
    expect(normalizeTrafficType(' User ')).toBe('user');
    expect(isValidTrafficType('user')).toBe(true);
    expect(isValidTrafficType('User')).toBe(false);
    expect(isValidTrafficType('')).toBe(false);
  });

  it('accepts real keys trimmed, as getTreatment trims them, and refuses missing, blank or too long ones', () => {
    expect(toFmeKey('u-1')).toEqual({ key: 'u-1' });
    expect(toFmeKey(' u-1 \n')).toEqual({ key: 'u-1' });
    expect(toFmeKey('null')).toEqual({ key: 'null' });
    expect(toFmeKey(12345)).toEqual({ key: '12345' });
    // JSON.parse rounds 12345678901234567890 to 12345678901234567000: sent, it would be another user.
    expect(toFmeKey(JSON.parse('12345678901234567890'))).toEqual({ problem: 'inexact_number' });
    expect(toFmeKey(1.5)).toEqual({ problem: 'inexact_number' });
    expect(toFmeKey(Number.MAX_SAFE_INTEGER)).toEqual({ key: '9007199254740991' });
    expect(toFmeKey(null)).toEqual({ problem: 'missing' });
    expect(toFmeKey(undefined)).toEqual({ problem: 'missing' });
    expect(toFmeKey('')).toEqual({ problem: 'missing' });
    expect(toFmeKey(' \t\u00a0')).toEqual({ problem: 'missing' });
    expect(toFmeKey('k'.repeat(250))).toEqual({ key: 'k'.repeat(250) });
    expect(toFmeKey('k'.repeat(251))).toEqual({ problem: 'too_long' });
    expect(toFmeKey(` ${'k'.repeat(250)} `)).toEqual({ key: 'k'.repeat(250) });
    expect(toFmeKey({ id: 1 })).toEqual({ problem: 'not_a_string' });
    expect(toFmeKey(Number.NaN)).toEqual({ problem: 'not_a_string' });
    expect(isValidKey('k'.repeat(251))).toBe(false);
  });
});

describe('properties', () => {
  it('flattens objects, writes arrays as JSON text and keeps legal scalars', () => {
    const counts: TrimCounts = {};
    const out = legalizeProperties(
      { plan: 'pro', n: 3, ok: true, none: null, addr: { city: 'Paris', geo: { lat: 1.5 } }, tags: ['a', 'b'], empty: {}, skip: undefined },
      counts,
    );
    expect({ ...out }).toEqual({ plan: 'pro', n: 3, ok: true, none: null, 'addr.city': 'Paris', 'addr.geo.lat': 1.5, tags: '["a","b"]' });
    expect(counts).toEqual({});
  });

  it('cuts strings to 256 characters without splitting a surrogate pair, and counts it', () => {
    const counts: TrimCounts = {};
    const out = legalizeProperties({ s: 'a'.repeat(300), t: 'b'.repeat(256), arr: Array.from({ length: 100 }, (_, i) => `item${i}`) }, counts);
    expect(out.s).toBe('a'.repeat(256));
    expect(out.t).toBe('b'.repeat(256));
    expect((out.arr as string).length).toBe(256);
    expect(counts.string_truncated).toBe(2);
    const emoji = `${'a'.repeat(255)}🎉`;
    expect(capString(emoji)).toBe('a'.repeat(255));
  });

  it('keeps the first 300 keys and counts the rest', () => {
    const counts: TrimCounts = {};
    const input: Record<string, unknown> = {};
    for (let i = 0; i < 350; i++) input[`k${i}`] = i;
    const out = legalizeProperties(input, counts);
    expect(Object.keys(out)).toHaveLength(300);
    expect(out.k299).toBe(299);
    expect(out.k300).toBeUndefined();
    expect(counts.key_limit).toBe(50);
  });

  it('treats __proto__ as an ordinary key', () => {
    const counts: TrimCounts = {};
    const out = legalizeProperties(JSON.parse('{"__proto__":{"polluted":1},"constructor":"x"}') as Record<string, unknown>, counts);
    expect(out['__proto__.polluted']).toBe(1);
    expect(out.constructor).toBe('x');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('later adds overwrite earlier ones without using a new slot', () => {
    const bag = new PropertyBag({});
    bag.add('a', 1);
    bag.add('a', 2);
    expect(bag.size).toBe(1);
    expect(bag.values.a).toBe(2);
  });

  it('sends non-finite numbers as null, as the SDKs do', () => {
    const counts: TrimCounts = {};
    const out = legalizeProperties({ inf: Number.POSITIVE_INFINITY, nan: Number.NaN }, counts);
    expect({ ...out }).toEqual({ inf: null, nan: null });
    expect(counts.value_not_legal).toBe(2);
  });
});

describe('event size', () => {
  const base = (): FmeEvent => ({ eventTypeId: 'amp.x', trafficTypeName: 'user', key: 'u1', timestamp: 1_600_000_000_000 });

  it('leaves small events alone', () => {
    const e = { ...base(), properties: { a: 'b' } };
    const r = serializeFitted(e, {});
    expect(r?.json).toBe(JSON.stringify(e));
  });

  it('drops the largest properties first until the event is under 32 KB', () => {
    const props: Record<string, string> = {};
    for (let i = 0; i < 200; i++) props[`p${String(i).padStart(3, '0')}`] = (i % 2 ? 'x' : 'y').repeat(i < 150 ? 200 : 256);
    const counts: TrimCounts = {};
    const e: FmeEvent = { ...base(), properties: props };
    const r = serializeFitted(e, counts);
    expect(r).toBeDefined();
    expect(r?.bytes).toBeLessThan(MAX_EVENT_BYTES);
    expect(Buffer.byteLength(r?.json ?? '')).toBe(r?.bytes);
    expect(counts.size_limit).toBeGreaterThan(0);
    // The 256-char values (p150..p199) went first; the small ones stayed.
    expect(e.properties?.p000).toBeDefined();
    expect(e.properties?.p199).toBeUndefined();
    expect(fmeContractProblem(JSON.parse(r?.json ?? ''))).toBeUndefined();
  });
});

describe('the FME emulator\'s contract check (specs/fme.md), which the mapped events above pass', () => {
  const ok = { eventTypeId: 'amp.x', trafficTypeName: 'user', key: 'u1', timestamp: 1_600_000_000_000, value: null, properties: { a: 1 } };
  it('accepts a legal event', () => {
    expect(fmeContractProblem(ok)).toBeUndefined();
  });
  it.each([
    [{ eventTypeId: 'has space' }, /eventTypeId/],
    [{ eventTypeId: 'x'.repeat(81) }, /eventTypeId/],
    [{ trafficTypeName: 'User' }, /trafficTypeName/],
    [{ trafficTypeName: '' }, /trafficTypeName/],
    [{ key: '' }, /key/],
    [{ key: 'k'.repeat(251) }, /key/],
    [{ timestamp: '1600000000' }, /timestamp/],
    [{ timestamp: 1.5 }, /timestamp/],
    [{ value: '3' }, /value/],
    [{ properties: { a: { b: 1 } } }, /properties\.a/],
    [{ properties: { a: 'x'.repeat(257) } }, /properties\.a/],
    [{ properties: Object.fromEntries(Array.from({ length: 301 }, (_, i) => [`k${i}`, i])) }, /301 keys/],
    [{ properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, 'v'.repeat(200)])) }, /32 KB/],
  ])('rejects %j', (patch, message) => {
    expect(fmeContractProblem({ ...ok, ...patch })).toMatch(message);
  });
});
