import { MAX_EXPORT_IDENTITIES } from '../config/types.js';

/**
 * A position names one FME event inside one export window: (zip entry ordinal, line in entry, identity
 * ordinal), packed into one safe integer so that ranges of acknowledged events stay tiny in the state file.
 * Entries are read in name order and lines in file order, so positions grow monotonically through a window.
 */
const IDENTITY_SLOTS = MAX_EXPORT_IDENTITIES;
const LINE_SLOTS = 2 ** 31;

export const MAX_IDENTITIES = IDENTITY_SLOTS;

export function encodePosition(entryIndex: number, line: number, identityIndex: number): number {
  return (entryIndex * LINE_SLOTS + line) * IDENTITY_SLOTS + identityIndex;
}

export function decodePosition(pos: number): { entryIndex: number; line: number; identityIndex: number } {
  const identityIndex = pos % IDENTITY_SLOTS;
  const rest = (pos - identityIndex) / IDENTITY_SLOTS;
  const line = rest % LINE_SLOTS;
  return { entryIndex: (rest - line) / LINE_SLOTS, line, identityIndex };
}

/** Closed ranges [from, to] of positions, sorted and merged. */
export type Ranges = [number, number][];

/** Adds [from, to] to sorted, merged ranges (returns a new array). */
export function addRange(ranges: Ranges, from: number, to: number): Ranges {
  const out: Ranges = [];
  let lo = from;
  let hi = to;
  let placed = false;
  for (const [a, b] of ranges) {
    if (b < lo - 1) out.push([a, b]);
    else if (a > hi + 1) {
      if (!placed) {
        out.push([lo, hi]);
        placed = true;
      }
      out.push([a, b]);
    } else {
      lo = Math.min(lo, a);
      hi = Math.max(hi, b);
    }
  }
  if (!placed) out.push([lo, hi]);
  return out;
}

/** Whether `pos` lies inside one of the ranges (binary search). */
export function inRanges(ranges: Ranges, pos: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid] as [number, number];
    if (pos < r[0]) hi = mid - 1;
    else if (pos > r[1]) lo = mid + 1;
    else return true;
  }
  return false;
}
