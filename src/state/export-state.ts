import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatHour, HOUR_MS, type HourWindow } from '../amplitude/hours.js';
import { exportBaseUrl, fmeEventsBaseUrl, type Config } from '../config/types.js';
import { AmpFmeError } from '../errors.js';
import { withPath } from '../io/file-errors.js';
import { makeDirs } from '../io/make-dirs.js';
import { cutBack, readMark, resolvedMark, storedMark, type DeadLetterMark } from '../pipeline/dead-letters.js';
import type { ExportCheckpoint } from '../pipeline/export-checkpoint.js';
import type { Logger } from '../log/logger.js';
import type { SkipPlan } from '../pipeline/export-plan.js';
import { addRange, type Ranges } from '../pipeline/positions.js';
import { writeFileAtomic } from './atomic-write.js';

export const STATE_VERSION = 1;
/**
 * Explicit ranges remembered one by one, newest first. Older ones are folded into `earlierRanges` (the hours
 * they delivered, merged), so the file stays kilobytes and the double-send guard still knows those hours.
 */
export const MAX_RANGES = 50;

/**
 * Delivery progress over a span of upload hours: every hour from `firstHour` through `lastDeliveredHour` is
 * delivered (none when `firstHour` is the later: a cursor started by `begin`, with nothing delivered yet);
 * `inProgress` is the window being delivered when a run stopped, with the position ranges (see
 * pipeline/positions.ts) already handled in it.
 */
export interface Track {
  firstHour: string | null;
  lastDeliveredHour: string | null;
  inProgress: { start: string; end: string; acked: Ranges } | null;
  updatedAt: string;
  /**
   * Hours the cursor was moved past on purpose (`--skip-to`), oldest first: never exported by this track, so
   * they are not counted as delivered. Absent in files written before `--skip-to` existed.
   */
  skipped?: SkippedHours[];
}

/** Upload hours `start..end` (inclusive) passed over by `--skip-to` at `at`. */
export interface SkippedHours {
  start: string;
  end: string;
  at: string;
  /**
   * A window an interrupted run was part-way through: part of its events were delivered, so for the
   * double-send guard its hours still count as delivered (sending them again needs `--force`).
   */
  partlyDelivered?: true;
  /**
   * Hours another track (named: `the range ...`) had delivered when the cursor reached them: passed over, not
   * sent again (FME does not deduplicate). Still delivered, by that track.
   */
  deliveredBy?: string;
}

/** A track for an explicit `--start/--end` run, remembered so a failed run resumes and a finished one is not re-sent by accident. */
export interface RangeTrack extends Track {
  start: string;
  end: string;
  /**
   * Hours an earlier run of the same range had delivered when it was run again with `--force`, and that the forced
   * run has not delivered again yet. The forced run starts a fresh track, but those hours are still in FME: other
   * tracks are refused over them (or pass over them) as before; the range itself, resumed, sends them as forced.
   * Absent in files written before this existed, and once the forced run has delivered them again.
   */
  deliveredBefore?: DeliveredBefore[];
  /**
   * Set when the range was run with `--force`: the hours in it that other runs had delivered then, which the force
   * was given to send again. Resumed, with `--force` again or not, the range goes on where it stopped (it does not
   * start over) and sends these hours as forced; hours other runs delivered since are passed over as usual. Absent
   * in files written before this existed (such a range, resumed, passes over every hour other runs delivered).
   */
  forcedOver?: [string, string][];
}

/** Upload hours `start..end` (inclusive) that a range delivered before it was forced; `partly`: in part (an interrupted window). */
export interface DeliveredBefore {
  start: string;
  end: string;
  partly?: true;
}

/** The export-events state file: one per Amplitude project and FME environment. */
export interface ExportState {
  version: typeof STATE_VERSION;
  kind: 'export-events';
  /** Hash of the Amplitude project and FME environment credentials: never the keys themselves. */
  scope: string;
  /** The `--since-last-run` cursor. */
  cursor: Track;
  ranges: RangeTrack[];
  /**
   * Hours delivered by explicit ranges beyond the newest MAX_RANGES, merged into `[first, last]` spans, oldest
   * first. Absent until a state has had that many ranges.
   */
  earlierRanges?: [string, string][];
  /**
   * Windows of folded ranges that an interrupted run was part-way through: their hours are in `earlierRanges`, but
   * which of their events reached FME is no longer known, so `--since-last-run` must not pass over them as delivered.
   */
  earlierPartly?: [string, string][];
  /**
   * Set by `--take-over`: the state file this one was taken over from, when, and the SHA-256 of that file's text
   * then. A run stopped between writing this file and renaming that one leaves it where the old keys (or a later
   * rotation) would go on from it too; the next run finishes the rename while the file is as it was, and stops if
   * runs went on from it since.
   */
  takenOver?: TakenOver;
  /**
   * The dead-letter file of the sending run that last wrote this file, and its size as the progress recorded here
   * covers it: named as soon as the run creates it, before any record goes in. A run killed between putting dead
   * letters there and recording the batches they belong to leaves them past `bytes`; the next sending run handles
   * those batches again, so it cuts the file back first (cutBack). Absent in files written before this existed.
   */
  deadLetters?: DeadLetterMark;
}

