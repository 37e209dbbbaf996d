import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { loadConfig, requireSecrets, type LoadedConfig, type Requirement } from '../config/load.js';
import type { Config } from '../config/types.js';
import { summaryOf } from '../errors.js';
import { redact } from '../http/redact.js';
import { shellArg } from '../io/shell-quote.js';
import { createLogger, type LogFormat, type Logger } from '../log/logger.js';
import { createProgress, type Progress, type ProgressBarSpec } from '../log/progress.js';
import { DeadLetterWriter } from '../pipeline/dead-letters.js';
import { EXIT, exitCodeFor, messageFor } from './exit-codes.js';

/** Flags every command takes. */
export interface CommonFlags {
  config?: string;
  json?: boolean;
  logFormat?: LogFormat;
  quiet?: boolean;
}

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <path>', 'config file (default: amp-fme.config.json, .amp-fmerc, .amp-fmerc.json or "amp-fme" in package.json, in the current folder)')
    .option('--json', 'print the run summary as one JSON object on stdout')
    .addOption(new Option('--log-format <format>', 'log lines as text or JSON (default: text on a terminal, json otherwise)').choices(['text', 'json']))
    .option('-q, --quiet', 'print warnings and errors only');
}

/** The command running, for lines that do not come from it (Node's process warnings, an error nothing caught). */
let activeContext: CommandContext | undefined;

/**
 * A warning Node emits (a deprecation in a dependency, a listener limit...) as a log line of the run, in its
 * format and redacted: Node's own printing (`(node:123) Warning: ...`) would be a line that is not JSON under
 * cron. Before a command has its logger (flags, config), `fallback` says the format.
 */
export function logProcessWarning(warning: Error & { code?: unknown }, fallback: LogFormat): void {
  const code = typeof warning.code === 'string' ? warning.code : undefined;
  const message = `Node.js ${warning.name}: ${warning.message}`;
  if (activeContext) {
    activeContext.logger.warn(message, { warning: warning.name, ...(code ? { warningCode: code } : {}) });
  } else if (fallback === 'json') {
    process.stderr.write(`${redact(JSON.stringify({ time: new Date().toISOString(), level: 'warn', message, warning: warning.name, ...(code ? { warningCode: code } : {}) }))}\n`);
  } else {
    process.stderr.write(`${redact(`amp-fme: ${message}`)}\n`);
  }
}

/**
 * An error nothing caught (a bug, or one thrown in a library's callback, got's included), reported as one error
 * line of the run, in its format and redacted (messageFor), with its exit code (exitCodeFor), which is returned.
 * Node's own report would print the error with util.inspect: a got error carries its request options, so the
 * Authorization header (both Amplitude keys in base64) or a body with the api_key, and many lines that are not
 * JSON under cron. Before a command has its logger, `fallback` says the format.
 */
export function logUncaughtError(err: unknown, event: 'uncaughtException' | 'unhandledRejection', fallback: LogFormat): number {
  const exitCode = exitCodeFor(err);
  // What it means for the run first: messageFor ends with the stack of an error it takes for a bug.
  const message = `stopped at once by an error nothing caught (${event}); batches that were in flight were not recorded and will be sent again by the next run. ${messageFor(err)}`;
  if (activeContext) {
    // A progress bar stopped by the exit would leave the terminal's cursor hidden.
    activeContext.stopProgress();
    activeContext.logger.error(message, { event, exitCode });
  } else if (fallback === 'json') {
    process.stderr.write(`${redact(JSON.stringify({ time: new Date().toISOString(), level: 'error', message, event, exitCode }))}\n`);
  } else {
    process.stderr.write(`${redact(`amp-fme: ${message}`)}\n`);
  }
  return exitCode;
}

