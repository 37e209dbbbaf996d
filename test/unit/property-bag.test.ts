import { describe, expect, it } from 'vitest';
import { PropertyBag } from '../../src/fme/rules.js';

describe('PropertyBag keys named like Object.prototype members', () => {
  it('keeps __proto__, toString and constructor as ordinary own keys and serialises them', () => {
    const bag = new PropertyBag({});
    bag.add('__proto__', 'p');
    bag.add('toString', 1);
    bag.add('constructor', true);
    bag.add('__proto__', 'again');
    expect(bag.size).toBe(3);
    expect(Object.getPrototypeOf(bag.values)).toBe(Object.prototype);
    expect(Object.keys(bag.values)).toEqual(['__proto__', 'toString', 'constructor']);
    expect(JSON.parse(JSON.stringify(bag.values)) as unknown).toEqual(JSON.parse('{"__proto__":"again","toString":1,"constructor":true}'));
    expect(({} as Record<string, unknown>).p).toBeUndefined();
  });

  it('counts inherited names against the key limit like any other key', () => {
    const counts = {};
    const bag = new PropertyBag(counts);
    for (let i = 0; i < 299; i++) bag.add(`k${i}`, i);
    bag.add('hasOwnProperty', 'x');
    bag.add('valueOf', 'y');
    expect(bag.size).toBe(300);
    expect(Object.prototype.hasOwnProperty.call(bag.values, 'valueOf')).toBe(false);
    expect(counts).toEqual({ key_limit: 1 });
  });
});
