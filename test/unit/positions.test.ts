import { describe, expect, it } from 'vitest';
import { addRange, decodePosition, encodePosition, inRanges, type Ranges } from '../../src/pipeline/positions.js';

describe('positions', () => {
  it('round-trips and orders by entry, then line, then identity', () => {
    const a = encodePosition(3, 1_000_000, 2);
    expect(decodePosition(a)).toEqual({ entryIndex: 3, line: 1_000_000, identityIndex: 2 });
    expect(encodePosition(0, 5, 1)).toBeLessThan(encodePosition(0, 6, 0));
    expect(encodePosition(0, 2 ** 31 - 1, 15)).toBeLessThan(encodePosition(1, 0, 0));
    expect(Number.isSafeInteger(encodePosition(200_000, 2 ** 31 - 1, 15))).toBe(true);
  });

  it('merges acknowledged ranges as batches finish out of order, staying small', () => {
    let r: Ranges = [];
    r = addRange(r, 200, 299);
    r = addRange(r, 0, 99);
    expect(r).toEqual([[0, 99], [200, 299]]);
    r = addRange(r, 100, 199);
    expect(r).toEqual([[0, 299]]);
    for (let i = 3; i < 1000; i++) r = addRange(r, i * 100, i * 100 + 99);
    expect(r).toEqual([[0, 99_999]]);
    expect(inRanges(r, 50_000)).toBe(true);
    expect(inRanges(r, 100_000)).toBe(false);
    expect(inRanges([[5, 9], [20, 29]], 15)).toBe(false);
    expect(inRanges([[5, 9], [20, 29]], 20)).toBe(true);
  });
});
