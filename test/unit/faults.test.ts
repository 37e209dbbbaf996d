import { describe, expect, it } from 'vitest';
import { parseFaultRates } from '../../src/sandbox/faults.js';

describe('parseFaultRates (sandbox and demo --faults)', () => {
  it('takes the documented spec', () => {
    expect(parseFaultRates('5xx=0.1,429=0.05,slow=0.02,reset=0.01')).toEqual({ '5xx': 0.1, '429': 0.05, slow: 0.02, reset: 0.01 });
  });

  it('refuses a rate that is missing or followed by more', () => {
    for (const spec of ['5xx=', '5xx= ', '429=0.1=3', 'slow=0.02=']) {
      expect(() => parseFaultRates(spec), spec).toThrow(/bad fault/);
    }
  });
});
