import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Command, Option } from 'commander';
import { describeWindow, formatHour, HOUR_MS, parseHourArg } from '../amplitude/hours.js';
import { UsageError } from '../errors.js';
import { currentFolder } from '../io/current-folder.js';
import type { ExportEventsSummary } from '../pipeline/export-events.js';
import { passOverRanges, resumingRange, stopBeforeRanges } from '../pipeline/pass-over-ranges.js';
import { newestSettledHour, overlaps, planExport, planSkip, type Plan, type SkipPlan } from '../pipeline/export-plan.js';
import { removeStaleTemps } from '../state/atomic-write.js';
import { acquireLock, type HeldLock } from '../state/lock.js';
import { CURSOR_LABEL, deliveredSpans, earlierState, ExportStateStore, onlyPlaced, outside, parseStateHour, rangeLabel, statePaths, stateScope, takeOverState, type LabelledSpan, type TrackCheckpoint } from '../state/export-state.js';
import { finishTakeOver, refuseAfterKeyChange, takeOverFrom } from '../state/take-over.js';
import { addCommonOptions, runCommand, type CommandContext, type CommonFlags } from './context.js';
import { EXIT } from './exit-codes.js';
import { byReason, duration, n } from './format.js';
import { parseDuration, watchInterrupts } from './interrupts.js';

interface ExportEventsFlags extends CommonFlags {
  start?: string;
  end?: string;
  sinceLastRun?: boolean;
  maxRuntime?: string;
  dryRun?: boolean;
  output?: string;
  force?: boolean;
  skipTo?: string;
  takeOver?: string;
}

/** The hours `--skip-to` passed over in this run, as the summary shows them. */
export interface SkippedHoursSummary {
  skippedHours?: string;
}

export function summaryLines(s: ExportEventsSummary & SkippedHoursSummary, deadLetters: number): string[] {
  const renamed = Object.entries(s.renamedEventTypes);
  const more = renamed.length - Math.min(20, renamed.length) + s.renamedEventTypesNotListed;
  const lines = [
    `export-events ${s.start}..${s.end} (${s.mode})`,
    `  windows              ${n(s.windows)} (${n(s.hoursExported)} hours)`,
    `  events read          ${n(s.eventsRead)} (${n(s.blankLines)} blank lines, ${n(s.invalidLines)} invalid lines)`,
    s.mode === 'send'
      ? `  FME events sent      ${n(s.fmeEventsSent)} in ${n(s.batchesSent)} batches`
      : s.mode === 'output'
        ? `  FME events written   ${n(s.fmeEventsWritten)}`
        : `  FME events mapped    ${n(s.fmeEventsMapped)} (dry run: nothing sent)`,
  ];
  if (s.damagedEntries > 0) lines.push(`  damaged entries      ${n(s.damagedEntries)} (read up to the damage; the rest is named in the dead-letter file)`);
  if (s.skippedHours) lines.push(`  hours skipped        ${s.skippedHours} (--skip-to: not exported)`);
  if (s.fmeEventsAlreadyDelivered > 0) lines.push(`  already delivered    ${n(s.fmeEventsAlreadyDelivered)} (by an earlier interrupted run; not sent again)`);
  lines.push(
    `  skipped              ${byReason(s.skipped)}`,
    `  identities not sent  ${byReason(s.identitiesNotSent)}`,
    `  trimmed              ${byReason(s.trimmed)}`,
    `  dead letters         ${n(deadLetters)}`,
    `  renamed event types  ${renamed.length === 0 ? 'none' : renamed.slice(0, 20).map(([a, b]) => `"${a}" -> ${b}`).join(', ')}${more > 0 ? ` (+${n(more)} more)` : ''}`,
    ...(s.mergedEventTypes ? [`  merged event types   ${Object.entries(s.mergedEventTypes).map(([id, names]) => `${id} <- ${names.map((x) => `"${x}"`).join(', ')}`).join('; ')} (FME counts each as one type)`] : []),
    `  duration             ${duration(s.durationMs)} (${n(s.eventsPerSecond)} events/s)`,
  );
  return lines;
}

