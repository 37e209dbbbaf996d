import { describe, expect, it } from 'vitest';
import { n } from '../../src/cli/format.js';

describe('n (counts in summaries)', () => {
  it('groups digits as toLocaleString("en-US") does', () => {
    const values = [0, 7, 999, 1000, 1001, 65_536, 999_999, 1_000_000, 1_234_567, 20_000_000_000, -1, -1234, -1_234_567, Number.MAX_SAFE_INTEGER, 1.5, 1234.5678, 1e21];
    for (const v of values) expect(n(v), String(v)).toBe(v.toLocaleString('en-US'));
  });
});
