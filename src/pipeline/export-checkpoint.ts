import type { HourWindow } from '../amplitude/hours.js';
import type { DeadLetterMark } from './dead-letters.js';
import type { Ranges } from './positions.js';

/**
 * How the export pipeline records delivery progress. The state-file implementation lives in
 * src/state/; a run without state (an explicit --start/--end range) uses `noCheckpoint`.
 */
export interface ExportCheckpoint {
  /** Ranges of positions of `window` already handled by an earlier, interrupted run (empty if none). */
  resumeRanges(window: HourWindow): Ranges;
  /**
   * Every event in positions [from, to] of `window` is acknowledged, dead-lettered or skipped. `deadLetters`: the run's
   * dead-letter file as it is now, every record in it on disk and of positions recorded by now (this range included).
   */
  acknowledge(window: HourWindow, from: number, to: number, deadLetters?: DeadLetterMark): Promise<void>;
  /** Every event of `window` is handled: the cursor may move past its last hour. `deadLetters`: as for acknowledge. */
  completeWindow(window: HourWindow, deadLetters?: DeadLetterMark): Promise<void>;
}

export const noCheckpoint: ExportCheckpoint = {
  resumeRanges: () => [],
  acknowledge: async () => {},
  completeWindow: async () => {},
};
