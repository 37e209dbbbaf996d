import { describe, expect, it } from 'vitest';
import { formatHour } from '../../src/amplitude/hours.js';
import { newestSettledHour, overlaps, planExport, planSkip, type PlanInput } from '../../src/pipeline/export-plan.js';

const H = 3_600_000;
const at = (iso: string): number => Date.parse(iso);
const base: PlanInput = {
  sinceLastRun: true,
  start: undefined,
  end: undefined,
  startAt: undefined,
  lagHours: 3,
  windowHours: 24,
  now: at('2024-03-05T12:30:00Z'),
  nextHour: undefined,
  inProgress: undefined,
  sending: true,
};

const hours = (p: ReturnType<typeof planExport>): string[] =>
  p.kind === 'run' ? p.windows.map((w) => `${formatHour(w.start)}..${formatHour(w.end)}`) : [p.message];

describe('newestSettledHour', () => {
  it('is the newest hour that ended at least lagHours ago', () => {
    // 12:30 - 3 h = 09:30: the 08:00 hour ended at 09:00, the 09:00 hour has not ended 3 h ago yet.
    expect(formatHour(newestSettledHour(at('2024-03-05T12:30:00Z'), 3))).toBe('20240305T08');
    expect(formatHour(newestSettledHour(at('2024-03-05T12:00:00Z'), 3))).toBe('20240305T08');
  });
});

describe('planExport with --since-last-run', () => {
  it('needs a start the first time', () => {
    expect(() => planExport(base)).toThrow(/first --since-last-run.*--start.*exportEvents.startAt/);
  });

  it('starts the first run from --start, else from exportEvents.startAt, up to the settled hour', () => {
    expect(hours(planExport({ ...base, start: at('2024-03-05T00:00:00Z') }))).toEqual(['20240305T00..20240305T08']);
    expect(hours(planExport({ ...base, startAt: at('2024-03-04T00:00:00Z') }))).toEqual(['20240304T00..20240304T23', '20240305T00..20240305T08']);
  });

  it('continues after the last delivered hour, and --end only lowers the end', () => {
    expect(hours(planExport({ ...base, nextHour: at('2024-03-05T06:00:00Z') }))).toEqual(['20240305T06..20240305T08']);
    expect(hours(planExport({ ...base, nextHour: at('2024-03-05T06:00:00Z'), end: at('2024-03-05T07:00:00Z') }))).toEqual(['20240305T06..20240305T07']);
    expect(hours(planExport({ ...base, nextHour: at('2024-03-05T06:00:00Z'), end: at('2024-03-06T07:00:00Z') }))).toEqual(['20240305T06..20240305T08']);
  });

  it('does nothing, and says when the next hour settles, when no new hour has settled', () => {
    const p = planExport({ ...base, nextHour: at('2024-03-05T09:00:00Z') });
    expect(p.kind).toBe('nothing');
    expect(hours(p)[0]).toMatch(/next hour to export is 20240305T09, which settles at 2024-03-05T13:00:00.000Z/);
  });

  it('says that --end stops before the cursor, when it is --end and not the lag that leaves nothing to do', () => {
    const p = planExport({ ...base, nextHour: at('2024-03-05T02:00:00Z'), end: at('2024-03-05T01:00:00Z') });
    expect(p.kind).toBe('nothing');
    expect(hours(p)[0]).toBe('nothing to do: --since-last-run continues at 20240305T02, after --end 20240305T01');
    // An --end past the newest settled hour is capped by the lag: the message is the lag's.
    const lag = planExport({ ...base, nextHour: at('2024-03-05T09:00:00Z'), end: at('2024-03-06T00:00:00Z') });
    expect(hours(lag)[0]).toMatch(/which settles at/);
  });

  it('re-requests an interrupted window exactly, then goes on', () => {
    const p = planExport({ ...base, nextHour: at('2024-03-04T00:00:00Z'), inProgress: { start: at('2024-03-04T00:00:00Z'), end: at('2024-03-04T11:00:00Z') } });
    expect(hours(p)).toEqual(['20240304T00..20240304T11', '20240304T12..20240305T08']);
  });

  it('refuses a --start that disagrees with the state', () => {
    expect(() => planExport({ ...base, nextHour: at('2024-03-05T06:00:00Z'), start: at('2024-03-01T00:00:00Z') })).toThrow(/conflicts with the state/);
  });
});

