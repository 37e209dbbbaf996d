import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HOUR_MS,
  describeWindow,
  floorHour,
  formatHour,
  halveWindow,
  parseHourArg,
  splitWindows,
  windowHours,
  type HourWindow,
} from '../../src/amplitude/hours.js';
import { UsageError } from '../../src/errors.js';

const H = (y: number, mo: number, d: number, h = 0): number => Date.UTC(y, mo - 1, d, h);

function parsingCases(): void {
  it('formats hours as zero-padded UTC YYYYMMDDTHH', () => {
    expect(formatHour(H(2024, 3, 1, 5))).toBe('20240301T05');
    expect(formatHour(H(2024, 12, 31, 23))).toBe('20241231T23');
    expect(formatHour(H(2024, 3, 1, 5) + 59 * 60_000)).toBe('20240301T05');
  });

  it('parses YYYYMMDDTHH exactly', () => {
    expect(parseHourArg('20240301T05', 'start')).toBe(H(2024, 3, 1, 5));
    expect(parseHourArg('20240229T23', 'end')).toBe(H(2024, 2, 29, 23));
  });

  it('reads a bare day as the whole day: T00 as start, T23 as end', () => {
    expect(parseHourArg('2024-03-01', 'start')).toBe(H(2024, 3, 1, 0));
    expect(parseHourArg('2024-03-01', 'end')).toBe(H(2024, 3, 1, 23));
  });

  it('reads ISO date-times as UTC when they carry no zone, and truncates to the hour', () => {
    expect(parseHourArg('2024-03-01T05:30:00Z', 'start')).toBe(H(2024, 3, 1, 5));
    expect(parseHourArg('2024-03-01T05:59:59.999Z', 'end')).toBe(H(2024, 3, 1, 5));
    expect(parseHourArg('2024-03-01T05:30:00', 'start')).toBe(H(2024, 3, 1, 5));
    expect(parseHourArg('2024-03-01 05:30', 'start')).toBe(H(2024, 3, 1, 5));
    expect(parseHourArg('2024-03-01T05', 'start')).toBe(H(2024, 3, 1, 5));
  });

  it('applies zone offsets before truncating', () => {
    expect(parseHourArg('2024-03-01T07:30:00+02:00', 'start')).toBe(H(2024, 3, 1, 5));
    // 00:15 at -05:30 is 05:45 UTC.
    expect(parseHourArg('2024-03-01T00:15:00-0530', 'start')).toBe(H(2024, 3, 1, 5));
    // Crossing midnight backwards: 01:00 at +03:00 is 22:00 UTC the day before.
    expect(parseHourArg('2024-03-01T01:00+03:00', 'start')).toBe(H(2024, 2, 29, 22));
  });

  it.each(['', 'yesterday', '2024-02-30', '20240301T24', '20240301', '2024-13-01', '2024-03-01T05:30:00+25:00', '2024-03-01T25:00Z', '20240301T5'])(
    'rejects %j with a UsageError naming the value and the formats',
    (value) => {
      let caught: unknown;
      try {
        parseHourArg(value, 'start');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(UsageError);
      const message = (caught as Error).message;
      expect(message).toContain(`"${value}"`);
      expect(message).toContain('YYYYMMDDTHH');
      expect(message).toContain('YYYY-MM-DD');
    },
  );

  it.each([
    ['2024-02-30', 'February 2024 has 29 days, so day 30 does not exist'],
    ['2023-02-29', 'February 2023 has 28 days, so day 29 does not exist'],
    ['20240431T05', 'April 2024 has 30 days, so day 31 does not exist'],
    ['2024-13-01', 'month 13 does not exist'],
    ['20240301T24', 'hour 24 does not exist: hours run from 00 to 23'],
    ['2024-03-01T24:00', 'hour 24 does not exist: hours run from 00 to 23'],
    ['2024-03-01T07:60Z', 'minute 60 does not exist'],
    ['2024-03-01T05:30:00+25:00', 'the zone offset +25:00 does not exist'],
  ])('says why %j names no hour, not only which layouts there are', (value, why) => {
    expect(() => parseHourArg(value, 'end')).toThrow(why);
  });

  it('keeps the plain layout message for text in no accepted layout', () => {
    expect(() => parseHourArg('yesterday', 'start')).toThrow('Invalid --start hour "yesterday": use YYYYMMDDTHH');
  });
}

describe('hours (process zone as started)', parsingCases);

describe('hours under a non-UTC TZ', () => {
  const saved = process.env.TZ;
  beforeAll(() => {
    // Node re-reads TZ when it is assigned: local-time parsing would now be off by hours.
    process.env.TZ = 'America/Los_Angeles';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });
  it('really runs in a zone that is not UTC', () => {
    expect(new Date(2024, 0, 1).getTimezoneOffset()).not.toBe(0);
  });
  parsingCases();
});

describe('hours in Asia/Kolkata (half-hour offset)', () => {
  const saved = process.env.TZ;
  beforeAll(() => {
    process.env.TZ = 'Asia/Kolkata';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });
  it('really runs at +05:30', () => {
    expect(new Date(2024, 0, 1).getTimezoneOffset()).toBe(-330);
  });
  parsingCases();
});

describe('windows', () => {
  const covered = (ws: HourWindow[]): number[] => ws.flatMap((w) => Array.from({ length: windowHours(w) }, (_, i) => w.start + i * HOUR_MS));

  it('splits a range into windows that cover every hour exactly once', () => {
    const start = H(2024, 3, 1, 5);
    const end = H(2024, 3, 3, 17);
    const ws = splitWindows(start, end, 24);
    expect(ws.map(describeWindow)).toEqual(['20240301T05..20240302T04', '20240302T05..20240303T04', '20240303T05..20240303T17']);
    const hours = covered(ws);
    expect(hours.length).toBe((end - start) / HOUR_MS + 1);
    expect(new Set(hours).size).toBe(hours.length);
    expect(hours[0]).toBe(start);
    expect(hours.at(-1)).toBe(end);
  });

  it('never shares an hour between consecutive windows (the API includes both ends)', () => {
    for (const size of [1, 2, 5, 7, 24]) {
      const ws = splitWindows(H(2024, 1, 1), H(2024, 1, 4, 6), size);
      for (let i = 1; i < ws.length; i++) {
        expect((ws[i] as HourWindow).start).toBe((ws[i - 1] as HourWindow).end + HOUR_MS);
      }
      expect(ws.every((w) => windowHours(w) <= size && w.end >= w.start)).toBe(true);
    }
  });

  it('gives one window for a single hour and none for an empty range', () => {
    expect(splitWindows(H(2024, 1, 1, 3), H(2024, 1, 1, 3), 24)).toEqual([{ start: H(2024, 1, 1, 3), end: H(2024, 1, 1, 3) }]);
    expect(splitWindows(H(2024, 1, 2), H(2024, 1, 1), 24)).toEqual([]);
  });

  it('rejects a window size that is not a whole number of hours', () => {
    expect(() => splitWindows(0, HOUR_MS, 0)).toThrow(RangeError);
    expect(() => splitWindows(0, HOUR_MS, 1.5)).toThrow(RangeError);
  });

  it('halves windows into two adjacent parts', () => {
    const day = { start: H(2024, 3, 1), end: H(2024, 3, 1, 23) };
    expect(halveWindow(day).map(describeWindow)).toEqual(['20240301T00..20240301T11', '20240301T12..20240301T23']);
    const three = { start: H(2024, 3, 1, 0), end: H(2024, 3, 1, 2) };
    expect(halveWindow(three).map(describeWindow)).toEqual(['20240301T00..20240301T01', '20240301T02']);
    expect(() => halveWindow({ start: H(2024, 3, 1), end: H(2024, 3, 1) })).toThrow(RangeError);
  });

  it('counts and describes windows', () => {
    expect(windowHours({ start: H(2024, 3, 1), end: H(2024, 3, 1, 23) })).toBe(24);
    expect(describeWindow({ start: H(2024, 3, 1, 5), end: H(2024, 3, 1, 5) })).toBe('20240301T05');
    expect(floorHour(H(2024, 3, 1, 5) + 1234567 % HOUR_MS)).toBe(H(2024, 3, 1, 5));
  });
});