/** Where a state came from by `--take-over` (ExportState.takenOver). */
export interface TakenOver {
  from: string;
  at: string;
  digest: string;
}

export class StateError extends AmpFmeError {
  constructor(message: string) {
    super('STATE', message);
  }
}

/**
 * Scope of a state file: which Amplitude project (export host + API key) feeds which FME environment
 * (events host + SDK key). Hashed, so the file never holds a secret.
 */
export function stateScope(config: Config): string {
  return scopeHash(config, fmeEventsBaseUrl(config.fme));
}

function scopeHash(config: Config, fmeUrl: string): string {
  const h = createHash('sha256');
  h.update(`amplitude:${exportBaseUrl(config.amplitude)}:${config.amplitude.apiKey ?? ''}\n`);
  h.update(`fme:${fmeUrl}:${config.fme.sdkKey ?? ''}\n`);
  return h.digest('hex').slice(0, 16);
}

/**
 * The state file earlier amp-fme versions kept for this config, and the scope written in it, when they differ
 * from today's: they hashed fme.eventsBaseUrl as written, so a URL ending in '/' had a scope of its own.
 */
export function earlierState(stateDir: string, config: Config): { path: string; scope: string } | undefined {
  const raw = config.fme.eventsBaseUrl;
  if (raw === fmeEventsBaseUrl(config.fme)) return undefined;
  const scope = scopeHash(config, raw);
  return { path: statePaths(stateDir, scope).state, scope };
}

/**
 * Moves a state file of another scope to this one's name and scope: written whole under the new name
 * (atomically), then the old one removed, or renamed `retiredAs` to keep it for reference. Checked as any state
 * file is read. Used for an earlier version's file (earlierState) and for `--take-over` (a key rotation, a moved
 * state.dir). Call it holding the locks of both.
 */
export function takeOverState(from: { path: string; scope: string }, path: string, scope: string, retiredAs?: string): ExportState {
  const state = readExportState(from.path, from.scope);
  state.scope = scope;
  // Its run's dead-letter file stays where it is: named from the new place (a --take-over from another folder).
  if (state.deadLetters) state.deadLetters = storedMark(resolvedMark(state.deadLetters, dirname(from.path)), dirname(path));
  // Recorded before the rename, so that a run stopped between the two can tell the old file was not renamed.
  if (retiredAs !== undefined) state.takenOver = { from: from.path, at: new Date().toISOString(), digest: fileDigest(from.path) };
  writeStateFile(path, state);
  if (retiredAs === undefined) rmSync(from.path, { force: true });
  else {
    try {
      renameSync(from.path, retiredAs);
    } catch (err) {
      throw withPath(err, from.path);
    }
  }
  return state;
}

/** SHA-256 of a file's bytes (TakenOver.digest). */
export function fileDigest(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch (err) {
    throw withPath(err, path);
  }
}

/** The scope of an export-events state file, from its name (`export-events-<scope>.json`), or undefined for any other file. */
export function stateFileScope(file: string): string | undefined {
  return /^export-events-([0-9a-f]{16})\.json$/.exec(basename(file))?.[1];
}

/** Whether a state records nothing a run did: no range, and a cursor at most placed by a first `--start` (onlyPlaced). */
export function isUnused(state: ExportState): boolean {
  return onlyPlaced(state.cursor) && state.ranges.length === 0 && labelledSpans(state).length === 0;
}

/** Every hour a state's tracks delivered (in full or in part), as sorted, merged [first, last] epoch ms spans. */
export function deliveredHours(state: ExportState): [number, number][] {
  return mergeHourSpans([], labelledSpans(state).map((s) => s.span));
}

/**
 * Where --since-last-run goes on from `state` (a window it was part-way through, else the hour after its last
 * delivered one; undefined for a cursor with no place yet), and which of `hours` it would send from there: it
 * passes over what the state's ranges delivered (passOverRanges), but knows nothing of hours only another
 * state recorded, and FME does not deduplicate.
 */