export function exportEventsCommand(): Command {
  const cmd = new Command('export-events')
    .description('Pull Amplitude events by upload hour (Export API) and send them to FME as track events')
    .option('--start <hour>', 'first upload hour, UTC, inclusive: YYYYMMDDTHH, YYYY-MM-DD (whole day) or an ISO date-time')
    .option('--end <hour>', 'last upload hour, UTC, inclusive (same formats); with --since-last-run it may only lower the end')
    .option('--since-last-run', 'continue after the last fully delivered hour in the state file, up to the newest settled hour')
    .option('--max-runtime <duration>', 'stop at a clean point after this long (e.g. 50m), before the next cron run')
    .option('--force', 'send hours again that the state says were already delivered (FME will count them twice)')
    .option('--skip-to <hour>', 'with --since-last-run: move the cursor forward to this hour first; the hours passed over are not exported')
    .option('--take-over <state-file>', "continue from another state file (the old keys' after a key rotation, or one in a former state.dir); it is renamed <file>.taken-over")
    .option('--dry-run', 'read and map, but send nothing and change no state')
    .addOption(new Option('--output <file>', 'write the FME events as NDJSON to this file instead of sending them (no state change)'));
  addCommonOptions(cmd);
  cmd.action(async (flags: ExportEventsFlags) => {
    process.exitCode = await runCommand('export-events', flags, (ctx) => exportEvents(ctx, flags));
  });
  return cmd;
}

