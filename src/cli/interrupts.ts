import { setMaxListeners } from 'node:events';
import { UsageError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/** The longest timer Node keeps (2^31 - 1 ms, about 24.8 days); a longer one would fire at once. */
const MAX_DURATION_MS = 2 ** 31 - 1;

/** Parses `90s`, `30m`, `1h`, `1h30m`, `2d` or plain seconds into ms: more than 0, at most 24 days. */
export function parseDuration(text: string, flag: string): number {
  const ms = parseDurationText(text, flag);
  if (ms > MAX_DURATION_MS) throw new UsageError(`${flag} "${text}" is too long: at most 24d`);
  return ms;
}

function parseDurationText(text: string, flag: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t) && Number(t) > 0) return Number(t) * 1000;
  const re = /(\d+)\s*(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  if (consumed !== t.length || total <= 0) {
    throw new UsageError(`${flag} "${text}" is not a duration: use e.g. 50m, 1h30m, 90s`);
  }
  return total;
}

export interface Interrupts {
  signal: AbortSignal;
  /** Why the run was asked to stop, if it was. */
  readonly reason: string | undefined;
  dispose(): void;
}

/**
 * SIGINT/SIGTERM and --max-runtime ask the pipeline to stop at a clean point: reading stops, in-flight
 * requests finish, progress is recorded. If draining takes longer than `drainMs`, or a second signal
 * arrives, `onForce` runs (release the lock) and the process exits 1: what was in flight is re-sent next time.
 */
export function watchInterrupts(opts: { logger: Logger; maxRuntimeMs?: number | undefined; drainMs?: number; onForce?: () => void }): Interrupts {
  const controller = new AbortController();
  // Every request waiting to be tried again listens to this signal (http/retry.ts `pause`): with a concurrency
  // above 10 that is more than Node's default limit of listeners, which is not a leak but made Node print a
  // MaxListenersExceededWarning, a line that is not JSON among cron's logs.
  setMaxListeners(0, controller.signal);
  let reason: string | undefined;
  let drainTimer: NodeJS.Timeout | undefined;
  const force = (why: string): void => {
    opts.logger.error(`${why}; exiting now, without a summary. Batches that were in flight were not recorded and will be sent again by the next run.`, { exitCode: 1 });
    opts.onForce?.();
    process.exit(1);
  };
  const stop = (why: string): void => {
    if (reason !== undefined) {
      force(`${why} again while stopping`);
      return;
    }
    reason = why;
    opts.logger.warn(`${why}: stopping at the next clean point (in-flight requests finish, progress is recorded)`);
    controller.abort(why);
    drainTimer = setTimeout(() => force(`in-flight requests did not finish within ${Math.round((opts.drainMs ?? 30_000) / 1000)} s`), opts.drainMs ?? 30_000);
    drainTimer.unref();
  };
  const onInt = (): void => stop('SIGINT received');
  const onTerm = (): void => stop('SIGTERM received');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const runtimeTimer = opts.maxRuntimeMs !== undefined ? setTimeout(() => stop(`--max-runtime reached`), opts.maxRuntimeMs) : undefined;
  runtimeTimer?.unref();
  return {
    signal: controller.signal,
    get reason() {
      return reason;
    },
    dispose() {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (runtimeTimer) clearTimeout(runtimeTimer);
      if (drainTimer) clearTimeout(drainTimer);
    },
  };
}