export function cursorWouldSend(state: ExportState, hours: [number, number][]): { goesOn: number | undefined; spans: [number, number][] } {
  const ip = state.cursor.inProgress;
  const last = parseStateHour(state.cursor.lastDeliveredHour);
  const goesOn = ip ? parseStateHour(ip.start) : last === undefined ? undefined : last + HOUR_MS;
  // Its own window in progress is finished, not passed over: the rest of its events are sent.
  const passedOver = labelledSpans(state).filter((s) => s.label !== CURSOR_LABEL);
  let spans = hours.flatMap(([a, b]): [number, number][] => (goesOn === undefined ? [[a, b]] : b < goesOn ? [] : [[Math.max(a, goesOn), b]]));
  for (const { span } of passedOver) spans = withoutHours(spans, span[0], span[1]);
  return { goesOn, spans };
}

export function statePaths(stateDir: string, scope: string): { state: string; lock: string } {
  return { state: join(stateDir, `export-events-${scope}.json`), lock: join(stateDir, `export-events-${scope}.lock`) };
}

/** What another scope's state file in the same folder has delivered, for export-events' guard on a fresh cursor. */
export interface OtherState {
  file: string;
  /** Its cursor's last delivered hour (null: none), or undefined when the file cannot be read. */
  lastDeliveredHour: string | null | undefined;
  /** Hours delivered by any of its tracks (cursor and explicit ranges), as `START..END` labels. */
  delivered: string[];
}

/**
 * The export-events state files of other scopes (other keys) in `stateDir` that record deliveries, or that
 * cannot be read. After a key rotation the cursor of the new keys starts empty, and one of these holds
 * where the old keys stopped.
 */
export function otherStates(stateDir: string, scope: string): OtherState[] {
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  const out: OtherState[] = [];
  for (const name of names.sort()) {
    const theirs = stateFileScope(name);
    if (theirs === undefined || theirs === scope) continue;
    const file = join(stateDir, name);
    try {
      const state = readExportState(file, theirs);
      const delivered = [...new Set(labelledSpans(state).map(({ span: [a, b] }) => `${formatHour(a)}..${formatHour(b)}`))];
      if (delivered.length > 0) out.push({ file, lastDeliveredHour: state.cursor.lastDeliveredHour, delivered });
    } catch {
      out.push({ file, lastDeliveredHour: undefined, delivered: [] });
    }
  }
  return out;
}

/** Parses `YYYYMMDDTHH` back to the hour's epoch ms. */
export function parseStateHour(text: string | null | undefined): number | undefined {
  const m = text ? /^(\d{4})(\d{2})(\d{2})T(\d{2})$/.exec(text) : null;
  if (!m) return undefined;
  const at = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]));
  // An hour that does not exist (20240230T05, T24; a hand edit) names none: Date.UTC would roll it over into another.
  return formatHour(at) === text ? at : undefined;
}

function emptyTrack(): Track {
  return { firstHour: null, lastDeliveredHour: null, inProgress: null, updatedAt: new Date().toISOString() };
}

function corrupt(path: string, why: string): StateError {
  return new StateError(
    `the state file ${path} is unreadable (${why}). amp-fme will not guess where to continue, because FME does not deduplicate: ` +
      // Moved away, the file no longer keeps cron from starting over: a --since-last-run without --start would begin at
      // exportEvents.startAt and send every hour since a second time. Hence the exact run that places the cursor first.
      'restore the file from a backup; or move it out of the way and, before cron runs again, place the cursor once with: ' +
      'amp-fme export-events --since-last-run --start <the hour after the last one you know was delivered>. ' +
      'Until then a --since-last-run without --start starts again at exportEvents.startAt (if it is set), sending every hour since once more.',
  );
}

function checkTrack(t: unknown, path: string, where: string): void {
  const isHour = (v: unknown): boolean => v === null || (typeof v === 'string' && parseStateHour(v) !== undefined);
  if (t === null || typeof t !== 'object') throw corrupt(path, `${where} is not an object`);
  const tr = t as Partial<Track>;
  if (!isHour(tr.firstHour) || !isHour(tr.lastDeliveredHour)) throw corrupt(path, `${where} has an hour that is not like 20240301T23`);
  const ip = tr.inProgress;
  if (ip !== null) {
    const ok =
      ip !== undefined &&
      typeof ip === 'object' &&
      parseStateHour(ip.start) !== undefined &&
      parseStateHour(ip.end) !== undefined &&
      Array.isArray(ip.acked) &&
      ip.acked.every((r) => Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] <= r[1]);
    if (!ok) throw corrupt(path, `${where}.inProgress is malformed`);
  }
  const sk = tr.skipped;
  if (sk !== undefined) {
    const ok =
      Array.isArray(sk) &&
      sk.every((x: Partial<SkippedHours> | null) => {
        if (x === null || typeof x !== 'object') return false;
        const a = parseStateHour(x.start);
        const b = parseStateHour(x.end);
        return (
          a !== undefined &&
          b !== undefined &&
          a <= b &&
          typeof x.at === 'string' &&
          (x.partlyDelivered === undefined || x.partlyDelivered === true) &&
          (x.deliveredBy === undefined || typeof x.deliveredBy === 'string')
        );
      });
    if (!ok) throw corrupt(path, `${where}.skipped is malformed`);
  }
}