describe('planExport with an explicit range', () => {
  const explicit = { ...base, sinceLastRun: false, now: at('2024-03-08T00:00:00Z') };
  it('needs --start and --end, in order', () => {
    expect(() => planExport(explicit)).toThrow(/--start is required/);
    expect(() => planExport({ ...explicit, start: at('2024-03-02T00:00:00Z') })).toThrow(/--end is required/);
    expect(() => planExport({ ...explicit, start: at('2024-03-02T00:00:00Z'), end: at('2024-03-01T00:00:00Z') })).toThrow(/before --start/);
  });

  it('cuts the range into windows that never share an hour', () => {
    const p = planExport({ ...explicit, start: at('2024-03-04T00:00:00Z'), end: at('2024-03-06T05:00:00Z') });
    expect(hours(p)).toEqual(['20240304T00..20240304T23', '20240305T00..20240305T23', '20240306T00..20240306T05']);
  });

  it('refuses to send an hour that has not settled, and only warns when nothing is recorded', () => {
    // At 12:30 with a 3 h lag the newest settled hour is 08:00.
    const range = { ...explicit, start: at('2024-03-05T00:00:00Z'), now: base.now };
    expect(hours(planExport({ ...range, end: at('2024-03-05T08:00:00Z') }))).toEqual(['20240305T00..20240305T08']);
    expect(() => planExport({ ...range, end: at('2024-03-05T09:00:00Z') })).toThrow(
      '--end 20240305T09 has not settled yet: Amplitude still adds events to an hour for about 2 hours after it ends, and the newest hour that has settled ' +
        '(exportEvents.lagHours 3) is 20240305T08. Sent now, its late events would never reach FME: give --end 20240305T08 or earlier, or run again after 2024-03-05T13:00:00.000Z.',
    );
    expect(() => planExport({ ...range, end: at('2024-03-05T23:00:00Z'), lagHours: 0 })).toThrow(/newest hour that has settled \(exportEvents.lagHours 0\) is 20240305T11/);
    const dry = planExport({ ...range, end: at('2024-03-05T23:00:00Z'), sending: false });
    expect(dry.kind === 'run' && dry.warning).toMatch(/^--end 20240305T23 has not settled yet: .*what is read now may miss events that arrive later\.$/);
  });

  it('resumes a remembered range after its last delivered hour', () => {
    const p = planExport({ ...explicit, start: at('2024-03-04T00:00:00Z'), end: at('2024-03-05T23:00:00Z'), nextHour: at('2024-03-05T00:00:00Z') });
    expect(p.kind === 'run' && p.resumed).toBe(true);
    expect(hours(p)).toEqual(['20240305T00..20240305T23']);
  });
});

describe('planSkip (--skip-to)', () => {
  const next = at('2024-03-05T03:00:00Z');
  const cursor = { nextHour: next, inProgress: undefined };
  const hoursOf = (skip: ReturnType<typeof planSkip>): string[] | undefined => skip && [formatHour(skip.from), formatHour(skip.to)];

  it('passes over the hours from the cursor to the hour before --skip-to', () => {
    expect(hoursOf(planSkip(at('2024-03-05T06:00:00Z'), cursor, undefined))).toEqual(['20240305T03', '20240305T05']);
    expect(planSkip(at('2024-03-05T04:00:00Z'), cursor, undefined)).toEqual({ from: next, to: next });
  });

  it('skips nothing when the cursor is already there', () => {
    expect(planSkip(next, cursor, undefined)).toBeUndefined();
  });

  it('never goes back over delivered hours', () => {
    expect(() => planSkip(next - H, cursor, undefined)).toThrow(/before 20240305T03.*delivered.*--force/);
  });

  it('with no state yet, starts where the first run began (--start or startAt), and needs it', () => {
    const fresh = { nextHour: undefined, inProgress: undefined };
    expect(hoursOf(planSkip(next + H, fresh, next))).toEqual(['20240305T03', '20240305T03']);
    expect(() => planSkip(next, fresh, undefined)).toThrow(/no state yet, so give that hour with --start/);
    expect(() => planSkip(next - H, fresh, next)).toThrow(/where the first --since-last-run starts: there is nothing to skip/);
    // A cursor that a first --start only placed (nothing delivered yet) says the same.
    expect(() => planSkip(next - H, { nextHour: next, inProgress: undefined, delivered: false }, undefined)).toThrow(/is before 20240305T03, where the first --since-last-run starts: there is nothing to skip/);
  });

  it('passes over an interrupted window whole or not at all', () => {
    const w = { start: next, end: next + 23 * H };
    const interrupted = { nextHour: next, inProgress: w };
    expect(() => planSkip(next + 5 * H, interrupted, undefined)).toThrow(/part-way through 20240305T03..20240306T02.*--skip-to 20240306T03 or later/);
    expect(planSkip(next + 26 * H, interrupted, undefined)).toEqual({ from: next, to: next + 25 * H, partlyDelivered: w });
    // A first window interrupted before any hour was done: no cursor hour yet, the window says where it is.
    expect(planSkip(next + 24 * H, { nextHour: undefined, inProgress: w }, undefined)).toEqual({ from: next, to: next + 23 * H, partlyDelivered: w });
  });
});

describe('overlaps', () => {
  it('names the hours another track already delivered', () => {
    const spans = [{ label: '--since-last-run', span: [at('2024-03-01T00:00:00Z'), at('2024-03-03T23:00:00Z')] as [number, number] }];
    expect(overlaps(at('2024-03-03T00:00:00Z'), at('2024-03-04T00:00:00Z'), spans)).toEqual(['20240303T00..20240303T23 (delivered by --since-last-run)']);
    expect(overlaps(at('2024-03-04T00:00:00Z'), at('2024-03-05T00:00:00Z') + H, spans)).toEqual([]);
  });

  it('says a window delivered in part once: with its track\'s delivered hours around it, or as delivered in part on its own', () => {
    const day = (d: string): [number, number] => [at(`${d}T00:00:00Z`), at(`${d}T23:00:00Z`)];
    const cursor = [
      { label: '--since-last-run', span: [at('2024-03-01T00:00:00Z'), at('2024-03-03T23:00:00Z')] as [number, number] },
      { label: '--since-last-run', span: day('2024-03-02'), partly: true as const },
    ];
    expect(overlaps(at('2024-03-02T00:00:00Z'), at('2024-03-04T00:00:00Z'), cursor)).toEqual(['20240302T00..20240303T23 (delivered by --since-last-run)']);
    const range = [{ label: 'the range 20240305T00..20240305T23', span: day('2024-03-05'), partly: true as const }];
    expect(overlaps(at('2024-03-05T00:00:00Z'), at('2024-03-05T05:00:00Z'), range)).toEqual(['20240305T00..20240305T05 (delivered in part by the range 20240305T00..20240305T23)']);
  });
});
