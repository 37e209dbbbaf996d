/**
 * Upload hours and export windows. An upload hour is the epoch ms of the start of a UTC hour; the Export
 * API names it `YYYYMMDDTHH` and treats both ends of a range as inclusive (specs/amplitude.md), so a
 * window here is a pair of inclusive hour starts too. Everything is computed in UTC with `Date.UTC`:
 * never `new Date('YYYY-MM-DD HH:..')`, which JavaScript reads as local time.
 */
import { UsageError } from '../errors.js';

export const HOUR_MS = 3_600_000;

/** Both ends inclusive, each the start of a UTC hour (epoch ms). */
export interface HourWindow {
  start: number;
  end: number;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** The start of the UTC hour containing `ms`. */
export function floorHour(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}

/** `YYYYMMDDTHH`, zero-padded, UTC: the Export API's `start`/`end` format. */
export function formatHour(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getUTCFullYear()).padStart(4, '0')}${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}T${pad2(d.getUTCHours())}`;
}

const MONTH_NAMES = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/**
 * Why fields in one of the accepted layouts name no time (Feb 30, hour 24, ...), or undefined when they do. The
 * layout was right, so "use YYYY-MM-DD" alone would send the user looking for a format mistake they did not make.
 */
export function fieldProblem(year: number, month: number, day: number, hour = 0, minute = 0, second = 0): string | undefined {
  if (month < 1 || month > 12) return `month ${pad2(month)} does not exist`;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  if (day < 1 || day > days) return `${MONTH_NAMES[month - 1] as string} ${year} has ${days} days, so day ${pad2(day)} does not exist`;
  if (hour > 23) return `hour ${pad2(hour)} does not exist: hours run from 00 to 23 (the midnight that ends a day is T00 of the next day)`;
  if (minute > 59) return `minute ${pad2(minute)} does not exist`;
  if (second > 59) return `second ${pad2(second)} does not exist`;
  return undefined;
}

/** Epoch ms of a UTC wall-clock time, or undefined when a field is out of range (Feb 30, hour 24, ...). */
export function utcTime(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number | undefined {
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  // Date.UTC rolls Feb 30 over into March: a changed day means the date does not exist.
  const d = new Date(t);
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return undefined;
  return t;
}

/** A `--start`/`--end`/`--skip-to`/`exportEvents.startAt` value that names no hour; `why` says which field, when the layout was right. */
export class InvalidHourError extends UsageError {
  constructor(
    message: string,
    readonly why: string | undefined,
  ) {
    super(message);
  }
}

const HOUR_FORMATS = 'YYYYMMDDTHH (20240301T05), YYYY-MM-DD (a whole day) or an ISO date-time (2024-03-01T05:30:00Z, 2024-03-01T07:30+02:00; no zone means UTC)';

const RE_COMPACT = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/i;
const RE_DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
// Date, `T` or space, hour, optional minutes/seconds/fraction, optional zone (Z, ±HH, ±HH:MM, ±HHMM).
const RE_ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

function zoneOffsetMs(zone: string | undefined): number | undefined {
  if (zone === undefined || zone.toUpperCase() === 'Z') return 0;
  const m = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
  if (!m) return undefined;
  const hours = Number(m[2]);
  const minutes = Number(m[3] ?? '0');
  if (hours > 23 || minutes > 59) return undefined;
  const sign = m[1] === '-' ? -1 : 1;
  return sign * (hours * 60 + minutes) * 60_000;
}

/**
 * Parses a `--start`/`--end` value into an upload hour. A bare day covers the whole day, so it means T00
 * as a start and T23 as an end; a date-time is truncated to the UTC hour that contains it.
 */
export function parseHourArg(text: string, role: 'start' | 'end', option = `--${role}`): number {
  const value = text.trim();
  const fail = (why?: string): never => {
    throw new InvalidHourError(`Invalid ${option} hour "${text}": ${why !== undefined ? `${why}. Use` : 'use'} ${HOUR_FORMATS}.`, why);
  };
  // The layout matched but a field is out of range: say which, not only which layouts there are.
  const fields = (...f: number[]): number => utcTime(f[0] as number, f[1] as number, f[2] as number, f[3], f[4], f[5]) ?? fail(fieldProblem(f[0] as number, f[1] as number, f[2] as number, f[3], f[4], f[5]));
  let m = RE_COMPACT.exec(value);
  if (m) {
    return fields(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]));
  }
  m = RE_DAY.exec(value);
  if (m) {
    const day = fields(Number(m[1]), Number(m[2]), Number(m[3]));
    return role === 'start' ? day : day + 23 * HOUR_MS;
  }
  m = RE_ISO.exec(value);
  if (m) {
    const offset = zoneOffsetMs(m[8]) ?? fail(`the zone offset ${m[8] ?? ''} does not exist (from -23:59 to +23:59)`);
    const local = fields(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5] ?? '0'), Number(m[6] ?? '0'));
    // 07:30+02:00 is 05:30 UTC: subtract the offset, then truncate to the hour.
    return floorHour(local - offset);
  }
  return fail();
}

/** Number of hours in a window (1 when start == end). */
export function windowHours(w: HourWindow): number {
  return Math.floor((w.end - w.start) / HOUR_MS) + 1;
}

/** `20240301T00..20240301T23`, or a single `20240301T05` for a one-hour window. */
export function describeWindow(w: HourWindow): string {
  return w.start === w.end ? formatHour(w.start) : `${formatHour(w.start)}..${formatHour(w.end)}`;
}

/**
 * Splits [start, end] (inclusive hours) into consecutive windows of at most `size` hours. Windows never
 * share an hour: the Export API includes both ends (specs/amplitude.md), so an overlap would export an
 * hour twice and FME, which does not deduplicate, would count its events twice. Empty when start > end.
 */
export function splitWindows(start: number, end: number, size: number): HourWindow[] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`window size must be a whole number of hours >= 1, got ${size}`);
  const first = floorHour(start);
  const last = floorHour(end);
  const out: HourWindow[] = [];
  for (let s = first; s <= last; s += size * HOUR_MS) {
    out.push({ start: s, end: Math.min(last, s + (size - 1) * HOUR_MS) });
  }
  return out;
}

/** Splits a window of two or more hours into two halves (the first gets the extra hour when odd). */
export function halveWindow(w: HourWindow): [HourWindow, HourWindow] {
  const n = windowHours(w);
  if (n < 2) throw new RangeError(`cannot halve the one-hour window ${describeWindow(w)}`);
  const firstHours = Math.ceil(n / 2);
  const mid = w.start + (firstHours - 1) * HOUR_MS;
  return [
    { start: w.start, end: mid },
    { start: mid + HOUR_MS, end: w.end },
  ];
}
