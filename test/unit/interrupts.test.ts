import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/cli/interrupts.js';

describe('parseDuration (--max-runtime)', () => {
  it('reads units, combinations and plain seconds', () => {
    expect(parseDuration('90s', '--max-runtime')).toBe(90_000);
    expect(parseDuration('1h30m', '--max-runtime')).toBe(5_400_000);
    expect(parseDuration('2d', '--max-runtime')).toBe(172_800_000);
    expect(parseDuration('45', '--max-runtime')).toBe(45_000);
  });

  it('refuses nothing, zero, garbage and what no timer can wait for', () => {
    for (const bad of ['', '0', '0s', 'soon', '5 minutes', '-1m']) {
      expect(() => parseDuration(bad, '--max-runtime'), bad).toThrow(/--max-runtime ".*" is not a duration/);
    }
    expect(() => parseDuration('30d', '--max-runtime')).toThrow('--max-runtime "30d" is too long: at most 24d');
    expect(parseDuration('24d', '--max-runtime')).toBe(24 * 86_400_000);
  });
});
