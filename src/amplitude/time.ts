/**
 * Amplitude export times (`"2021-02-22 21:10:00.123000"`) to epoch ms.
 *
 * The strings are UTC without a zone marker, and JavaScript's `Date` would read them as local time
 * (specs/amplitude.md), so they are hand-parsed and assembled with `Date.UTC`. This runs once or more per
 * exported event, so it walks char codes instead of using a regex or `Date.parse`.
 *
 * Accepted: `YYYY-MM-DD HH:MM:SS`, optionally `.f` to `.fffffffff` (0-9 fraction digits; digits beyond
 * milliseconds are truncated, not rounded, so an event never moves later), a `T` instead of the space,
 * and a trailing `Z`. Anything else (null, empty, garbage, out-of-range fields) is `undefined`.
 */

const ZERO = 48;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const d = s.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

export function parseAmplitudeTime(s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined;
  const len = s.length;
  if (len < 19) return undefined;
  // Fixed part: YYYY-MM-DD?HH:MM:SS at positions 0..18.
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return undefined;
  const sep = s.charCodeAt(10);
  if (sep !== 32 && sep !== 84) return undefined; // ' ' or 'T'
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
    return undefined;
  }
  const leap = month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0));
  if (day > (DAYS_IN_MONTH[month - 1] ?? 0) + (leap ? 1 : 0)) return undefined;

  let i = 19;
  let ms = 0;
  if (i < len && s.charCodeAt(i) === 46) {
    // '.': 1 to 9 fraction digits; the first three are milliseconds.
    i++;
    const start = i;
    while (i < len) {
      const d = s.charCodeAt(i) - ZERO;
      if (d < 0 || d > 9) break;
      if (i - start < 3) ms = ms * 10 + d;
      i++;
    }
    const n = i - start;
    if (n === 0 || n > 9) return undefined;
    if (n === 1) ms *= 100;
    else if (n === 2) ms *= 10;
  }
  if (i < len && s.charCodeAt(i) === 90) i++; // 'Z'
  if (i !== len) return undefined;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}