async function exportEvents(ctx: CommandContext, flags: ExportEventsFlags): Promise<number> {
  const { config, logger } = ctx;
  if (flags.dryRun && flags.output) throw new UsageError('--dry-run and --output cannot be used together');
  const start = flags.start !== undefined ? parseHourArg(flags.start, 'start') : undefined;
  const end = flags.end !== undefined ? parseHourArg(flags.end, 'end') : undefined;
  const maxRuntimeMs = flags.maxRuntime !== undefined ? parseDuration(flags.maxRuntime, '--max-runtime') : undefined;
  const sending = !flags.dryRun && !flags.output;
  const skipTo = flags.skipTo !== undefined ? parseHourArg(flags.skipTo, 'start', '--skip-to') : undefined;
  if (skipTo !== undefined) {
    if (!flags.sinceLastRun) throw new UsageError('--skip-to moves the --since-last-run cursor: use it with --since-last-run (an explicit range simply starts where --start says)');
    if (!sending) throw new UsageError('--skip-to changes the state, which --dry-run and --output never do: run it without them');
  }
  if (flags.takeOver !== undefined && !sending) throw new UsageError('--take-over changes the state, which --dry-run and --output never do: run it without them');
  ctx.requireSecrets(sending ? ['amplitudeExport', 'fmeEvents'] : ['amplitudeExport']);
  // Mapping settings that cannot work stop the run before it changes any state (a --skip-to is recorded first).
  (await import('../pipeline/export-rows-pool.js')).checkMappingSettings(config.exportEvents);
  const { passesEventTypeFilter } = await import('../mapping/amplitude-to-fme.js');
  const pushed = config.pushImpressions.eventType;
  // Identify mode (this config's push-impressions) sends no events, so none can come back.
  if (config.pushImpressions.mode === 'event' && passesEventTypeFilter(config.exportEvents, pushed)) {
    // Replacing the excludeEventTypes list, or renaming the impressions' event type, drops the guard against a loop.
    logger.warn(
      `exportEvents.excludeEventTypes does not leave out ${JSON.stringify(pushed)}, the event type push-impressions gives FME's impressions in Amplitude (pushImpressions.eventType): ` +
        'they would go back to FME as track events. Add it to exportEvents.excludeEventTypes',
    );
  }

  if ((flags.sinceLastRun || sending) && ctx.loaded.filePath === undefined) {
    // Under cron, or from a subfolder, the working folder is often not the config's: a cursor (or the record of the
    // ranges sent, which keeps FME from getting them twice) kept next to nothing, on defaults.
    logger.warn(`no config file found in ${currentFolder()}: running on defaults, with the state in ${ctx.loaded.stateDir}. From cron, give --config <file> (or cd to its folder).`);
  }
  // Only a sending run touches FME, so only it takes the lock and moves the state.
  const scope = stateScope(config);
  const paths = statePaths(ctx.loaded.stateDir, scope);
  let lock: HeldLock | undefined;
  if (sending) lock = acquireLock(paths.lock, `export-events ${process.argv.slice(3).join(' ')}`.trim());
  const interrupts = watchInterrupts({ logger, maxRuntimeMs, onForce: () => lock?.release() });
  try {
    if (flags.takeOver !== undefined) takeOverFrom({ logger, stateDir: ctx.loaded.stateDir, config }, flags.takeOver, paths.state, scope);
    const stateFile = stateFileOf(ctx, paths.state, scope, sending);
    const store = sending || flags.sinceLastRun ? new ExportStateStore(stateFile.path, stateFile.scope) : undefined;
    if (sending && store) {
      // Under the lock: temp files of the state that killed runs left are nobody's.
      removeStaleTemps(stateFile.path);
      finishTakeOver(logger, store);
      // Dead letters an interrupted run left past its recorded progress: this run handles their batches again.
      store.cutBackDeadLetters(logger);
      ctx.deadLetters.onCreated = (file) => store.recordDeadLetterFile(file);
    }
    let checkpoint: TrackCheckpoint | undefined;
    /** --force, unless a range run with --force resumes (it goes on as that run was asked to). */
    let force = flags.force === true;
    /** A range run with --force that stopped part-way, going on (RangeTrack.forcedOver). */
    let forcedResume = false;
    const startAt = config.exportEvents.startAt !== undefined ? parseHourArg(config.exportEvents.startAt, 'start', 'exportEvents.startAt') : undefined;
    let skip: SkipPlan | undefined;
    /** A cursor that has done nothing yet (placed by a first --start that failed) starts again where --start says. */
    let restart = false;
    /** Where the cursor continues, unless --start places it again. */
    let cursorNext: number | undefined;
    if (store && flags.sinceLastRun) {
      checkpoint = store.cursor();
      const freshCursor = checkpoint.nextHour === undefined && !checkpoint.inProgressWindow;
      restart = start !== undefined && onlyPlaced(checkpoint.snapshot);
      cursorNext = restart ? undefined : checkpoint.nextHour;
      if (freshCursor && sending && start === undefined) refuseAfterKeyChange(ctx.loaded.stateDir, scope, startAt);
      if (skipTo !== undefined) skip = planCursorSkip(ctx, checkpoint, skipTo, start, startAt, cursorNext);
    } else if (store && sending && start !== undefined && end !== undefined) {
      // FME does not deduplicate: an explicit range is remembered, so a failed run resumes and a finished
      // one, or one overlapping hours already delivered, is not sent twice by accident.
      const earlier = store.findRange(start, end);
      const complete = earlier !== undefined && earlier.lastDeliveredHour === formatHour(end);
      if (complete && !flags.force) {
        throw new UsageError(`${formatHour(start)}..${formatHour(end)} was already delivered in full (${earlier.updatedAt}). FME does not deduplicate: add --force only if you really want these events counted twice.`);
      }
      // A range run with --force that stopped part-way goes on where it stopped, whether --force is given again (the
      // same command, run again) or not: starting over would send what it had sent once more. It sends the hours the
      // force was given for (forcedOver), and passes over hours other runs delivered since.
      forcedResume = earlier?.forcedOver !== undefined && !complete && !onlyPlaced(earlier);
      if (forcedResume) {
        force = false;
        logger.info(`${formatHour(start)}..${formatHour(end)} was run with --force and stopped part-way: it goes on where it stopped, and sends again the hours --force was given for`);
      }
      checkpoint = store.range(start, end, { force });
    }
    // The plan sees the cursor as --skip-to leaves it; the skip is recorded once the plan and the guard accept the run.
    const planFrom = (nextHour: number | undefined, lowerEnd?: number): Plan =>
      planExport({
        sinceLastRun: flags.sinceLastRun === true,
        // After passOverRanges the cursor continues past where --start placed it: --start no longer applies.
        start: skip || (flags.sinceLastRun && nextHour !== cursorNext) ? undefined : start,
        end: lowerEnd ?? end,
        startAt,
        lagHours: config.exportEvents.lagHours,
        windowHours: config.exportEvents.windowHours,
        now: Date.now(),
        nextHour,
        inProgress: skip ? undefined : checkpoint?.inProgressWindow,
        sending,
      });
    let plan = planFrom(skip ? (skipTo as number) : flags.sinceLastRun ? cursorNext : checkpoint?.nextHour);
    let skipped: string | undefined;
    // A first --start (or a new one, while the cursor has done nothing) records where the cursor starts before anything
    // else: a --skip-to then skips from there, and a run that stops before its first batch is acknowledged (or has
    // no hour ready yet) leaves the next run, from cron without --start, a place to go on from. Once only.
    let placed = false;
    const placeCursor = async (): Promise<void> => {
      if (!placed && restart && sending && start !== undefined && checkpoint) await checkpoint.begin(start);
      placed = true;
    };
    if (flags.sinceLastRun && sending && store && checkpoint && plan.kind === 'run') {
      await placeCursor();
      // After a --skip-to (recorded only once the run is accepted), the run stops before what ranges delivered; the next run passes over it.
      plan = skip ? stopBeforeRanges(logger, store, plan, planFrom) : await passOverRanges(logger, store, checkpoint, plan, planFrom);
    } else if (
      !flags.sinceLastRun &&
      sending &&
      !force &&
      store &&
      checkpoint &&
      plan.kind === 'run' &&
      (checkpoint.nextHour !== undefined || checkpoint.inProgressWindow)
    ) {
      // A range resuming meets hours other runs delivered as the cursor does: it passes over them (and says so); a
      // range run with --force does not (above).
      plan = await passOverRanges(logger, store, checkpoint, plan, planFrom, resumingRange(formatHour(start as number), formatHour(end as number)));
    }
    if (plan.kind === 'nothing') {
      await placeCursor();
      if (skip && checkpoint && store) skipped = await recordSkip(ctx, store, checkpoint, skip);
      logger.info(plan.message);
      ctx.summary({ command: 'export-events', nothingToDo: true, reason: plan.message, ...(skipped ? { skippedHours: skipped } : {}) });
      return EXIT.OK;
    }
    if (store && sending) {
      const own = flags.sinceLastRun ? CURSOR_LABEL : rangeLabel(formatHour(start as number), formatHour(end as number));
      const others = store.deliveredSpans().filter((s) => s.label !== own);
      // A range run with --force, resumed, sends the hours the force was given for.
      const inWay = checkpoint ? outside(others, checkpoint.sendsAgain) : others;
      let clash = overlaps(plan.start, plan.end, inWay);
      if (clash.length > 0 && forcedResume && flags.force === true) {
        // In the way of a forced range resumed is only what was delivered since the force: passOverRanges passed over
        // the hours delivered in full and stopped at a window another run delivered in part, which can neither be
        // passed over nor split. --force given again (as the refusal below says) sends that window and stops after
        // it, so that the next run passes over what follows; it does not start the range over.
        const { start: from, end: to } = plan;
        const first = inWay.filter((s) => s.span[0] <= to && s.span[1] >= from).sort((a, b) => a.span[0] - b.span[0])[0] as LabelledSpan;
        const upTo = planFrom(checkpoint?.nextHour, Math.min(first.span[1], to));
        if (upTo.kind === 'run') plan = upTo;
        clash = [];
      }
      // The cursor part-way through a window that another run (a range with --force) has since delivered in part:
      // passOverRanges cannot pass over the window (it cannot be split), and a plain --force would send every range
      // ahead again too. Only finishing the window, or skipping what is left of it, goes on: it says how.
      const ip = flags.sinceLastRun && !force ? checkpoint?.inProgressWindow : undefined;
      const inWindow = ip ? overlaps(ip.start, ip.end, inWay) : [];
      if (ip && inWindow.length > 0) {
        const [from, to] = [formatHour(ip.start), formatHour(ip.end)];
        throw new UsageError(
          `--since-last-run is part-way through ${from}..${to}, and another run has delivered hours of it since: ${inWindow.join('; ')}. The window cannot be split ` +
            `(what it delivered is recorded as positions in its export): finishing it sends its undelivered events, those of that run's hours too (FME counts those twice). ` +
            `To finish it: amp-fme export-events --since-last-run --force --end ${to}; the next runs go on as usual. To leave its undelivered events out instead: ` +
            `amp-fme export-events --since-last-run --skip-to ${formatHour(ip.end + HOUR_MS)}.`,
        );
      }
      if (clash.length > 0 && !force) {
        // A range that resumes would start over with --force, sending what it delivered before again too.
        const resuming = !flags.sinceLastRun && plan.resumed && !forcedResume ? ` This range was interrupted after delivering part of it: --force would start it over and send that part again as well.` : '';
        throw new UsageError(`part of ${formatHour(plan.start)}..${formatHour(plan.end)} was already delivered: ${clash.join('; ')}. FME does not deduplicate: narrow the range, or add --force to send those hours again.${resuming}`);
      }
      const again = overlaps(plan.start, plan.end, others);
      const why = flags.force === true ? '--force' : 'a range run with --force, resumed';
      if (again.length > 0) logger.warn(`${why}: sending hours that were already delivered again (${again.join('; ')}); FME will count them twice`);
    }
    await placeCursor();
    if (skip && checkpoint && store) skipped = await recordSkip(ctx, store, checkpoint, skip);
    if (!sending) checkpoint = undefined; // dry runs and --output read the state but never move it
    if (plan.warning !== undefined) logger.warn(plan.warning);
    if (plan.resumed) logger.info(`resuming where an interrupted run stopped, at ${formatHour(plan.start)}`);
    logger.info(`export-events ${formatHour(plan.start)}..${formatHour(plan.end)}: ${plan.windows.length} window(s)`, {
      start: formatHour(plan.start),
      end: formatHour(plan.end),
      windows: plan.windows.length,
      mode: sending ? 'send' : flags.dryRun ? 'dry-run' : 'output',
      ...(checkpoint ? { state: paths.state } : {}),
    });

    const progress = ctx.startProgress(
      [
        { id: 'windows', label: 'windows', total: plan.windows.length, unit: '' },
        { id: 'read', label: 'events read', total: 0, unit: 'events' },
        { id: 'sent', label: sending ? 'events sent' : 'events mapped', total: 0, unit: 'events' },
      ],
      'read',
      flags.quiet === true,
    );
    try {
      // Loaded here, not at start-up: each command loads only its own pipeline (see cli/main.ts).
      const { runExportEvents } = await import('../pipeline/export-events.js');
      const summary = await runExportEvents({
        config,
        start: plan.start,
        end: plan.end,
        windows: plan.windows,
        dryRun: flags.dryRun === true,
        output: flags.output,
        logger,
        deadLetters: ctx.deadLetters,
        ...(checkpoint ? { checkpoint } : {}),
        // To the range's own end, not this run's: a resumed range stops before hours another range delivered further
        // on, and the hours after those are still the range's to run.
        goOnAt: flags.sinceLastRun ? (hour) => `add --skip-to ${formatHour(hour)} to the next --since-last-run` : goOnInRange(end ?? plan.end, store),
        signal: interrupts.signal,
        onProgress: (p) => {
          progress.update('windows', p.windowsDone, p.windowsTotal);
          progress.update('read', p.eventsRead);
          progress.update('sent', p.fmeEventsSent);
        },
      });
      if (checkpoint && store) {
        // Nothing past the last recorded mark: the mark is dropped (ExportStateStore.settleDeadLetters).
        // Best effort: if this write fails, the mark stays, as before, and the run has still done what it says.
        try {
          ctx.deadLetters.sync();
          await store.settleDeadLetters(ctx.deadLetters.mark());
        } catch {
          // finish() syncs the dead letters again and says if they cannot be written.
        }
      }
      const full = { command: 'export-events', ...summary, ...(skipped ? { skippedHours: skipped } : {}) };
      return await ctx.finish(full, summaryLines(full, ctx.deadLetters.count));
    } catch (err) {
      ctx.stopProgress();
      if (checkpoint && store) {
        // As the state file says it, which is where the next run goes on: after a failed write it is behind what
        // this run did (the batches in flight then are sent again, as after a crash).
        const snap = store.recordedTrack(flags.sinceLastRun ? undefined : { start: start as number, end: end as number }) ?? checkpoint.snapshot;
        const again = flags.sinceLastRun ? 'the next --since-last-run' : 'running the same --start/--end again';
        // A cursor placed by a first --start (TrackCheckpoint.begin) has a last hour before its start: not a delivered one.
        const lastDelivered = deliveredSpans(snap).length > 0 ? snap.lastDeliveredHour : null;
        const next = parseStateHour(snap.lastDeliveredHour);
        const where = snap.inProgress
          ? `inside window ${snap.inProgress.start}..${snap.inProgress.end} (its delivered batches are recorded)`
          : lastDelivered
            ? `after ${lastDelivered}`
            : 'before the first window';
        logger.warn(`stopped ${where}; ${again} continues from there`, {
          lastDeliveredHour: lastDelivered,
          nextHour: next !== undefined ? formatHour(next + HOUR_MS) : undefined,
        });
      }
      throw err;
    }
  } finally {
    interrupts.dispose();
    lock?.release();
  }
}

