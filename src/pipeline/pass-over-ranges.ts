import { formatHour, HOUR_MS, type HourWindow } from '../amplitude/hours.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { CURSOR_LABEL, EARLIER_RANGES, outside, rangeLabel, type ExportStateStore, type LabelledSpan, type TrackCheckpoint } from '../state/export-state.js';
import type { Plan } from './export-plan.js';

/**
 * How `--since-last-run` (and an explicit range resuming) meets hours that other runs delivered (FME does not
 * deduplicate, so they are never sent again): it passes over them, stops before them, or, at a window another run
 * delivered only in part, stops. Used by cli/export-events.ts once the run's plan is made.
 */

/** Makes the plan again from `nextHour` (the cursor's next hour), with its end lowered to `lowerEnd`. */
export type Replan = (nextHour: number | undefined, lowerEnd?: number) => Plan;

/**
 * The track that meets the hours: the `--since-last-run` cursor, or an explicit range resuming (one that was
 * interrupted; a new range over delivered hours is refused by the double-send guard instead).
 */
export interface PassingTrack {
  /** Its label among the state's delivered spans (LabelledSpan.label). */
  label: string;
  /** How messages name it. */
  name: string;
  /** What goes on past hours it stopped before, in messages: `... and <next> them`. */
  next: string;
  /** The cursor stops the run at a window delivered in part; a range goes on to it, and the double-send guard refuses it. */
  cursor: boolean;
}

export const CURSOR: PassingTrack = { label: CURSOR_LABEL, name: '--since-last-run', next: 'the next run passes over', cursor: true };

/** A range `start..end` (state hours) resuming. */
export function resumingRange(start: string, end: string): PassingTrack {
  const label = rangeLabel(start, end);
  return { label, name: label, next: `running it again (--start ${start} --end ${end}) passes over`, cursor: false };
}

/**
 * The track `who` (the cursor by default) over hours other runs delivered: it passes over them (recorded as
 * skipped, naming who delivered them) and goes on after them; hours delivered further on end this run's windows
 * before them, and the next run passes over them. At a window delivered only in part the cursor stops, after
 * passing over the delivered hours before it: the run ends (exit 2) saying how to go on. Returns the plan left.
 */
export async function passOverRanges(
  logger: Logger,
  store: ExportStateStore,
  checkpoint: TrackCheckpoint,
  first: Plan,
  planFrom: Replan,
  who: PassingTrack = CURSOR,
): Promise<Plan> {
  let plan = first;
  while (plan.kind === 'run') {
    const { start, end } = plan;
    // Hours a range run with --force was asked to send again are not in the way (RangeTrack.forcedOver).
    const spans = outside(store.deliveredSpans(), checkpoint.sendsAgain);
    const theirs = spans.filter((s) => s.label !== who.label && s.span[0] <= end && s.span[1] >= start).sort((a, b) => a.span[0] - b.span[0]);
    // A window an interrupted run of the track was part-way through is finished first (it cannot be split): only
    // hours after it are looked at, and ranges over the window itself are left to the double-send guard.
    const window: HourWindow | undefined = checkpoint.inProgressWindow;
    if (window) {
      const after = theirs.filter((s) => s.span[1] > window.end);
      if (after.length === 0 || theirs.some((s) => s.span[0] <= window.end)) return plan;
      const from = Math.max((after[0] as LabelledSpan).span[0], window.end + HOUR_MS);
      logger.info(`${who.name} goes up to ${formatHour(from - HOUR_MS)} this time: from ${formatHour(from)} on, hours were delivered by ${(after[0] as LabelledSpan).label}, and ${who.next} them`);
      return planFrom(start, from - HOUR_MS);
    }
    const next = theirs[0];
    if (next === undefined) return plan;
    if (next.span[0] > start) {
      const before = next.span[0] - HOUR_MS;
      logger.info(`${who.name} goes up to ${formatHour(before)} this time: ${formatHour(next.span[0])}..${formatHour(next.span[1])} was delivered by ${next.label}, and ${who.next} it`);
      return planFrom(start, before);
    }
    // Delivered hours at the cursor, and those right after them (past this run's end too), are passed over together,
    // up to the first window a range delivered only in part (partly delivered hours that another track delivered in
    // full are delivered): the cursor stops there.
    const chain = spans.filter((s) => s.label !== who.label && s.span[1] >= start).sort((a, b) => a.span[0] - b.span[0]);
    let to = next.span[1];
    let block: LabelledSpan | undefined;
    for (const s of chain) {
      if (s.span[0] > to + HOUR_MS) break;
      const open = s.partly && !spans.some((o) => !o.partly && o.label !== s.label && o.span[0] <= s.span[0] && o.span[1] >= s.span[1]);
      if (open && (block === undefined || s.span[0] < block.span[0])) block = s;
      to = Math.max(to, s.span[1]);
    }
    // A range never goes past its own end.
    const last = who.cursor ? to : Math.min(to, end);
    const upTo = block ? Math.min(block.span[0] - HOUR_MS, last) : last;
    if (upTo >= start) {
      const labels = [...new Set(chain.filter((s) => s.span[0] <= upTo).map((s) => s.label))].join(', ');
      await checkpoint.skip({ from: start, to: upTo }, labels);
      logger.info(`${who.name} passes over ${formatHour(start)}..${formatHour(upTo)}: delivered by ${labels}`, { passedOver: `${formatHour(start)}..${formatHour(upTo)}`, deliveredBy: labels });
    }
    if (block && block.span[0] <= last) {
      if (who.cursor) throw partlyDelivered(block);
      // A range goes on to the window, where the double-send guard refuses it and says why.
      return planFrom(Math.max(upTo + HOUR_MS, start));
    }
    plan = planFrom(last + HOUR_MS);
  }
  return plan;
}