/** What a command gets: its config, logger, dead letters and output helpers. */
export class CommandContext {
  readonly command: string;
  readonly loaded: LoadedConfig;
  readonly logger: Logger;
  readonly json: boolean;
  readonly tty: boolean;
  readonly startedAt = new Date();
  readonly runStamp: string;
  /** Human text on stderr (a terminal), or JSON lines (cron). */
  readonly logFormat: LogFormat;
  private progress: Progress | undefined;
  private deadLetterWriter: DeadLetterWriter | undefined;

  constructor(command: string, loaded: LoadedConfig, flags: CommonFlags, logFormat: LogFormat) {
    this.command = command;
    this.loaded = loaded;
    this.json = flags.json === true;
    this.logFormat = logFormat;
    this.tty = process.stderr.isTTY === true;
    this.runStamp = this.startedAt.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    this.logger = createLogger({
      format: logFormat,
      level: flags.quiet ? 'warn' : loaded.config.log.level,
      write: (line) => (this.progress ? this.progress.log(line) : process.stderr.write(line)),
    });
    activeContext = this;
  }

  get config(): Config {
    return this.loaded.config;
  }

  requireSecrets(needs: Requirement[]): void {
    requireSecrets(this.config, needs, this.loaded.filePath);
  }

  /**
   * The run's dead-letter file (created on its first record): `<state.dir>/dead-letters/<command>-<time>-<pid>.ndjson`,
   * or `-2`, `-3`... after it when another run has that name (DeadLetterWriter).
   */
  get deadLetters(): DeadLetterWriter {
    this.deadLetterWriter ??= new DeadLetterWriter(
      join(this.loaded.stateDir, 'dead-letters', `${this.command}-${this.runStamp}-${process.pid}.ndjson`),
      this.command,
    );
    return this.deadLetterWriter;
  }

  /**
   * Bars on a TTY, periodic log lines otherwise; none with --quiet, and no bars with --json (its reader wants the
   * summary, not a redrawn terminal), for every command alike.
   */
  startProgress(specs: ProgressBarSpec[], rateOf?: string, quiet = false): Progress {
    const enabled = !quiet && !(this.tty && this.json);
    this.progress = createProgress({ tty: this.tty, enabled, logger: this.logger, specs, ...(rateOf ? { rateOf } : {}) });
    return this.progress;
  }

  stopProgress(): void {
    this.progress?.stop();
    this.progress = undefined;
  }

  /**
   * Prints a command's result: the JSON summary on stdout with --json; otherwise human lines on stderr
   * (text logs) or one `summary` log line (JSON logs). Returns the exit code for the dead-letter count.
   */
  async finish(summary: Record<string, unknown>, textLines: string[]): Promise<number> {
    this.stopProgress();
    const dl = this.deadLetterWriter;
    if (dl) await dl.close();
    const letters = this.deadLetterFields();
    const { deadLetters, deadLettersRetriable: retriable } = letters;
    this.summary({ ...summary, ...letters }, textLines);
    if (deadLetters > 0) {
      const file = dl?.path ?? '';
      // The retry re-sends with the config it finds (hosts, region, state.dir): pasted from another folder than this
      // run's (cron cd's to its own), a bare `amp-fme retry <file>` would run on the defaults' production hosts.
      const configArg = this.loaded.filePath !== undefined ? ` --config ${shellArg(this.loaded.filePath)}` : '';
      const retryCommand = `amp-fme retry ${shellArg(file)}${configArg}`;
      // Advise a retry only for what a retry can re-send: it would only carry the others over to a new file.
      const advice =
        retriable === deadLetters
          ? `Fix the cause, then re-send them with: ${retryCommand}`
          : retriable > 0
            ? `${retriable} of them can be re-sent: fix the cause, then run: ${retryCommand} (the other ${deadLetters - retriable} cannot be re-sent as they are; the file gives each one's reason)`
            : "None of them can be re-sent as they are: the file gives each one's reason.";
      this.logger.warn(`${deadLetters} record(s) could not be delivered; they are in ${file}. ${advice}`);
      return EXIT.DEAD_LETTERS;
    }
    return EXIT.OK;
  }

