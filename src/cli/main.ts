import { Command, CommanderError } from 'commander';
import type { LogFormat } from '../log/logger.js';
import { VERSION } from '../version.js';
import { releaseHeldLocks } from '../state/lock.js';
import { logProcessWarning, logUncaughtError, pickLogFormat } from './context.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor, messageFor } from './exit-codes.js';
import { demoCommand } from './demo.js';
import { exportEventsCommand } from './export-events.js';
import { pushImpressionsCommand } from './push-impressions.js';
import { retryCommand } from './retry.js';
import { sandboxCommand } from './sandbox.js';

/**
 * The amp-fme program. Commands set process.exitCode; this file exits (and interrupts.ts, on a second signal).
 * Each command loads its pipeline (and got, with the first HTTP client) only when it runs: help, usage
 * errors and a run's start are not kept waiting for modules the command does not use.
 */
export function buildProgram(): Command {
  const program = new Command('amp-fme')
    .description('Sync data between Amplitude (product analytics) and Harness FME (feature flags and experiments)')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n\nSecrets come from AMPLITUDE_API_KEY, AMPLITUDE_SECRET_KEY and FME_SDK_KEY (or the config file).`);
  program.addCommand(exportEventsCommand());
  program.addCommand(pushImpressionsCommand());
  program.addCommand(retryCommand());
  program.addCommand(sandboxCommand());
  program.addCommand(demoCommand());
  for (const cmd of program.commands) {
    cmd.showHelpAfterError('(run with --help for usage)').addHelpText('after', `\n${EXIT_CODES_HELP}`);
  }
  return program;
}

/**
 * How a usage error commander found is written: as the run's other errors would be (pickLogFormat), with the
 * `--log-format` read from the arguments by hand, since commander could not parse them. The config file is not read.
 */
function usageErrorFormat(argv: string[]): LogFormat {
  let logFormat: LogFormat | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = a === '--log-format' ? argv[i + 1] : a.startsWith('--log-format=') ? a.slice('--log-format='.length) : undefined;
    if (value === 'text' || value === 'json') logFormat = value;
  }
  return pickLogFormat(logFormat ? { logFormat } : {});
}

async function main(): Promise<void> {
  // Node prints its warnings on stderr as text; they go out as the run's log lines instead (logProcessWarning).
  process.removeAllListeners('warning');
  process.on('warning', (warning) => logProcessWarning(warning, usageErrorFormat(process.argv)));
  // An error nothing caught leaves the run in a state nobody knows: it is reported as one redacted line (Node's
  // report would print a got error's request options, credentials included) and the process exits at once,
  // releasing its locks so that the next run (cron's next hour) is not refused. What was recorded stays recorded.
  const onUncaught = (event: 'uncaughtException' | 'unhandledRejection') => (err: unknown) => {
    let code: number = EXIT.FAILED;
    try {
      code = logUncaughtError(err, event, usageErrorFormat(process.argv));
    } finally {
      releaseHeldLocks();
      process.exit(code);
    }
  };
  process.on('uncaughtException', onUncaught('uncaughtException'));
  process.on('unhandledRejection', onUncaught('unhandledRejection'));
  // A reader that went away (`amp-fme demo | head -1`) is not the run's failure: what is left to print has nowhere to
  // go, and the run goes on to its own end (a demo cleans up) and exit code. Unheard, it would be an error nothing caught.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    });
  }
  const program = buildProgram();
  // What commander writes to stderr (an error and its hint, or help shown for a missing command) is held, then written below.
  let stderrText = '';
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride();
    cmd.configureOutput({ writeErr: (text) => (stderrText += text) });
  }
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version asked for are not errors (exit code 0). Anything else commander rejects is a usage error,
      // the help it shows for a missing command too (commander gives it exit code 1): under cron, a command line
      // that lost its command must not pass for a run that did its work (exit 0).
      const ok = err.exitCode === 0;
      process.exitCode = ok ? EXIT.OK : EXIT.USAGE;
      if (ok || usageErrorFormat(process.argv) === 'text') process.stderr.write(stderrText);
      else {
        // The help commander shows for a missing command is many lines: one message says what is missing instead.
        const message =
          err.code === 'commander.help'
            ? `give one of the commands ${program.commands.map((c) => c.name()).join(', ')} (run with --help for usage)`
            : stderrText.replace(/^error: /, '').trim();
        process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', message, exitCode: EXIT.USAGE })}\n`);
      }
    } else {
      // Commands report their own errors (runCommand); this is for one that escaped them, redacted like the rest.
      process.stderr.write(`amp-fme: ${messageFor(err)}\n`);
      process.exitCode = exitCodeFor(err);
    }
  }
  // Keep-alive sockets and timers must not hold the process open after the result is out.
  const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
  process.stdout.write('', () => process.exit(code));
}

void main();
