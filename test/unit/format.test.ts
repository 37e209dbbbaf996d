import { describe, expect, it } from 'vitest';
import { duration, n } from '../../src/cli/format.js';
import { summaryLines } from '../../src/cli/export-events.js';

describe('n (counts in summaries)', () => {
  it('groups digits as toLocaleString("en-US") does', () => {
    const values = [0, 7, 999, 1000, 1001, 65_536, 999_999, 1_000_000, 1_234_567, 20_000_000_000, -1, -1234, -1_234_567, Number.MAX_SAFE_INTEGER, 1.5, 1234.5678, 1e21];
    for (const v of values) expect(n(v), String(v)).toBe(v.toLocaleString('en-US'));
  });
});

describe('duration (the summary line "duration")', () => {
  it('never writes 60 seconds: it rounds before it splits into minutes and seconds', () => {
    expect(duration(999)).toBe('999 ms');
    expect(duration(59_940)).toBe('59.9 s');
    expect(duration(59_960)).toBe('1 min 0 s');
    expect(duration(60_000)).toBe('1 min 0 s');
    expect(duration(119_600)).toBe('2 min 0 s');
    expect(duration(125_000)).toBe('2 min 5 s');
    expect(duration(3_599_700)).toBe('60 min 0 s');
  });

  it('shows in the export-events summary as a user reads it', () => {
    const lines = summaryLines({ start: '20240301T00', end: '20240301T23', mode: 'send', windows: 1, hoursExported: 24, eventsRead: 1196, blankLines: 0, invalidLines: 0, fmeEventsSent: 1196, batchesSent: 1, damagedEntries: 0, fmeEventsAlreadyDelivered: 0, durationMs: 119_600, eventsPerSecond: 10, renamedEventTypes: {}, renamedEventTypesNotListed: 0, skipped: {}, identitiesNotSent: {}, trimmed: {} } as unknown as Parameters<typeof summaryLines>[0], 0);
    expect(lines.find((l) => l.includes('duration'))).toBe('  duration             2 min 0 s (10 events/s)');
  });
});