/**
 * The state file to use, and the scope written in it. One kept under the name and scope an earlier version gave
 * these settings (earlierState) is taken over by a sending run (which holds the lock), and read where it is by
 * one that is not: without it, every range it recorded would be sent again.
 */
function stateFileOf(ctx: CommandContext, path: string, scope: string, sending: boolean): { path: string; scope: string } {
  const earlier = earlierState(ctx.loaded.stateDir, ctx.config);
  if (earlier === undefined || existsSync(path) || !existsSync(earlier.path)) return { path, scope };
  if (!sending) return earlier;
  takeOverState(earlier, path, scope);
  ctx.logger.info(`state file ${basename(earlier.path)} is now ${basename(path)}: fme.eventsBaseUrl ends in '/', which no longer gives it a state of its own`);
  return { path, scope };
}

/**
 * `--skip-to`, checked: what the cursor would pass over (planSkip), never past the hour after the newest
 * settled one, since later hours can still be exported. `--start` may only say where a cursor with no state yet began.
 */
function planCursorSkip(
  ctx: CommandContext,
  checkpoint: TrackCheckpoint,
  skipTo: number,
  start: number | undefined,
  startAt: number | undefined,
  nextHour: number | undefined,
): SkipPlan | undefined {
  const latest = newestSettledHour(Date.now(), ctx.config.exportEvents.lagHours) + HOUR_MS;
  if (skipTo > latest) {
    throw new UsageError(
      `--skip-to ${formatHour(skipTo)} is past ${formatHour(latest)}, the hour after the newest settled one: it would skip hours that can still be exported. Give ${formatHour(latest)} or earlier.`,
    );
  }
  const cursor = { nextHour, inProgress: checkpoint.inProgressWindow, delivered: checkpoint.delivered };
  // A cursor that delivered nothing yet takes a new --start (restart); one that did, only the hour it continues at.
  if (start !== undefined && (cursor.inProgress || (cursor.nextHour !== undefined && start !== cursor.nextHour))) {
    throw new UsageError('--start only says where the very first --since-last-run began, and the state already has a cursor: drop --start.');
  }
  const skip = planSkip(skipTo, cursor, start ?? startAt);
  if (!skip) ctx.logger.info(`--skip-to ${formatHour(skipTo)}: --since-last-run already continues there; nothing skipped`);
  return skip;
}