  /** The dead-letter part of a run's summary. */
  deadLetterFields(): { deadLetters: number; deadLettersRetriable: number; deadLettersByReason: Record<string, number>; deadLetterFile: string | undefined } {
    const dl = this.deadLetterWriter;
    const deadLetters = dl?.count ?? 0;
    return {
      deadLetters,
      deadLettersRetriable: dl?.retriableCount ?? 0,
      deadLettersByReason: dl?.counts() ?? {},
      // Only a file that holds something: a failed write may have left none.
      deadLetterFile: dl !== undefined && dl.inFile > 0 ? dl.path : undefined,
    };
  }

  /**
   * One summary per run, whatever its end: the JSON object on stdout with --json; a `summary` log line for
   * machines (JSON logs), or the human block on a terminal (`textLines`, when there are some).
   */
  summary(full: Record<string, unknown>, textLines?: string[]): void {
    if (this.json) process.stdout.write(`${redact(JSON.stringify(full))}\n`);
    if (this.logFormat === 'json') this.logger.info('summary', full);
    else if (!this.json && textLines) process.stderr.write(`${redact(textLines.join('\n'))}\n`);
  }
}

/** The log format: the flag, else the config file's, else text on a terminal and JSON otherwise (cron). */
export function pickLogFormat(flags: CommonFlags, config?: Config): LogFormat {
  return flags.logFormat ?? config?.log.format ?? (process.stderr.isTTY ? 'text' : 'json');
}

/**
 * Runs a command body with its context and turns the outcome into an exit code. The only place, with
 * main.ts, where the process's exit status is decided.
 */
export async function runCommand(command: string, flags: CommonFlags, body: (ctx: CommandContext) => Promise<number>): Promise<number> {
  let ctx: CommandContext | undefined;
  try {
    const loaded = await loadConfig({ configPath: flags.config });
    const format = pickLogFormat(flags, loaded.config);
    ctx = new CommandContext(command, loaded, flags, format);
    return await body(ctx);
  } catch (err) {
    ctx?.stopProgress();
    if (ctx) {
      const dl = ctx.deadLetters;
      const unwritten = await dl.close().then(
        () => undefined,
        (e: unknown) => e,
      );
      if (dl.count > dl.inFile) {
        // Progress is recorded only past dead letters on disk (DeadLetterWriter.sync): the next run reads these records again.
        const before = dl.inFile > 0 ? `; the ${dl.inFile} before them are in it` : '';
        ctx.logger.warn(
          `${dl.count - dl.inFile} record(s) of this run could not be written to the dead-letter file ${dl.path} (${messageFor(unwritten)})${before}. No progress past them was recorded: running again reads them again.`,
          { deadLetters: dl.count, deadLettersInFile: dl.inFile },
        );
      } else if (dl.count > 0) {
        ctx.logger.warn(`${dl.count} record(s) of this run are in the dead-letter file ${dl.path}`, { deadLetters: dl.count, deadLetterFile: dl.path });
      }
    }
    const code = exitCodeFor(err);
    const message = messageFor(err);
    const format = pickLogFormat(flags, ctx?.config);
    // A run stopped or failed part-way still says what it did (pipelines attach their summary to the error).
    const partial = summaryOf(err);
    if (ctx && partial) ctx.summary({ command, ...partial, ...ctx.deadLetterFields(), error: message, exitCode: code });
    if (ctx) {
      ctx.logger.error(message, { code: (err as { code?: unknown }).code, exitCode: code });
    } else if (format === 'json') {
      process.stderr.write(`${redact(JSON.stringify({ time: new Date().toISOString(), level: 'error', message, exitCode: code }))}\n`);
    } else {
      process.stderr.write(`amp-fme ${command}: ${message}\n`);
    }
    return code;
  }
}
