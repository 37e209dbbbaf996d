import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import type { RetrySummary } from '../pipeline/retry.js';
import { currentFolder } from '../io/current-folder.js';
import { acquireLock } from '../state/lock.js';
import { addCommonOptions, runCommand, type CommonFlags } from './context.js';
import { byReason, duration, n } from './format.js';
import { watchInterrupts } from './interrupts.js';

interface RetryFlags extends CommonFlags {
  force?: boolean;
}

function summaryLines(s: RetrySummary): string[] {
  return [
    `retry ${s.file}`,
    `  records              ${n(s.records)}${s.alreadyHandled > 0 ? ` (+${n(s.alreadyHandled)} handled by an earlier interrupted retry)` : ''}`,
    `  re-sent to FME       ${n(s.resent.fme)}`,
    `  re-sent to Amplitude ${n(s.resent.amplitudeEvents)} events, ${n(s.resent.amplitudeIdentifications)} identifications`,
    `  still failing        ${byReason(s.stillFailing)}`,
    `  carried over         ${n(s.carriedOver)} (cannot be re-sent as they are${s.invalid > 0 ? `; ${n(s.invalid)} of them not a valid dead-letter record` : ''})`,
    ...(s.notSent > 0 ? [`  not sent             ${n(s.notSent)} (the retry was stopped first; in the new dead-letter file, to retry)`] : []),
    `  original file        ${s.renamedTo ? `renamed to ${s.renamedTo}` : 'kept (the retry did not finish)'}`,
    `  duration             ${duration(s.durationMs)}`,
  ];
}

export function retryCommand(): Command {
  const cmd = new Command('retry')
    .description('Re-send the records of a dead-letter file that can be re-sent; what still fails goes to a new dead-letter file')
    .argument('<dead-letter-file>', 'an NDJSON file from the dead-letters folder')
    .option('--force', 'retry a file already marked .retried');
  addCommonOptions(cmd);
  cmd.action(async (file: string, flags: RetryFlags) => {
    process.exitCode = await runCommand('retry', flags, async (ctx) => {
      const path = resolve(file);
      // Loaded here, not at start-up: each command loads only its own pipeline (see cli/main.ts).
      const { checkDeadLetterFile, runRetry } = await import('../pipeline/retry.js');
      // A path that is not a dead-letter file is refused before its lock file is made beside it (runRetry checks again, under the lock).
      checkDeadLetterFile(path, { force: flags.force === true, deadLetterDir: dirname(ctx.deadLetters.path) });
      // Two retries of one file at once would send its FME records twice.
      const lock = acquireLock(`${path}.lock`, `retry ${path}`);
      const interrupts = watchInterrupts({ logger: ctx.logger, onForce: () => lock.release() });
      try {
        const summary = await runRetry({ config: ctx.config, file: path, logger: ctx.logger, deadLetters: ctx.deadLetters, force: flags.force === true, signal: interrupts.signal, noConfigFileIn: ctx.loaded.filePath === undefined ? currentFolder() : undefined });
        if (interrupts.reason) {
          const notSent = summary.notSent > 0 ? `; the ${n(summary.notSent)} record(s) read but not sent are in the new dead-letter file: retry that one too` : '';
          ctx.logger.warn(`stopped (${interrupts.reason}); run the same retry again to continue${notSent}`);
        }
        const code = await ctx.finish({ command: 'retry', ...summary }, summaryLines(summary));
        return interrupts.reason ? 1 : code;
      } finally {
        interrupts.dispose();
        lock.release();
      }
    });
  });
  return cmd;
}
