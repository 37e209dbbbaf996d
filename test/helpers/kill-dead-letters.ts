import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import type { World } from './world.js';

/**
 * Set-ups of the kill -9 dead-letter tests (export-kill-dead-letters, retry-kill-dead-letters, retry-before-resume):
 * a run is killed (the preload below) after it put the dead letters of a refused batch on disk, and what the next runs
 * do with them is checked.
 */

/** Preload that SIGKILLs amp-fme at a progress write after a dead-letter fsync (KILL_AT_PROGRESS_WRITE: which one). */
export const KILL_AFTER_DEAD_LETTER_SYNC = join(__dirname, 'kill-after-dead-letter-sync.cjs');

/** FME refuses a batch of 10 whole and in every part: the first request and 18 halves. */
export const REFUSE_BATCH_OF_10 = 19;
const REFUSAL = { status: 400, body: '{"code":400,"message":"temporarily refusing"}' };

/** The dead-letter folder of a world's state. */
export function deadLetterDir(w: World): string {
  return join(w.dir, '.amp-fme', 'dead-letters');
}

/** Every record of every dead-letter file of a world, parsed. */
export function deadLetterRecords<T = { reason: string; retriable: boolean; source: { line: number }; payload: { key: string; timestamp: number } }>(w: World): T[] {
  const dl = deadLetterDir(w);
  return readdirSync(dl)
    .filter((f) => f.endsWith('.ndjson'))
    .flatMap((f) => readFileSync(join(dl, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as T);
}

/** Every retriable FME dead letter of a world, as `key@timestamp`. */
export function retriableLetters(w: World): string[] {
  return deadLetterRecords(w)
    .filter((l) => l.retriable)
    .map((l) => `${l.payload.key}@${l.payload.timestamp}`);
}

/** The events FME received, as `key@timestamp`. */
export function fmeKeys(w: World): string[] {
  return w.fme.events.map((e) => `${e.key}@${e.timestamp}`);
}

/** An export of 30 events in hour 20240301T10, batches of 10, one worker-free reader; FME refuses `refusals` requests. */
export function exportOf30(w: World, concurrency: number, refusals: number, delayMs?: number): void {
  const rows = [...generateExportRows(parseHourArg('20240301T10', 'start'), 30, { users: 50, treatmentShare: 0 })].map((r) => ({ ...r, user_id: `user-${String(r.event_id)}-x` }));
  w.store.add(rows);
  w.writeConfig({ exportEvents: { properties: ['uuid'], batchSize: 10, concurrency, workers: 0 } });
  if (refusals > 0) w.fme.faults.push(delayMs === undefined ? REFUSAL : { ...REFUSAL, delayMs }, refusals);
}

/** The export-events run of exportOf30's hour. */
export const EXPORT_HOUR = ['export-events', '--start', '20240301T10', '--end', '20240301T10', '--json'];

/** An export-events dead-letter file of 20 retriable FME events in the world's state; FME refuses the first batch of 10 a retry sends. */
export function letterFileOf20(w: World): string {
  w.writeConfig({ exportEvents: { batchSize: 10 } });
  const dl = deadLetterDir(w);
  mkdirSync(dl, { recursive: true });
  const file = join(dl, 'export-events-20240301T000000Z-1.ndjson');
  const letter = (i: number): string =>
    JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: { eventTypeId: 'amp.A', trafficTypeName: 'user', key: `user-${1000 + i}`, timestamp: 1_709_287_200_000 + i } });
  writeFileSync(file, `${Array.from({ length: 20 }, (_, i) => letter(i)).join('\n')}\n`);
  w.fme.faults.push(REFUSAL, REFUSE_BATCH_OF_10);
  return file;
}
