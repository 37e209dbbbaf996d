import { floorHour, formatHour, HOUR_MS, splitWindows, type HourWindow } from '../amplitude/hours.js';
import { UsageError } from '../errors.js';

export interface PlanInput {
  /** `--since-last-run` */
  sinceLastRun: boolean;
  /** Parsed `--start` / `--end`, if given. */
  start: number | undefined;
  end: number | undefined;
  /** Parsed `exportEvents.startAt`, if configured. */
  startAt: number | undefined;
  lagHours: number;
  windowHours: number;
  now: number;
  /** From the track being continued: the first hour it has not delivered (undefined if it has delivered none). */
  nextHour: number | undefined;
  /** From the track being continued: the window an interrupted run was delivering. */
  inProgress: HourWindow | undefined;
  /** Whether the run sends (and records what it delivered), not --dry-run or --output. */
  sending: boolean;
}

export type Plan =
  | { kind: 'run'; start: number; end: number; windows: HourWindow[]; resumed: boolean; warning?: string }
  | { kind: 'nothing'; message: string };

/** Newest upload hour that ended at least `lagHours` ago: Export data settles ~2 h after the hour (specs/amplitude.md). */
export function newestSettledHour(now: number, lagHours: number): number {
  return floorHour(now - lagHours * HOUR_MS) - HOUR_MS;
}

/**
 * What is wrong with an explicit range that ends in an hour that has not settled, if it does: its export
 * misses the events Amplitude adds later (specs/amplitude.md: "Never ask for hours that have not settled").
 */
function unsettled(end: number, now: number, lagHours: number): string | undefined {
  const settled = newestSettledHour(now, lagHours);
  if (end <= settled) return undefined;
  return (
    `--end ${formatHour(end)} has not settled yet: Amplitude still adds events to an hour for about 2 hours after it ends, and the newest ` +
    `hour that has settled (exportEvents.lagHours ${lagHours}) is ${formatHour(settled)}`
  );
}

/**
 * Decides which windows a run exports. Pure, so every case is tested without a clock.
 * A track that was interrupted inside a window re-requests exactly that window first: the same export gives
 * the same positions, so its progress marks apply.
 */
export function planExport(p: PlanInput): Plan {
  let end: number;
  let warning: string | undefined;
  if (p.sinceLastRun) {
    const settled = newestSettledHour(p.now, p.lagHours);
    // --end may lower the end, never raise it past the settling lag.
    end = p.end !== undefined ? Math.min(p.end, settled) : settled;
  } else {
    if (p.start === undefined) throw new UsageError('--start is required (or use --since-last-run), e.g. --start 2024-03-01 --end 2024-03-07');
    if (p.end === undefined) throw new UsageError('--end is required, e.g. --start 2024-03-01 --end 2024-03-07');
    if (p.end < p.start) throw new UsageError(`--end ${formatHour(p.end)} is before --start ${formatHour(p.start)}`);
    const problem = unsettled(p.end, p.now, p.lagHours);
    if (problem !== undefined && p.sending) {
      // The range is recorded as delivered, so what arrives later would never be sent.
      const ready = new Date(p.end + HOUR_MS + p.lagHours * HOUR_MS).toISOString();
      throw new UsageError(`${problem}. Sent now, its late events would never reach FME: give --end ${formatHour(newestSettledHour(p.now, p.lagHours))} or earlier, or run again after ${ready}.`);
    }
    if (problem !== undefined) warning = `${problem}: what is read now may miss events that arrive later.`;
    end = p.end;
  }

  if (p.inProgress) {
    const rest = splitWindows(p.inProgress.end + HOUR_MS, end, p.windowHours);
    return { kind: 'run', start: p.inProgress.start, end: Math.max(end, p.inProgress.end), windows: [p.inProgress, ...rest], resumed: true };
  }

  let start: number;
  let resumed = false;
  if (p.nextHour !== undefined) {
    if (p.sinceLastRun && p.start !== undefined && p.start !== p.nextHour) {
      throw new UsageError(
        `--start ${formatHour(p.start)} conflicts with the state: earlier runs delivered up to ${formatHour(p.nextHour - HOUR_MS)}, so --since-last-run continues at ${formatHour(p.nextHour)}. ` +
          'Drop --start, or run an explicit range without --since-last-run.',
      );
    }
    start = p.nextHour;
    resumed = !p.sinceLastRun;
  } else if (p.start !== undefined) {
    start = p.start;
  } else if (p.startAt !== undefined) {
    start = p.startAt;
  } else {
    throw new UsageError('this is the first --since-last-run and there is no state yet: give --start <hour> or set exportEvents.startAt in the config file.');
  }

  if (start > end) {
    if (!p.sinceLastRun) return { kind: 'nothing', message: `nothing to do: every hour of ${formatHour(p.start as number)}..${formatHour(end)} was already delivered` };
    // An --end that stops before the cursor, not the settling lag, is what leaves nothing to do.
    if (p.end !== undefined && p.end < newestSettledHour(p.now, p.lagHours)) {
      return { kind: 'nothing', message: `nothing to do: --since-last-run continues at ${formatHour(start)}, after --end ${formatHour(p.end)}` };
    }
    const settlesAt = new Date(start + HOUR_MS + p.lagHours * HOUR_MS).toISOString();
    return { kind: 'nothing', message: `nothing to do: the next hour to export is ${formatHour(start)}, which settles at ${settlesAt} (lag ${p.lagHours} h)` };
  }
  return { kind: 'run', start, end, windows: splitWindows(start, end, p.windowHours), resumed, ...(warning !== undefined ? { warning } : {}) };
}

