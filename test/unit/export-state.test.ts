import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { validateConfig } from '../../src/config/validate.js';
import { HOUR_MS } from '../../src/amplitude/hours.js';
import { messageFor } from '../../src/cli/exit-codes.js';
import { overlaps } from '../../src/pipeline/export-plan.js';
import { ExportStateStore, MAX_RANGES, StateError, stateScope, statePaths } from '../../src/state/export-state.js';
import { tempDir } from '../helpers/temp-dir.js';

const h = (s: string): number => parseHourArg(s, 'start');
/** An explicit range as a run without --force opens it, and as a run with --force does (started over). */
const PLAIN = { force: false };
const FORCED = { force: true };
function fresh(): { dir: string; path: string; scope: string } {
  const dir = tempDir('state');
  const { config } = validateConfig({});
  config.amplitude.apiKey = 'amplitude-api-key-123';
  config.fme.sdkKey = 'fme-sdk-key-456';
  const scope = stateScope(config);
  return { dir, path: statePaths(dir, scope).state, scope };
}

describe('stateScope', () => {
  it('is the same whether or not a base URL ends in a slash (one endpoint, one state), and differs per key', () => {
    const scopeOf = (fmeBase: string, exportBase: string, sdkKey = 'fme-sdk-key-456'): string => {
      const { config } = validateConfig({ fme: { eventsBaseUrl: fmeBase }, amplitude: { exportBaseUrl: exportBase } });
      config.amplitude.apiKey = 'amplitude-api-key-123';
      config.fme.sdkKey = sdkKey;
      return stateScope(config);
    };
    const plain = scopeOf('https://events.example.com/api', 'https://export.example.com');
    expect(scopeOf('https://events.example.com/api/', 'https://export.example.com/')).toBe(plain);
    expect(scopeOf('https://events.example.com/api', 'https://export.example.com', 'another-fme-sdk-key')).not.toBe(plain);
  });
});

