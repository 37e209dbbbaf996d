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
  // Rounded before it is split: 119.6 s is "2 min 0 s", not "1 min 60 s" (and 59.96 s is "1 min 0 s", not "60.0 s").
  if (Math.round(s * 10) < 600) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  const m = Math.floor(whole / 60);
  return `${m} min ${whole - m * 60} s`;
}

export function byReason(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, v]) => v > 0);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${n(v)}`).join(', ');
}
