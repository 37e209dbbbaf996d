import { existsSync, renameSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { describeWindow, formatHour, HOUR_MS } from '../amplitude/hours.js';
import type { Config } from '../config/types.js';
import { UsageError } from '../errors.js';
import { currentFolder } from '../io/current-folder.js';
import { shellArg } from '../io/shell-quote.js';
import { withPath } from '../io/file-errors.js';
import type { Logger } from '../log/logger.js';
import { cursorWouldSend, deliveredHours, earlierState, type ExportState, type ExportStateStore, fileDigest, isUnused, otherStates, parseStateHour, readExportState, stateFileScope, statePaths, takeOverState, type OtherState } from './export-state.js';
import { acquireLock } from './lock.js';

/**
 * Key rotation for export-events' state. The state file's name and scope are a hash of the keys and hosts, so new
 * keys start with no state: a first --since-last-run is refused while other keys' states are there
 * (refuseAfterKeyChange), and `--take-over` makes one of them these keys' state (takeOverFrom), a take-over cut
 * short being finished by the next run (finishTakeOver).
 */

/** What a take-over needs of the command: its logger, state.dir and config. */
export interface TakeOverContext {
  logger: Logger;
  stateDir: string;
  config: Config;
}

/**
 * A fresh cursor that would start at `exportEvents.startAt` while `state.dir` holds what other keys
 * delivered: most likely a key rotation (the state's scope is a hash of the keys), and starting at startAt
 * would send every hour since again (FME does not deduplicate). Stops with what to do instead; an explicit
 * `--start` is the user's decision and is not second-guessed.
 */
export function refuseAfterKeyChange(stateDir: string, scope: string, startAt: number | undefined): void {
  const others = otherStates(stateDir, scope);
  if (others.length === 0) return;
  const list = others.map((o) => `${basename(o.file)} (${o.lastDeliveredHour === undefined ? 'unreadable' : `delivered ${o.delivered.join(', ')}`})`).join('; ');
  const file = others.length === 1 ? shellArg((others[0] as OtherState).file) : "<the old keys' state file>";
  const guard = startAt !== undefined ? `amp-fme will not start from exportEvents.startAt (${formatHour(startAt)}) by itself` : 'amp-fme does not guess a start';
  throw new UsageError(
    `there is no --since-last-run state for these keys yet, but ${stateDir} holds what other keys delivered: ${list}. ` +
      `If you changed the Amplitude or FME keys of the same project and environment, run once with --since-last-run --take-over ${file}: ` +
      'the new keys go on exactly where the old ones stopped, past what their ranges delivered and through a window they were part-way through, and later runs continue from there. ' +
      `If these keys belong to another project or environment, give its first hour with --start. ${guard}: FME does not deduplicate, and hours sent with the old keys would be counted twice.`,
  );
}

/**
 * `--take-over <file>`: this config goes on from another scope's state file, after a key rotation (the scope is
 * a hash of the keys) or a move of state.dir. Its cursor, ranges and a window part-way through carry on as they
 * were; a new cursor started with --start instead would send again what only that state knows was delivered,
 * since FME does not deduplicate. Only into a state these keys have not used yet, holding the old file's lock too
 * (a run of the old keys may be going). The old file is renamed `<file>.taken-over`: the old keys cannot go on
 * from it as well.
 */
export function takeOverFrom(ctx: TakeOverContext, file: string, path: string, scope: string): void {
  const from = resolve(currentFolder(), file);
  if (from === path) throw new UsageError(`--take-over ${from}: that is already the state file of this config and these keys; drop --take-over`);
  const theirs = stateFileScope(from);
  if (theirs === undefined) throw new UsageError(`--take-over takes an export-events state file (export-events-<16 hex digits>.json, in state.dir): ${from} is not one`);
  // An earlier version's file of these same keys (earlierState) is their state too, not yet moved to `path`.
  const earlier = earlierState(ctx.stateDir, ctx.config);
  const mine = existsSync(path) || earlier === undefined || !existsSync(earlier.path) ? { path, scope } : earlier;
  const current = readExportState(mine.path, mine.scope);
  if (current.takenOver?.from === from) {
    // These keys took it over already: the same command run again (after it stopped on a later error, or was
    // killed before the rename, which finishTakeOver completes) goes on from their state.
    ctx.logger.info(`${from} was taken over by these keys already (${current.takenOver.at}): their state ${basename(mine.path)} goes on from it; --take-over is no longer needed`);
    return;
  }
  if (!existsSync(from)) {
    const done = existsSync(`${from}.taken-over`) ? `; it was taken over already (${basename(from)}.taken-over)` : '';
    throw new UsageError(`--take-over: ${from} does not exist${done}`);
  }
  if (!statSync(from).isFile()) throw new UsageError(`--take-over takes an export-events state file: ${from} is a folder`);
  if (!isUnused(current)) {
    const ours = deliveredHours(current);
    const delivered = ours.length > 0 ? ` (delivered ${ours.map(([a, b]) => describeWindow({ start: a, end: b })).join(', ')})` : '';
    throw new UsageError(
      `--take-over only starts the state of keys that have none yet, and ${mine.path} already records runs of these keys${delivered}: two histories cannot be merged. ` +
        `To go on from ${shellArg(from)} all the same, move ${basename(mine.path)} out of ${shellArg(dirname(mine.path))} (keep it: it is the only record of what these keys delivered), then run this command again. ` +
        sentAgain(readExportState(from, theirs), ours),
    );
  }
  const lock = acquireLock(statePaths(dirname(from), theirs).lock, 'export-events --take-over');
  try {
    const state = takeOverState({ path: from, scope: theirs }, path, scope, `${from}.taken-over`);
    ctx.logger.info(`took over ${from} (renamed ${basename(from)}.taken-over): these keys go on from its state, now ${basename(path)}`, {
      lastDeliveredHour: state.cursor.lastDeliveredHour,
      ...(state.cursor.inProgress ? { windowInProgress: `${state.cursor.inProgress.start}..${state.cursor.inProgress.end}` } : {}),
      ranges: state.ranges.length,
      skippedHours: (state.cursor.skipped ?? []).map((sk) => (sk.start === sk.end ? sk.start : `${sk.start}..${sk.end}`)).join(', ') || 'none',
    });
  } finally {
    lock.release();
  }
}

/**
 * What a take-over of `theirs` would do with the hours these keys delivered (`ours`), which the state moved away
 * to make room no longer records: the cursor sends those it reaches again, and FME counts them twice. Says which,
 * and how to stop before each and pass over it (--end, then --skip-to).
 */
function sentAgain(theirs: ExportState, ours: [number, number][]): string {
  const { goesOn, spans } = cursorWouldSend(theirs, ours);
  const at = goesOn === undefined ? 'where --start or exportEvents.startAt places it' : `at ${formatHour(goesOn)}`;
  if (spans.length === 0) return `That state's cursor goes on ${at}, passing over what its ranges delivered: none of the hours these keys delivered would be sent again.`;
  const [x, y] = spans[0] as [number, number];
  const risk =
    `That state's cursor goes on ${at}, and would send ${spans.map(([a, b]) => describeWindow({ start: a, end: b })).join(', ')} again, which these keys delivered: ` +
    'FME does not deduplicate and would count those events twice.';
  const ip = theirs.cursor.inProgress;
  if (goesOn === undefined) return risk;
  if (ip && x <= (parseStateHour(ip.end) as number)) {
    return `${risk} The window ${ip.start}..${ip.end} the old keys were part-way through holds some of them and cannot be split: --skip-to can only pass over it whole, and its undelivered events would then never be sent.`;
  }
  const pass = `--skip-to ${formatHour(y + HOUR_MS)} --end ${formatHour(y)}`;
  const first = x > goesOn ? `add --end ${formatHour(x - HOUR_MS)} to that command, then run once with --since-last-run ${pass}` : `add ${pass} to that command`;
  const more = spans.length > 1 ? '; likewise for each later span: stop before it with --end, then pass over it with --skip-to <the hour after it> --end <its last hour>' : '';
  return `${risk} To leave them out, ${first}${more}.`;
}

/**
 * A `--take-over` stopped (killed, a failed rename) between writing this state and renaming the old file leaves the
 * old file where the old keys, or the next rotation's --take-over, would go on from it too: FME would get again what
 * these keys deliver. The next sending run finishes the rename, holding the old file's lock, if the file is as it
 * was taken over; if runs went on from it since, the two states disagree and the run stops.
 */
export function finishTakeOver(logger: Logger, store: ExportStateStore): void {
  const taken = store.snapshot.takenOver;
  if (taken === undefined || !existsSync(taken.from)) return;
  const theirs = stateFileScope(taken.from);
  if (theirs === undefined) return;
  const lock = acquireLock(statePaths(dirname(taken.from), theirs).lock, 'export-events (finishing a --take-over)');
  try {
    if (!existsSync(taken.from)) return;
    if (fileDigest(taken.from) !== taken.digest) {
      throw new UsageError(
        `${store.path} was taken over from ${taken.from} (${taken.at}), which is still there and has changed since: runs of the old keys went on from it, ` +
          `and the two states disagree on what FME has (FME does not deduplicate). To go on from where the old keys stopped, move ${shellArg(store.path)} away and run once with ` +
          `--since-last-run --take-over ${shellArg(taken.from)} (if these keys delivered hours since ${taken.at} as well, those are in FME twice over from then on). ` +
          `To go on from this state instead, rename ${shellArg(taken.from)} to ${basename(taken.from)}.taken-over.`,
      );
    }
    try {
      renameSync(taken.from, `${taken.from}.taken-over`);
    } catch (err) {
      throw withPath(err, taken.from);
    }
    logger.warn(`finished taking over ${taken.from}: the --take-over run stopped before renaming it; it is now ${basename(taken.from)}.taken-over`);
  } finally {
    lock.release();
  }
}