/** Why --since-last-run can neither send nor pass over a window a range was part-way through, and what to do. */
function partlyDelivered(s: LabelledSpan): UsageError {
  const hours = `${formatHour(s.span[0])}..${formatHour(s.span[1])}`;
  const neither = 'which --since-last-run has reached: it can neither send those hours (FME would count the delivered part twice) nor pass over them (the rest would never be sent).';
  if (s.label === EARLIER_RANGES) {
    return new UsageError(
      `an explicit range, since folded into the ${EARLIER_RANGES}, was interrupted part-way through ${hours}, ${neither} Which of its events reached FME is no longer recorded: ` +
        `send the window again with amp-fme export-events --start ${formatHour(s.span[0])} --end ${formatHour(s.span[1])} --force (FME counts its delivered part twice), ` +
        `or pass over it with amp-fme export-events --since-last-run --skip-to ${formatHour(s.span[1] + HOUR_MS)} --end ${formatHour(s.span[1])} (its undelivered part is never sent; the --end keeps that run to the skip, and later runs go on from there).`,
    );
  }
  const [a, b] = s.label.replace(/^the range /, '').split('..');
  return new UsageError(`${s.label} was interrupted part-way through ${hours}, ${neither} Finish that range first: amp-fme export-events --start ${a} --end ${b}. Then --since-last-run passes over it.`);
}

/**
 * A `--skip-to` run over hours explicit ranges delivered: it stops before them (or, when they begin where it
 * continues, only records the skip), and the next run passes over them. Passing over them in this run would have
 * to record those hours before the skip that precedes them.
 */
export function stopBeforeRanges(logger: Logger, store: ExportStateStore, plan: Extract<Plan, { kind: 'run' }>, planFrom: Replan): Plan {
  const first = store
    .deliveredSpans()
    .filter((s) => s.label !== CURSOR_LABEL && s.span[0] <= plan.end && s.span[1] >= plan.start)
    .sort((a, b) => a.span[0] - b.span[0])[0];
  if (first === undefined) return plan;
  if (first.span[0] <= plan.start) {
    return { kind: 'nothing', message: `--skip-to: --since-last-run continues at ${formatHour(plan.start)}, where ${first.label} delivered hours: the next run passes over them` };
  }
  logger.info(`--since-last-run goes up to ${formatHour(first.span[0] - HOUR_MS)} this time: ${formatHour(first.span[0])}..${formatHour(first.span[1])} was delivered by ${first.label}, and the next run passes over it`);
  return planFrom(plan.start, first.span[0] - HOUR_MS);
}
