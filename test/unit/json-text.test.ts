import { describe, expect, it } from 'vitest';
import { jsonString, numberText } from '../../src/mapping/json-text.js';

describe('numberText', () => {
  it('prints the digits `${n}` prints, for epoch milliseconds and around every boundary of its fast path', () => {
    const samples = [
      0, 1, 7, 999_999, 1_000_000, 1_000_001, 1_000_000_000, 1_073_741_823, 1_073_741_824, 1_700_000_000_000,
      1_795_597_168_997, 1_795_597_000_000, 1_795_597_000_009, 999_999_999_999_999, 1_000_000_000_000_000,
      Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21, 1e300, -1, -1_795_597_168_997, -0, 0.5, 1_000_000.1, 1_234_567.891, 1_795_597_168_997.5, 1_795_597_168_997.1, 1e-7,
      Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY,
    ];
    for (const n of samples) expect(numberText(n), String(n)).toBe(`${n}`);
  });

  it('agrees with `${n}` on many random integers of every size', () => {
    let seed = 42;
    const random = (): number => {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 200_000; i++) {
      const n = Math.floor(random() * 10 ** Math.floor(random() * 17));
      if (numberText(n) !== `${n}`) expect(numberText(n), String(n)).toBe(`${n}`);
    }
  });
});

describe('jsonString', () => {
  it('writes what JSON.stringify writes, plain or escaped', () => {
    for (const s of ['', 'plain', 'with "quotes"', 'back\\slash', 'line\nbreak', '\u001f', '\u007f', 'é ü 日本', '\ud83d\ude00', '\ud800', '\udfff', '\ue000']) {
      expect(jsonString(s), JSON.stringify(s)).toBe(JSON.stringify(s));
    }
  });
});