/**
 * How an explicit range ending at `end` goes on at `hour`, past hours the Export API cannot deliver: new ranges over
 * the hours from there to `end` that no run delivered. A new range over hours another run delivered is refused
 * (FME does not deduplicate), and a resumed range stops before them, so they are left out of the advice.
 */
function goOnInRange(end: number, store: ExportStateStore | undefined): (hour: number) => string {
  return (hour) => {
    if (hour > end) return 'the range ends there: there is nothing more of it to run';
    const spans = (store?.deliveredSpans() ?? []).map((s) => s.span).sort((a, b) => a[0] - b[0]);
    const todo: [number, number][] = [];
    let from = hour;
    for (const [a, b] of spans) {
      if (b < from || a > end) continue;
      if (a > from) todo.push([from, a - HOUR_MS]);
      from = Math.max(from, b + HOUR_MS);
    }
    if (from <= end) todo.push([from, end]);
    if (todo.length === 0) return `other runs delivered the rest of the range, up to ${formatHour(end)}: there is nothing more of it to run`;
    const runs = todo.map(([a, b]) => `--start ${formatHour(a)} --end ${formatHour(b)}`);
    return runs.length === 1 ? `run ${runs[0] as string} as a new range` : `run ${runs.join(', then ')} as new ranges (other runs delivered the hours between)`;
  };
}

