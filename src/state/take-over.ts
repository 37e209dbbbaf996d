import { existsSync, renameSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { formatHour } from '../amplitude/hours.js';
import type { Config } from '../config/types.js';
import { UsageError } from '../errors.js';
import { currentFolder } from '../io/current-folder.js';
import { withPath } from '../io/file-errors.js';
import type { Logger } from '../log/logger.js';
import { earlierState, type ExportStateStore, fileDigest, isUnused, otherStates, readExportState, stateFileScope, statePaths, takeOverState, type OtherState } from './export-state.js';
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
  const file = others.length === 1 ? (others[0] as OtherState).file : "<the old keys' state file>";
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
    throw new UsageError(
      `--take-over only starts the state of keys that have none yet, and ${mine.path} already records runs of these keys: two histories cannot be merged. ` +
        'Move that file away first if it holds nothing you need.',
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
          `and the two states disagree on what FME has (FME does not deduplicate). To go on from where the old keys stopped, move ${store.path} away and run once with ` +
          `--since-last-run --take-over ${taken.from} (if these keys delivered hours since ${taken.at} as well, those are in FME twice over from then on). ` +
          `To go on from this state instead, rename ${taken.from} to ${basename(taken.from)}.taken-over.`,
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