/** What `--skip-to` passes over: hours `from..to`, and the unfinished window among them, if any. */
export interface SkipPlan {
  from: number;
  to: number;
  /** The window an interrupted run was part-way through: part of it was delivered, the rest is passed over. */
  partlyDelivered?: HourWindow;
}

/**
 * `--skip-to <hour>`: what the cursor passes over to continue at `skipTo`, or undefined when it already
 * continues there. Only forward: hours before the cursor were delivered, and FME does not deduplicate. A
 * window an interrupted run was part-way through is passed over whole or not at all, because its progress
 * marks are positions in that window's export. With no cursor yet, it starts from `firstStart` (`--start` or
 * `exportEvents.startAt`), where the first run began.
 */
export function planSkip(
  skipTo: number,
  cursor: { nextHour: number | undefined; inProgress: HourWindow | undefined; delivered?: boolean },
  firstStart: number | undefined,
): SkipPlan | undefined {
  const { nextHour, inProgress } = cursor;
  // Whether the cursor has delivered anything: not one that a first --start only placed (TrackCheckpoint.begin).
  const delivered = cursor.delivered ?? (nextHour !== undefined || inProgress !== undefined);
  const from = inProgress?.start ?? nextHour ?? firstStart;
  if (from === undefined) {
    throw new UsageError('--skip-to needs to know where --since-last-run started: there is no state yet, so give that hour with --start (or set exportEvents.startAt).');
  }
  if (skipTo < from) {
    const why = !delivered
      ? 'where the first --since-last-run starts: there is nothing to skip.'
      : 'where --since-last-run continues: the hours before it were delivered, and FME does not deduplicate. ' +
        'To send hours again on purpose, run an explicit --start/--end range with --force.';
    throw new UsageError(`--skip-to ${formatHour(skipTo)} is before ${formatHour(from)}, ${why}`);
  }
  if (inProgress && skipTo <= inProgress.end) {
    throw new UsageError(
      `an interrupted run was part-way through ${formatHour(inProgress.start)}..${formatHour(inProgress.end)}, and its delivered batches are recorded as ` +
        `positions in that window's export, so it cannot be split: run --since-last-run without --skip-to to finish it, or pass over it whole with --skip-to ${formatHour(inProgress.end + HOUR_MS)} or later.`,
    );
  }
  if (skipTo === from) return undefined;
  return { from, to: skipTo - HOUR_MS, ...(inProgress ? { partlyDelivered: inProgress } : {}) };
}

/** Hours of [start, end] already delivered by other tracks, for the double-send guard. */
export function overlaps(start: number, end: number, spans: { label: string; span: [number, number]; partly?: true }[]): string[] {
  // A window a track delivered in part, inside hours the same track counts as delivered, is said once, with them.
  const said = spans.filter((s) => !(s.partly && spans.some((o) => !o.partly && o.label === s.label && o.span[0] <= s.span[0] && o.span[1] >= s.span[1])));
  const found = said
    .filter(({ span: [a, b] }) => a <= end && b >= start)
    .map(({ label, span: [a, b], partly }) => `${formatHour(Math.max(a, start))}..${formatHour(Math.min(b, end))} (delivered${partly ? ' in part' : ''} by ${label})`);
  return [...new Set(found)];
}