/** Whether a value is a list of `[first, last]` state hours. */
function isHourSpans(spans: unknown): boolean {
  return (
    Array.isArray(spans) &&
    spans.every((x: unknown) => {
      if (!Array.isArray(x) || x.length !== 2) return false;
      const [a, b] = [parseStateHour(x[0] as string), parseStateHour(x[1] as string)];
      return a !== undefined && b !== undefined && a <= b;
    })
  );
}

function isDeliveredBefore(x: Partial<DeliveredBefore> | null): boolean {
  if (x === null || typeof x !== 'object') return false;
  const a = parseStateHour(x.start);
  const b = parseStateHour(x.end);
  return a !== undefined && b !== undefined && a <= b && (x.partly === undefined || x.partly === true);
}

/** Reads and checks a state file; a missing file is a fresh state. Corrupt or unknown versions stop the run. */
export function readExportState(path: string, scope: string): ExportState {
  if (!existsSync(path)) return { version: STATE_VERSION, kind: 'export-events', scope, cursor: emptyTrack(), ranges: [] };
  // A file that cannot be read (permission denied...) is a machine problem, said as such (cli/exit-codes.ts), not corruption.
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw withPath(err, path);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw corrupt(path, `not JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw corrupt(path, 'not an object');
  const s = parsed as Partial<ExportState>;
  if (s.version !== STATE_VERSION) {
    throw new StateError(`the state file ${path} has version ${JSON.stringify(s.version)}; this amp-fme reads version ${STATE_VERSION}. Use the amp-fme version that wrote it, or upgrade.`);
  }
  if (s.kind !== 'export-events') throw corrupt(path, 'it is not an export-events state file');
  if (s.scope !== scope) throw corrupt(path, 'it belongs to another Amplitude project or FME environment');
  checkTrack(s.cursor, path, 'cursor');
  if (!Array.isArray(s.ranges)) throw corrupt(path, 'ranges is not a list');
  s.ranges.forEach((r, i) => {
    checkTrack(r, path, `ranges[${i}]`);
    if (parseStateHour(r.start) === undefined || parseStateHour(r.end) === undefined) throw corrupt(path, `ranges[${i}] has no start/end`);
    const before = r.deliveredBefore;
    if (before !== undefined && !(Array.isArray(before) && before.every(isDeliveredBefore))) throw corrupt(path, `ranges[${i}].deliveredBefore is malformed`);
    if (r.forcedOver !== undefined && !isHourSpans(r.forcedOver)) throw corrupt(path, `ranges[${i}].forcedOver is malformed`);
  });
  for (const key of ['earlierRanges', 'earlierPartly'] as const) {
    const spans = s[key];
    if (spans !== undefined && !isHourSpans(spans)) throw corrupt(path, `${key} is malformed`);
  }
  const t = s.takenOver;
  if (t !== undefined && (t === null || typeof t !== 'object' || typeof t.from !== 'string' || typeof t.at !== 'string' || typeof t.digest !== 'string')) {
    throw corrupt(path, 'takenOver is malformed');
  }
  // Only ever used to cut a file back: one that cannot be read is left alone (its run's last records may be there twice).
  if (s.deadLetters !== undefined && !readMark(s.deadLetters)) delete s.deadLetters;
  return s as ExportState;
}

/** The label of the hours of `earlierRanges` (and `earlierPartly`) in messages. */
export const EARLIER_RANGES = `explicit ranges older than the last ${MAX_RANGES}`;

/** The windows of `earlierPartly` as [first, last] epoch ms spans. */
function earlierPartlySpans(state: ExportState): [number, number][] {
  return (state.earlierPartly ?? []).map(([a, b]) => [parseStateHour(a) as number, parseStateHour(b) as number]);
}

/** A track's delivered hours less the window it was part-way through: the hours all of whose events it delivered. */
function fullyDeliveredSpans(t: Track): [number, number][] {
  const partly = partlyDeliveredWindow(t);
  return deliveredSpans(t).filter(([a, b]) => !(partly && a === partly[0] && b === partly[1]));
}

/** The hours of `earlierRanges` as [first, last] epoch ms spans. */
function earlierSpans(state: ExportState): [number, number][] {
  return (state.earlierRanges ?? []).map(([a, b]) => [parseStateHour(a) as number, parseStateHour(b) as number]);
}

/** Sorted spans of hours with `more` added, overlapping and adjacent ones merged. */
function mergeHourSpans(spans: [number, number][], more: [number, number][]): [number, number][] {
  const all = [...spans, ...more].sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of all) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + HOUR_MS) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Writes a state file whole (atomically), making its folder if need be. */
function writeStateFile(path: string, state: ExportState): void {
  makeDirs(dirname(path));
  writeFileAtomic(path, `${JSON.stringify(state, null, 2)}\n`);
}

/** The label of the `--since-last-run` cursor's delivered hours (LabelledSpan.label). */
export const CURSOR_LABEL = '--since-last-run';

/** The label of an explicit range's delivered hours; `start` and `end` as the state writes them (`YYYYMMDDTHH`). */
export function rangeLabel(start: string, end: string): string {
  return `the range ${start}..${end}`;
}

/** Hours a track delivered (deliveredSpans), labelled, with `partly` on a window an interrupted run was part-way through. */
export interface LabelledSpan {
  label: string;
  span: [number, number];
  partly?: true;
}

/** The parts of `spans` outside the hours of `hours` (a track's `sendsAgain`). */
export function outside(spans: LabelledSpan[], hours: [number, number][]): LabelledSpan[] {
  let out = spans;
  for (const [from, to] of hours) out = out.flatMap((s) => withoutHours([s.span], from, to).map((span) => ({ ...s, span })));
  return out;
}

/** Every hour span a state file's tracks delivered, with the track it belongs to: the cursor, each range, older ranges. */
function labelledSpans(state: ExportState): LabelledSpan[] {
  const out: LabelledSpan[] = [];
  const add = (t: Track, label: string): void => {
    const partly = partlyDeliveredWindow(t);
    for (const span of deliveredSpans(t)) {
      const isPartly = partly !== undefined && span[0] === partly[0] && span[1] === partly[1];
      out.push({ label, span, ...(isPartly ? { partly: true as const } : {}) });
    }
    // A window passed over with --skip-to part-way through counts as delivered, but only in part.
    for (const sk of t.skipped ?? []) {
      if (sk.partlyDelivered) out.push({ label, span: [parseStateHour(sk.start) as number, parseStateHour(sk.end) as number], partly: true });
    }
  };
  add(state.cursor, CURSOR_LABEL);
  for (const r of state.ranges) {
    const label = rangeLabel(r.start, r.end);
    add(r, label);
    // The range's own label: other tracks meet these hours as the range's, and the range itself, resumed, does not.
    for (const b of beforeSpans(r)) out.push({ label, span: b.span, ...(b.partly ? { partly: true as const } : {}) });
  }
  for (const span of earlierSpans(state)) out.push({ label: EARLIER_RANGES, span });
  for (const span of earlierPartlySpans(state)) out.push({ label: EARLIER_RANGES, span, partly: true });
  return out;
}

/**
 * Whether a track has done nothing yet: no hour delivered or skipped, no window in progress. At most a first
 * `--start` placed it (`begin`), and another `--start` may place it again.
 */
export function onlyPlaced(t: Track): boolean {
  if (t.inProgress || (t.skipped?.length ?? 0) > 0) return false;
  const first = parseStateHour(t.firstHour);
  const last = parseStateHour(t.lastDeliveredHour);
  return last === undefined || (first !== undefined && last < first);
}

/**
 * Delivered hours of a track as [first, last] epoch ms spans: its whole span less the hours it skipped (not
 * partly delivered ones), and the window an interrupted run was part-way through, if it delivered any of it:
 * another range over those hours would send that part again.
 */
export function deliveredSpans(t: Track): [number, number][] {
  const window = partlyDeliveredWindow(t);
  const partly: [number, number][] = window ? [window] : [];
  const a = parseStateHour(t.firstHour);
  const b = parseStateHour(t.lastDeliveredHour);
  if (a === undefined || b === undefined || a > b) return partly;
  let spans: [number, number][] = [[a, b]];
  for (const sk of t.skipped ?? []) {
    if (!sk.partlyDelivered) spans = withoutHours(spans, parseStateHour(sk.start) as number, parseStateHour(sk.end) as number);
  }
  return [...spans, ...partly];
}

/** The remembered track of the explicit range `start..end` in `state`, if any. */
function rangeOf(state: ExportState, start: number, end: number): RangeTrack | undefined {
  return state.ranges.find((r) => r.start === formatHour(start) && r.end === formatHour(end));
}

/** A range's `deliveredBefore` as epoch ms spans. */
function beforeSpans(r: RangeTrack): { span: [number, number]; partly: boolean }[] {
  return (r.deliveredBefore ?? []).map((b) => ({ span: [parseStateHour(b.start) as number, parseStateHour(b.end) as number], partly: b.partly === true }));
}

/**
 * Everything a range had delivered when `--force` starts it over (its own `deliveredBefore` too): its hours merged,
 * and the window an interrupted run was part-way through kept apart as partly delivered, unless inside them.
 */
function deliveredBeforeForcing(r: RangeTrack): DeliveredBefore[] {
  const window = partlyDeliveredWindow(r);
  const all = [...beforeSpans(r), ...deliveredSpans(r).map((span) => ({ span, partly: window !== undefined && span[0] === window[0] && span[1] === window[1] }))];
  const full = mergeHourSpans([], all.filter((x) => !x.partly).map((x) => x.span));
  const partly = all.filter((x) => x.partly && !full.some(([a, b]) => a <= x.span[0] && b >= x.span[1])).map((x) => x.span);
  return [
    ...full.map(([a, b]): DeliveredBefore => ({ start: formatHour(a), end: formatHour(b) })),
    ...partly.map(([a, b]): DeliveredBefore => ({ start: formatHour(a), end: formatHour(b), partly: true })),
  ];
}

/** Drops from a forced range's `deliveredBefore` the hours it has now delivered again (or passed over, delivered by another track). */
function forgetDeliveredAgain(r: RangeTrack): void {
  const from = parseStateHour(r.firstHour);
  const to = parseStateHour(r.lastDeliveredHour);
  if (from === undefined || to === undefined) return;
  const left = beforeSpans(r).flatMap(({ span, partly }) =>
    withoutHours([span], from, to).map(([x, y]): DeliveredBefore => ({ start: formatHour(x), end: formatHour(y), ...(partly ? { partly: true as const } : {}) })),
  );
  if (left.length > 0) r.deliveredBefore = left;
  else delete r.deliveredBefore;
}

/** `spans` less the hours `from..to`. */
function withoutHours(spans: [number, number][], from: number, to: number): [number, number][] {
  return spans.flatMap(([x, y]): [number, number][] => {
    if (to < x || from > y) return [[x, y]];
    const kept: [number, number][] = [];
    if (x < from) kept.push([x, from - HOUR_MS]);
    if (to < y) kept.push([to + HOUR_MS, y]);
    return kept;
  });
}

/** The window an interrupted run of this track was part-way through, if it delivered any of it. */
function partlyDeliveredWindow(t: Track): [number, number] | undefined {
  const ip = t.inProgress;
  return ip && ip.acked.length > 0 ? [parseStateHour(ip.start) as number, parseStateHour(ip.end) as number] : undefined;
}

/**
 * The state file. Each change is written atomically (temp file, fsync, rename) before the pipeline goes on,
 * so a crash or `kill -9` re-sends at most the batches that were in flight.
 */
export class ExportStateStore {
  private state: ExportState;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;

  constructor(
    readonly path: string,
    private readonly scope: string,
  ) {
    this.state = readExportState(path, scope);
  }

  /**
   * The cursor (or the range `start..end`) as the state file says it now, which is what the next run goes on from:
   * after a failed write (a full disk) it is behind this store. Undefined when the file cannot be read.
   */
  recordedTrack(range?: { start: number; end: number }): Track | undefined {
    let state: ExportState;
    try {
      state = readExportState(this.path, this.scope);
    } catch {
      return undefined;
    }
    if (!range) return state.cursor;
    return rangeOf(state, range.start, range.end) ?? emptyTrack();
  }

  get snapshot(): Readonly<ExportState> {
    return this.state;
  }

  /** The `--since-last-run` cursor as a checkpoint. */
  cursor(): TrackCheckpoint {
    return new TrackCheckpoint(this, () => this.state.cursor);
  }

  /** The remembered track of an explicit range, if any. */
  findRange(start: number, end: number): RangeTrack | undefined {
    return rangeOf(this.state, start, end);
  }

  /**
   * A checkpoint for an explicit range. `force`: run with --force, which starts its track over (what an earlier run
   * of it delivered is kept as `deliveredBefore`, and the hours in it other runs delivered as `forcedOver`).
   */
  range(start: number, end: number, o: { force: boolean }): TrackCheckpoint {
    const s = formatHour(start);
    const e = formatHour(end);
    let track = this.findRange(start, end);
    if (!track || o.force) {
      const before = track ? deliveredBeforeForcing(track) : [];
      track = { start: s, end: e, ...emptyTrack(), ...(before.length > 0 ? { deliveredBefore: before } : {}) };
      if (o.force) {
        const label = rangeLabel(s, e);
        const others = labelledSpans(this.state).flatMap(({ label: l, span: [a, b] }): [number, number][] => (l !== label && a <= end && b >= start ? [[Math.max(a, start), Math.min(b, end)]] : []));
        track.forcedOver = mergeHourSpans([], others).map(([a, b]) => [formatHour(a), formatHour(b)]);
      }
    }
    const all = [track, ...this.state.ranges.filter((r) => !(r.start === s && r.end === e))];
    this.state.ranges = all.slice(0, MAX_RANGES);
    const foldedRanges = all.slice(MAX_RANGES);
    const folded = foldedRanges.flatMap((r) => [...deliveredSpans(r), ...beforeSpans(r).map((b) => b.span)]);
    if (folded.length > 0) {
      // A folded range that was part-way through loses its progress marks: its hours count as delivered, so
      // running it again is refused (narrow it, or --force) rather than sent twice; its window is remembered
      // as partly delivered, so that --since-last-run does not pass over it as delivered either.
      const merged = mergeHourSpans(earlierSpans(this.state), folded);
      this.state.earlierRanges = merged.map(([a, b]) => [formatHour(a), formatHour(b)]);
      this.foldPartly(all, foldedRanges);
    }
    return new TrackCheckpoint(this, () => this.findRange(start, end) as RangeTrack);
  }

  /**
   * Keeps `earlierPartly` true as ranges fold: the windows the folded ranges were part-way through join it, and a
   * window another track delivered in full (a range run again over it with --force, the cursor) leaves it. That
   * has to be decided now: once folded, a range's hours are merged with the others' and can no longer be told apart.
   */
  private foldPartly(all: RangeTrack[], foldedRanges: RangeTrack[]): void {
    const partly: { window: [number, number]; of: Track | undefined }[] = [
      ...earlierPartlySpans(this.state).map((window) => ({ window, of: undefined })),
      ...foldedRanges.flatMap((r) => {
        const window = partlyDeliveredWindow(r);
        const before = beforeSpans(r).flatMap((b) => (b.partly ? [{ window: b.span, of: r as Track }] : []));
        return window ? [{ window, of: r as Track }, ...before] : before;
      }),
    ];
    // What a range delivered before --force started it over was delivered in full, its own window in progress included.
    const full = [
      ...[this.state.cursor, ...all].map((t) => ({ t: t as Track | null, spans: fullyDeliveredSpans(t) })),
      ...all.map((r) => ({ t: null, spans: beforeSpans(r).flatMap((b) => (b.partly ? [] : [b.span])) })),
    ];
    const open = partly.filter(({ window: [a, b], of }) => !full.some(({ t, spans }) => t !== of && spans.some(([x, y]) => x <= a && y >= b)));
    if (open.length > 0) this.state.earlierPartly = open.map(({ window: [a, b] }) => [formatHour(a), formatHour(b)]);
    else delete this.state.earlierPartly;
  }

  /** Every track with its delivered span, for overlap warnings. */
  deliveredSpans(): LabelledSpan[] {
    return labelledSpans(this.state);
  }

  /**
   * A sending run, before it sends anything: cuts the dead-letter file of the run that last wrote this state back to
   * what that state covers (ExportState.deadLetters), under the file's lock; warns if it cannot. The mark is then
   * dropped: this run records its own file once it has one.
   */
  cutBackDeadLetters(logger: Logger): void {
    const mark = this.state.deadLetters;
    if (!mark) return;
    cutBack(resolvedMark(mark, dirname(this.path)), logger, 'export-events');
    delete this.state.deadLetters;
  }

  /**
   * Names this run's new dead-letter file in the state file, written now (DeadLetterWriter.onCreated): before any
   * record goes into it, so that records a kill leaves there ahead of their batches' progress are found.
   */
  recordDeadLetterFile(file: string): void {
    this.state.deadLetters = storedMark({ file, bytes: 0 }, dirname(this.path));
    writeStateFile(this.path, this.state);
  }

  /**
   * A run that ended without being stopped, its dead-letter file on disk as `mark` says (synced): when nothing went into
   * it past the mark recorded, there is no tail a later cut-back could need, and the mark is dropped. Kept, it would
   * make a payload corrected by hand afterwards (the README's advice before a retry) look like a killed run's file changed
   * since: the retry, or cron's next run, warned that records "may be handled again" when nothing was interrupted.
   */
  async settleDeadLetters(mark: DeadLetterMark | undefined): Promise<void> {
    const recorded = this.state.deadLetters;
    if (!recorded || !mark) return;
    const now = storedMark(mark, dirname(this.path));
    if (now.file !== recorded.file || now.bytes !== recorded.bytes) return;
    delete this.state.deadLetters;
    await this.persist();
  }

  /** The run's dead-letter file as the progress about to be recorded covers it (see ExportCheckpoint.acknowledge). */
  noteDeadLetters(mark: DeadLetterMark | undefined): void {
    if (mark) this.state.deadLetters = storedMark(mark, dirname(this.path));
  }

  /** Writes are serialised; changes that arrive during a write are folded into the next one. */
  persist(): Promise<void> {
    this.dirty = true;
    // After a failed write (its caller got the error), the next change tries again with the whole state.
    const next = this.writing.catch(() => undefined).then(() => {
      if (!this.dirty) return;
      this.dirty = false;
      writeStateFile(this.path, this.state);
    });
    this.writing = next;
    return next;
  }
}

/** One track of the state file, seen by the pipeline as an ExportCheckpoint. */
export class TrackCheckpoint implements ExportCheckpoint {
  constructor(
    private readonly store: ExportStateStore,
    private readonly track: () => Track,
  ) {}

  get snapshot(): Readonly<Track> {
    return this.track();
  }

  /** Hours other runs delivered that this track sends anyway (a range run with --force: RangeTrack.forcedOver), as epoch ms spans. */
  get sendsAgain(): [number, number][] {
    const over = (this.track() as Partial<RangeTrack>).forcedOver ?? [];
    return over.map(([a, b]) => [parseStateHour(a) as number, parseStateHour(b) as number]);
  }

  /** Whether the track has delivered any hour (a cursor only placed by a first --start has not). */
  get delivered(): boolean {
    return deliveredSpans(this.track()).length > 0;
  }

  /** First hour not yet delivered, or undefined before the first window. */
  get nextHour(): number | undefined {
    const last = parseStateHour(this.track().lastDeliveredHour);
    return last === undefined ? undefined : last + HOUR_MS;
  }

  get inProgressWindow(): HourWindow | undefined {
    const ip = this.track().inProgress;
    if (!ip) return undefined;
    return { start: parseStateHour(ip.start) as number, end: parseStateHour(ip.end) as number };
  }

  resumeRanges(window: HourWindow): Ranges {
    const ip = this.track().inProgress;
    if (!ip || ip.start !== formatHour(window.start) || ip.end !== formatHour(window.end)) return [];
    return ip.acked;
  }

  async acknowledge(window: HourWindow, from: number, to: number, deadLetters?: DeadLetterMark): Promise<void> {
    const t = this.track();
    // In the same step as the range: whichever write records this range records the mark with it, never without.
    this.store.noteDeadLetters(deadLetters);
    const start = formatHour(window.start);
    const end = formatHour(window.end);
    const acked = t.inProgress && t.inProgress.start === start && t.inProgress.end === end ? t.inProgress.acked : [];
    t.inProgress = { start, end, acked: addRange(acked, from, to) };
    t.updatedAt = new Date().toISOString();
    await this.store.persist();
  }

  /**
   * Moves the cursor past the hours of `plan` without exporting them (`--skip-to`; the checks are planSkip's):
   * the next run starts after them, and they are remembered as skipped, not delivered. Every skip is kept
   * (each is a person's decision, and rare): a dropped record would make its hours look delivered.
   * `deliveredBy`: the hours are passed over because that track delivered them (export-events' passOverRanges).
   */
  async skip(plan: SkipPlan, deliveredBy?: string): Promise<void> {
    const t = this.track();
    const at = new Date().toISOString();
    const records: SkippedHours[] = [];
    let from = plan.from;
    const partly = plan.partlyDelivered;
    if (partly) {
      records.push({ start: formatHour(partly.start), end: formatHour(partly.end), at, partlyDelivered: true });
      from = partly.end + HOUR_MS;
    }
    if (from <= plan.to) records.push({ start: formatHour(from), end: formatHour(plan.to), at, ...(deliveredBy !== undefined ? { deliveredBy } : {}) });
    t.skipped = [...(t.skipped ?? []), ...records];
    t.firstHour ??= formatHour(plan.from);
    t.lastDeliveredHour = formatHour(plan.to);
    t.inProgress = null;
    t.updatedAt = at;
    await this.store.persist();
  }

  /**
   * A cursor that has delivered nothing yet, given `--start`: records that it continues at `hour`, before the run
   * sends anything, so that the next run (from cron, without `--start`) continues there too, even if this one
   * stops first. Nothing is counted as delivered (the track's span is empty until its first window completes),
   * so a later `--start` may place it again.
   */
  async begin(hour: number): Promise<void> {
    const t = this.track();
    if (!onlyPlaced(t)) return;
    t.firstHour = formatHour(hour);
    t.lastDeliveredHour = formatHour(hour - HOUR_MS);
    t.updatedAt = new Date().toISOString();
    await this.store.persist();
  }

  async completeWindow(window: HourWindow, deadLetters?: DeadLetterMark): Promise<void> {
    const t = this.track();
    this.store.noteDeadLetters(deadLetters);
    t.firstHour ??= formatHour(window.start);
    t.lastDeliveredHour = formatHour(window.end);
    t.inProgress = null;
    if ('deliveredBefore' in t) forgetDeliveredAgain(t as RangeTrack);
    t.updatedAt = new Date().toISOString();
    await this.store.persist();
  }
}
