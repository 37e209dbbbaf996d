import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHttpDate, parseRetryAfter } from '../../src/http/retry.js';

const AT = Date.UTC(1994, 10, 6, 8, 49, 37);

describe.each(['Asia/Kolkata', 'America/New_York', 'UTC'])('HTTP dates under TZ=%s', (tz) => {
  const saved = process.env.TZ;
  beforeAll(() => {
    process.env.TZ = tz; // Node re-reads TZ when it is assigned
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });

  it('reads all three forms of RFC 9110 as GMT, the asctime one (no zone written) included', () => {
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(AT);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(AT);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(AT);
    expect(parseHttpDate('Wed Nov 16 08:49:37 1994')).toBe(AT + 10 * 86_400_000);
    expect(parseHttpDate('soon')).toBeUndefined();
    expect(parseHttpDate(undefined)).toBeUndefined();
  });

  it('waits as long for an asctime Retry-After as for the same time in the IMF form', () => {
    expect(parseRetryAfter('Sun Nov  6 08:49:37 1994', AT - 5000)).toBe(5000);
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', AT - 5000)).toBe(5000);
    expect(parseRetryAfter('7', AT)).toBe(7000);
  });
});