describe('ExportStateStore', () => {
  it("records the run's dead-letter file with the progress that covers it, and reads files without one", async () => {
    const { path, scope } = fresh();
    const window = { start: h('20240301T00'), end: h('20240301T00') };
    const store = new ExportStateStore(path, scope);
    const cursor = store.cursor();
    await cursor.acknowledge(window, 0, 9);
    expect(JSON.parse(readFileSync(path, 'utf8'))).not.toHaveProperty('deadLetters');
    // Named when created, before any record goes in: written at once, not at the next progress write.
    store.recordDeadLetterFile('/x/dead.ndjson');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ deadLetters: { file: '/x/dead.ndjson', bytes: 0 } });
    await cursor.acknowledge(window, 10, 19, { file: '/x/dead.ndjson', bytes: 300 });
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ deadLetters: { file: '/x/dead.ndjson', bytes: 300 }, cursor: { inProgress: { acked: [[0, 19]] } } });
    // A mark that is not one (edited by hand) is dropped, not a reason to stop.
    const edited = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...edited, deadLetters: { file: '/x/dead.ndjson', bytes: -1 } }));
    expect(new ExportStateStore(path, scope).snapshot.deadLetters).toBeUndefined();
  });

  it('records progress marks inside a window, then moves the cursor past it', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const cursor = store.cursor();
    const w = { start: h('20240301T00'), end: h('20240301T23') };
    await cursor.acknowledge(w, 0, 99);
    await cursor.acknowledge(w, 200, 299);
    const reread = new ExportStateStore(path, scope).cursor();
    expect(reread.resumeRanges(w)).toEqual([[0, 99], [200, 299]]);
    expect(reread.inProgressWindow).toEqual(w);
    expect(reread.nextHour).toBeUndefined();
    await cursor.completeWindow(w);
    const after = new ExportStateStore(path, scope).cursor();
    expect(after.nextHour).toBe(h('20240302T00'));
    expect(after.inProgressWindow).toBeUndefined();
    expect(after.snapshot.firstHour).toBe('20240301T00');
  });

  it('--skip-to moves the cursor past hours it remembers as skipped, not delivered', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const cursor = store.cursor();
    await cursor.completeWindow({ start: h('20240301T00'), end: h('20240301T23') });
    await cursor.skip({ from: h('20240302T00'), to: h('20240302T02') });
    await cursor.completeWindow({ start: h('20240302T03'), end: h('20240302T23') });
    const reread = new ExportStateStore(path, scope);
    expect(reread.cursor().nextHour).toBe(h('20240303T00'));
    expect(reread.snapshot.cursor.skipped).toEqual([{ start: '20240302T00', end: '20240302T02', at: expect.any(String) }]);
    // The double-send guard sees the skipped hours as never delivered: an explicit range may export them.
    expect(reread.deliveredSpans().map((d) => d.span)).toEqual([
      [h('20240301T00'), h('20240301T23')],
      [h('20240302T03'), h('20240302T23')],
    ]);
  });

  it('a skip over a partly delivered window keeps its hours counted as delivered, and clears it', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const cursor = store.cursor();
    const w = { start: h('20240301T00'), end: h('20240301T23') };
    await cursor.acknowledge(w, 0, 99);
    await cursor.skip({ from: w.start, to: h('20240302T05'), partlyDelivered: w });
    const reread = new ExportStateStore(path, scope);
    expect(reread.cursor().nextHour).toBe(h('20240302T06'));
    expect(reread.cursor().inProgressWindow).toBeUndefined();
    expect(reread.snapshot.cursor.skipped).toEqual([
      { start: '20240301T00', end: '20240301T23', at: expect.any(String), partlyDelivered: true },
      { start: '20240302T00', end: '20240302T05', at: expect.any(String) },
    ]);
    // Counted as delivered, and marked as delivered only in part: no range resuming may pass over it.
    expect(reread.deliveredSpans()).toEqual([
      { label: '--since-last-run', span: [h('20240301T00'), h('20240301T23')] },
      { label: '--since-last-run', span: [h('20240301T00'), h('20240301T23')], partly: true },
    ]);
  });

  it('counts the window an interrupted run was part-way through as delivered for other tracks', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const w = { start: h('20240305T00'), end: h('20240305T23') };
    await store.range(w.start, w.end, PLAIN).acknowledge(w, 0, 99);
    const cursor = store.cursor();
    await cursor.completeWindow({ start: h('20240301T00'), end: h('20240301T23') });
    await cursor.acknowledge({ start: h('20240302T00'), end: h('20240302T23') }, 0, 9);
    // Marked as partly delivered: --since-last-run can neither send nor pass over such a window of a range.
    expect(new ExportStateStore(path, scope).deliveredSpans()).toEqual([
      { label: '--since-last-run', span: [h('20240301T00'), h('20240301T23')] },
      { label: '--since-last-run', span: [h('20240302T00'), h('20240302T23')], partly: true },
      { label: 'the range 20240305T00..20240305T23', span: [h('20240305T00'), h('20240305T23')], partly: true },
    ]);
  });

  it('stops on a malformed skipped list', () => {
    const { path, scope } = fresh();
    const cursor = { firstHour: '20240301T00', lastDeliveredHour: '20240301T05', inProgress: null, updatedAt: 'x', skipped: [{ start: '20240301T04', end: '20240301T02', at: 'x' }] };
    writeFileSync(path, JSON.stringify({ version: 1, kind: 'export-events', scope, cursor, ranges: [] }));
    expect(() => new ExportStateStore(path, scope)).toThrow(/cursor.skipped is malformed/);
  });

  it('stops on an hour that does not exist (a hand edit), rather than reading it as another', () => {
    const { path, scope } = fresh();
    for (const hour of ['20240230T05', '20240301T24', '20241301T00']) {
      const cursor = { firstHour: '20240301T00', lastDeliveredHour: hour, inProgress: null, updatedAt: 'x' };
      writeFileSync(path, JSON.stringify({ version: 1, kind: 'export-events', scope, cursor, ranges: [] }));
      expect(() => new ExportStateStore(path, scope), hour).toThrow(StateError);
    }
  });

  it('never holds a secret, and leaves no temp file behind', async () => {
    const { dir, path, scope } = fresh();
    const cursor = new ExportStateStore(path, scope).cursor();
    await cursor.completeWindow({ start: h('20240301T00'), end: h('20240301T00') });
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain('amplitude-api-key-123');
    expect(text).not.toContain('fme-sdk-key-456');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('stops on a corrupt file or an unknown version instead of starting over', () => {
    const { path, scope } = fresh();
    writeFileSync(path, '{"version": 1, "kind": "export-eve');
    expect(() => new ExportStateStore(path, scope)).toThrow(StateError);
    expect(() => new ExportStateStore(path, scope)).toThrow(/unreadable.*not JSON/);
    writeFileSync(path, JSON.stringify({ version: 99, kind: 'export-events', scope, cursor: {}, ranges: [] }));
    expect(() => new ExportStateStore(path, scope)).toThrow(/version 99/);
  });

  it('remembers explicit ranges separately from the cursor', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const r = store.range(h('20240301T00'), h('20240302T23'), PLAIN);
    await r.completeWindow({ start: h('20240301T00'), end: h('20240301T23') });
    const again = new ExportStateStore(path, scope);
    expect(again.findRange(h('20240301T00'), h('20240302T23'))?.lastDeliveredHour).toBe('20240301T23');
    expect(again.cursor().nextHour).toBeUndefined();
    expect(again.deliveredSpans()).toEqual([{ label: 'the range 20240301T00..20240302T23', span: [h('20240301T00'), h('20240301T23')] }]);
  });

  it('drops a folded partly delivered window from earlierPartly once another range that delivered it in full folds too', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const day = (i: number): { start: number; end: number } => ({ start: h('20240101T00') + i * 24 * HOUR_MS, end: h('20240101T23') + i * 24 * HOUR_MS });
    const fill = async (from: number): Promise<void> => {
      for (let i = from; i < from + MAX_RANGES; i++) await store.range(day(i).start, day(i).end, PLAIN).completeWindow(day(i));
    };
    // Interrupted inside day 5, then folded: which of its events reached FME is no longer known.
    await store.range(day(5).start, day(5).end, PLAIN).acknowledge(day(5), 0, 9);
    await fill(100);
    expect(store.snapshot.earlierPartly).toEqual([['20240106T00', '20240106T23']]);
    // Day 5 sent again in full (--force), and that range folded in turn: the window is delivered, by it.
    await store.range(day(5).start, day(5).end, FORCED).completeWindow(day(5));
    await fill(200);
    expect(new ExportStateStore(path, scope).snapshot.earlierPartly).toBeUndefined();
    expect(new ExportStateStore(path, scope).deliveredSpans().some((s) => s.partly)).toBe(false);
  });

  it('folds ranges past the newest MAX_RANGES into merged hours, so the guard still knows what they delivered', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const day = (i: number): { start: number; end: number } => ({ start: h('20240101T00') + i * 24 * HOUR_MS, end: h('20240101T23') + i * 24 * HOUR_MS });
    // A day-by-day backfill, one range a day, then a range that stopped part-way through its second day.
    for (let i = 0; i < MAX_RANGES + 5; i++) await store.range(day(i).start, day(i).end, PLAIN).completeWindow(day(i));
    const partial = store.range(day(100).start, day(101).end, PLAIN);
    await partial.completeWindow(day(100));
    await partial.acknowledge(day(101), 0, 99);
    for (let i = 200; i < 200 + MAX_RANGES; i++) await store.range(day(i).start, day(i).end, PLAIN).completeWindow(day(i));
    const again = new ExportStateStore(path, scope);
    expect(again.snapshot.ranges.length).toBe(MAX_RANGES);
    expect(again.findRange(day(0).start, day(0).end)).toBeUndefined();
    const label = `explicit ranges older than the last ${MAX_RANGES}`;
    // Consecutive days merge into one span; the partial range's day in progress counts as delivered too, and is
    // remembered as partly delivered (so --since-last-run does not pass over it as delivered).
    expect(again.deliveredSpans().filter((s) => s.label === label)).toEqual([
      { label, span: [day(0).start, day(MAX_RANGES + 4).end] },
      { label, span: [day(100).start, day(101).end] },
      { label, span: [day(101).start, day(101).end], partly: true },
    ]);
    expect(again.snapshot.earlierPartly).toEqual([['20240411T00', '20240411T23']]);
    expect(overlaps(day(3).start, day(3).end, again.deliveredSpans())).toEqual([`20240104T00..20240104T23 (delivered by ${label})`]);
    expect(readFileSync(path, 'utf8').length).toBeLessThan(20_000);
  });

  it('keeps what a range delivered before --force started it over, until the forced run has delivered those hours again', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const hour = (i: number): { start: number; end: number } => ({ start: h('20240301T00') + i * HOUR_MS, end: h('20240301T00') + i * HOUR_MS });
    const label = 'the range 20240301T00..20240301T05';
    const first = store.range(hour(0).start, hour(5).end, PLAIN);
    for (let i = 0; i < 5; i++) await first.completeWindow(hour(i));
    await first.acknowledge(hour(5), 0, 9); // interrupted inside its last hour
    const forced = store.range(hour(0).start, hour(5).end, FORCED);
    await forced.completeWindow(hour(0));
    expect(new ExportStateStore(path, scope).deliveredSpans()).toEqual([
      { label, span: [hour(0).start, hour(0).end] },
      { label, span: [hour(1).start, hour(4).end] },
      { label, span: [hour(5).start, hour(5).end], partly: true },
    ]);
    // Forced again before it got further: nothing it knew is lost.
    const again = store.range(hour(0).start, hour(5).end, FORCED);
    expect(again.snapshot).toMatchObject({ deliveredBefore: [{ start: '20240301T00', end: '20240301T04' }, { start: '20240301T05', end: '20240301T05', partly: true }] });
    for (let i = 0; i < 5; i++) await again.completeWindow(hour(i));
    expect(again.snapshot).toMatchObject({ deliveredBefore: [{ start: '20240301T05', end: '20240301T05', partly: true }] });
    await again.completeWindow(hour(5));
    expect(again.snapshot).not.toHaveProperty('deliveredBefore');
    expect(new ExportStateStore(path, scope).deliveredSpans()).toEqual([{ label, span: [hour(0).start, hour(5).end] }]);
  });

  it('folds what a forced range delivered before with its other hours', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const day = (i: number): { start: number; end: number } => ({ start: h('20240101T00') + i * 24 * HOUR_MS, end: h('20240101T23') + i * 24 * HOUR_MS });
    await store.range(day(0).start, day(1).end, PLAIN).completeWindow({ start: day(0).start, end: day(1).end });
    // Forced, and stopped inside its first day: day 1 was delivered only by the first run.
    await store.range(day(0).start, day(1).end, FORCED).acknowledge(day(0), 0, 9);
    for (let i = 10; i < 10 + MAX_RANGES; i++) await store.range(day(i).start, day(i).end, PLAIN).completeWindow(day(i));
    const label = `explicit ranges older than the last ${MAX_RANGES}`;
    expect(new ExportStateStore(path, scope).deliveredSpans().filter((s) => s.label === label)).toEqual([{ label, span: [day(0).start, day(1).end] }]);
  });

  it('stops on a malformed deliveredBefore list', () => {
    const { path, scope } = fresh();
    const range = { start: '20240301T00', end: '20240301T05', firstHour: null, lastDeliveredHour: null, inProgress: null, updatedAt: 'x', deliveredBefore: [{ start: '20240301T03', end: '20240301T01' }] };
    writeFileSync(path, JSON.stringify({ version: 1, kind: 'export-events', scope, cursor: { firstHour: null, lastDeliveredHour: null, inProgress: null, updatedAt: 'x' }, ranges: [range] }));
    expect(() => new ExportStateStore(path, scope)).toThrow(/ranges\[0\].deliveredBefore is malformed/);
  });

  it('stops on a malformed earlierRanges list', () => {
    const { path, scope } = fresh();
    writeFileSync(path, JSON.stringify({ version: 1, kind: 'export-events', scope, cursor: { firstHour: null, lastDeliveredHour: null, inProgress: null, updatedAt: '' }, ranges: [], earlierRanges: [['20240102T00', '20240101T00']] }));
    expect(() => new ExportStateStore(path, scope)).toThrow(/earlierRanges is malformed/);
  });

  it('says a state file it cannot read is a machine problem, not a corrupt file', () => {
    const { path, scope } = fresh();
    mkdirSync(path);
    let err: unknown;
    try {
      new ExportStateStore(path, scope);
    } catch (e) {
      err = e;
    }
    expect(err).not.toBeInstanceOf(StateError);
    expect(messageFor(err)).toBe(`could not read ${path}: it is a folder, not a file (EISDIR). Fix that and run the command again: what was recorded as delivered stays recorded.`);
  });

  it.runIf(existsSync('/dev/full'))('records the whole state on the next change after a write failed', async () => {
    const { path, scope } = fresh();
    const store = new ExportStateStore(path, scope);
    const cursor = store.cursor();
    const w = { start: h('20240301T00'), end: h('20240301T23') };
    // This process's temp file for the state, pointed at /dev/full: the first write fails (and removes it).
    symlinkSync('/dev/full', `${path}.${process.pid}.tmp`);
    await expect(cursor.acknowledge(w, 0, 99)).rejects.toThrow(/ENOSPC/);
    await cursor.acknowledge(w, 200, 299);
    expect(new ExportStateStore(path, scope).cursor().resumeRanges(w)).toEqual([[0, 99], [200, 299]]);
  });
});