/** Records a checked skip and says so, loudly. Returns the hours as `20240301T05..20240301T07`. */
async function recordSkip(ctx: CommandContext, store: ExportStateStore, checkpoint: TrackCheckpoint, skip: SkipPlan): Promise<string> {
  // What explicit ranges delivered among them, in full or in part: exported again another way, FME would count it twice.
  const theirs = overlaps(skip.from, skip.to, store.deliveredSpans().filter((s) => s.label !== CURSOR_LABEL));
  await checkpoint.skip(skip);
  const hours = describeWindow({ start: skip.from, end: skip.to });
  const partly = skip.partlyDelivered
    ? ` It includes ${describeWindow(skip.partlyDelivered)}, which an interrupted run had partly delivered: its undelivered events are passed over too, and its hours still count as delivered (sending them again needs --force).`
    : '';
  const delivered =
    theirs.length > 0
      ? ` Of them, these were delivered, in full or in part, by explicit ranges: ${theirs.join('; ')}. Exported again another way, what those ranges delivered would be counted twice; a range interrupted part-way through sends only the rest when it is run again with its own --start/--end.`
      : '';
  ctx.logger.warn(
    `--skip-to: skipped ${hours}; those hours will not be exported by --since-last-run. Export them another way (Amplitude's S3 export), ` +
      `or later with an explicit --start/--end range, which the state allows for hours no run delivered.${partly}${delivered}`,
    { skippedHours: hours },
  );
  return hours;
}
