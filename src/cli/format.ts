/** Small helpers for human-readable summaries. */

/**
 * A count with thousands separators (`1,234,567`), as `toLocaleString('en-US')` writes it, without that call's
 * set-up of ICU number formatting: 20-30 ms on its first call, which every run's summary paid.
 */
export function n(value: number): string {
  if (!Number.isSafeInteger(value)) return value.toLocaleString('en-US');
  return String(value).replace(/\B(?=(\d{3})+$)/g, ',');
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function byReason(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, v]) => v > 0);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${n(v)}`).join(', ');
}
