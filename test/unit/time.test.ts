import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAmplitudeTime } from '../../src/amplitude/time.js';

// Node re-reads process.env.TZ when it is assigned, so this file runs its assertions in non-UTC zones.
const originalTz = process.env.TZ;

const cases: [string, number][] = [
  ['2021-02-22 21:10:00.123000', Date.UTC(2021, 1, 22, 21, 10, 0, 123)],
  ['2021-02-22 21:10:00', Date.UTC(2021, 1, 22, 21, 10, 0, 0)],
  ['2021-02-22 21:10:00.1', Date.UTC(2021, 1, 22, 21, 10, 0, 100)],
  ['2021-02-22 21:10:00.12', Date.UTC(2021, 1, 22, 21, 10, 0, 120)],
  ['2021-02-22 21:10:00.999999', Date.UTC(2021, 1, 22, 21, 10, 0, 999)],
  ['2021-02-22T21:10:00.5Z', Date.UTC(2021, 1, 22, 21, 10, 0, 500)],
  ['2021-02-22T21:10:00Z', Date.UTC(2021, 1, 22, 21, 10, 0, 0)],
  ['2021-02-22 21:10:00.123456789', Date.UTC(2021, 1, 22, 21, 10, 0, 123)],
  // New York switches to DST at 2021-03-14 02:00 local (07:00 UTC): a local-time parse would shift or skip.
  ['2021-03-14 07:30:00', Date.UTC(2021, 2, 14, 7, 30)],
  ['2021-03-14 02:30:00', Date.UTC(2021, 2, 14, 2, 30)],
  ['2020-02-29 00:00:00', Date.UTC(2020, 1, 29)],
  ['1970-01-01 00:00:00', 0],
];

const garbage: unknown[] = [
  null, undefined, '', '   ', 'null', 42, {}, '2021-02-22', '2021-02-22 21:10', '2021-02-22 21:10:00.',
  '2021-02-22 21:10:00.1234567890', '2021-13-01 00:00:00', '2021-02-30 00:00:00', '2021-02-29 00:00:00',
  '2021-02-22 24:00:00', '2021-02-22 21:60:00', '2021-02-22 21:10:60', '2021/02/22 21:10:00',
  '2021-02-22X21:10:00', '2021-02-22 21:10:00 ', '2021-02-22 21:10:00+02:00', 'abcd-ef-gh ij:kl:mn',
  '2021-02-22 21:10:00ZZ', '２０２１-02-22 21:10:00',
];

for (const tz of ['America/New_York', 'Asia/Kolkata']) {
  describe(`parseAmplitudeTime under TZ=${tz}`, () => {
    beforeAll(() => {
      process.env.TZ = tz;
    });
    afterAll(() => {
      if (originalTz === undefined) delete process.env.TZ;
      else process.env.TZ = originalTz;
    });

    it('really runs in a non-UTC zone', () => {
      expect(new Date(Date.UTC(2021, 0, 1)).getTimezoneOffset()).not.toBe(0);
      // The trap this module avoids: Date reads the export format as local time.
      expect(new Date('2021-02-22 21:10:00').getTime()).not.toBe(Date.UTC(2021, 1, 22, 21, 10));
    });

    it.each(cases)('parses %s as UTC', (input, expected) => {
      expect(parseAmplitudeTime(input)).toBe(expected);
    });

    it('agrees with an explicit ISO UTC parse', () => {
      expect(parseAmplitudeTime('2021-07-04 12:34:56.789000')).toBe(Date.parse('2021-07-04T12:34:56.789Z'));
    });
  });
}

describe('parseAmplitudeTime rejects what is not an export time', () => {
  it.each(garbage.map((g) => [g]))('%j -> undefined', (input) => {
    expect(parseAmplitudeTime(input)).toBeUndefined();
  });
});
