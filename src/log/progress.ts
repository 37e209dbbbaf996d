import cliProgress from 'cli-progress';
import type { Logger } from './logger.js';

export interface ProgressBarSpec {
  /** Stable id used in updates. */
  id: string;
  label: string;
  /** Total, when known (windows, bytes); 0 = unknown (a counter). */
  total: number;
  /** Unit printed after the value, e.g. `events`. */
  unit: string;
}

export interface Progress {
  update(id: string, value: number, total?: number): void;
  /** Prints a log line above the bars (TTY), or plainly. */
  log(line: string): void;
  stop(): void;
}

/**
 * Progress bars on a TTY (cli-progress), periodic log lines otherwise (cron logs stay readable:
 * one line every `intervalMs`).
 */
export function createProgress(opts: { tty: boolean; enabled: boolean; logger: Logger; specs: ProgressBarSpec[]; intervalMs?: number; rateOf?: string; stream?: NodeJS.WriteStream }): Progress {
  const values = new Map<string, { value: number; total: number }>(opts.specs.map((s) => [s.id, { value: 0, total: s.total }]));
  const started = Date.now();
  const rate = (): number => {
    const v = opts.rateOf ? (values.get(opts.rateOf)?.value ?? 0) : 0;
    const secs = (Date.now() - started) / 1000;
    return secs > 0 ? Math.round(v / secs) : 0;
  };

  const plain = (line: string): void => {
    (opts.stream ?? process.stderr).write(line);
  };
  if (!opts.enabled) return { update() {}, log: plain, stop() {} };

  if (!opts.tty) {
    const interval = opts.intervalMs ?? 30_000;
    const timer = setInterval(() => {
      const fields: Record<string, number> = {};
      for (const s of opts.specs) fields[s.id] = values.get(s.id)?.value ?? 0;
      if (opts.rateOf) fields.perSecond = rate();
      opts.logger.info('progress', fields);
    }, interval);
    timer.unref();
    return {
      update(id, value, total) {
        const v = values.get(id);
        if (!v) return;
        v.value = value;
        if (total !== undefined) v.total = total;
      },
      log: plain,
      stop() {
        clearInterval(timer);
      },
    };
  }

  const multi = new cliProgress.MultiBar(
    {
      stream: opts.stream ?? process.stderr,
      clearOnComplete: true,
      hideCursor: true,
      fps: 5,
      format: (options, params, payload: { label: string; unit: string; rate: string }) => {
        const hasTotal = params.total > 0;
        const bar = hasTotal ? `${cliProgress.Format.BarFormat(params.progress, options)} ` : '';
        const count = hasTotal ? `${params.value.toLocaleString('en-US')}/${params.total.toLocaleString('en-US')}` : params.value.toLocaleString('en-US');
        return `${payload.label.padEnd(12)} ${bar}${count} ${payload.unit}${payload.rate}`;
      },
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map(
    opts.specs.map((s) => [s.id, multi.create(s.total, 0, { label: s.label, unit: s.unit, rate: '' })]),
  );
  return {
    update(id, value, total) {
      const bar = bars.get(id);
      const v = values.get(id);
      if (!bar || !v) return;
      v.value = value;
      if (total !== undefined && total !== v.total) {
        v.total = total;
        bar.setTotal(total);
      }
      bar.update(value, { rate: id === opts.rateOf ? `  ${rate().toLocaleString('en-US')}/s` : '' });
    },
    log(line) {
      multi.log(line);
    },
    stop() {
      multi.stop();
    },
  };
}
