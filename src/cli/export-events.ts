import { Command, Option } from 'commander';
import { parseHourArg } from '../amplitude/hours.js';
import { UsageError } from '../errors.js';
import { runExportEvents, type ExportEventsSummary } from '../pipeline/export-events.js';
import { addCommonOptions, runCommand, type CommonFlags } from './context.js';
import { byReason, duration, n } from './format.js';

interface ExportEventsFlags extends CommonFlags {
  start?: string;
  end?: string;
  dryRun?: boolean;
  output?: string;
}

function summaryLines(s: ExportEventsSummary, deadLetters: number): string[] {
  const renamed = Object.entries(s.renamedEventTypes);
  const lines = [
    `export-events ${s.start}..${s.end} (${s.mode})`,
    `  windows              ${n(s.windows)} (${n(s.hoursExported)} hours)`,
    `  events read          ${n(s.eventsRead)} (${n(s.blankLines)} blank lines, ${n(s.invalidLines)} invalid lines)`,
    s.mode === 'send'
      ? `  FME events sent      ${n(s.fmeEventsSent)} in ${n(s.batchesSent)} batches`
      : s.mode === 'output'
        ? `  FME events written   ${n(s.fmeEventsWritten)}`
        : `  FME events mapped    ${n(s.fmeEventsMapped)} (dry run: nothing sent)`,
  ];
  if (s.fmeEventsAlreadyDelivered > 0) lines.push(`  already delivered    ${n(s.fmeEventsAlreadyDelivered)} (by an earlier interrupted run; not sent again)`);
  lines.push(
    `  skipped              ${byReason(s.skipped)}`,
    `  trimmed              ${byReason(s.trimmed)}`,
    `  dead letters         ${n(deadLetters)}`,
    `  renamed event types  ${renamed.length === 0 ? 'none' : renamed.slice(0, 20).map(([a, b]) => `"${a}" -> ${b}`).join(', ')}${renamed.length > 20 || s.renamedEventTypesNotListed > 0 ? ` (+${n(renamed.length - Math.min(20, renamed.length) + s.renamedEventTypesNotListed)} more)` : ''}`,
    `  duration             ${duration(s.durationMs)} (${n(s.eventsPerSecond)} events/s)`,
  );
  return lines;
}

export function exportEventsCommand(): Command {
  const cmd = new Command('export-events')
    .description('Pull Amplitude events by upload hour (Export API) and send them to FME as track events')
    .option('--start <hour>', 'first upload hour, UTC, inclusive: YYYYMMDDTHH, YYYY-MM-DD (whole day) or an ISO date-time')
    .option('--end <hour>', 'last upload hour, UTC, inclusive (same formats)')
    .option('--dry-run', 'read and map, but send nothing')
    .addOption(new Option('--output <file>', 'write the FME events as NDJSON to this file instead of sending them'));
  addCommonOptions(cmd);
  cmd.action(async (flags: ExportEventsFlags) => {
    process.exitCode = await runCommand('export-events', flags, async (ctx) => {
      if (!flags.start) throw new UsageError('--start is required (e.g. --start 2024-03-01 --end 2024-03-07)');
      if (!flags.end) throw new UsageError('--end is required (e.g. --start 2024-03-01 --end 2024-03-07)');
      const start = parseHourArg(flags.start, 'start');
      const end = parseHourArg(flags.end, 'end');
      if (end < start) throw new UsageError(`--end (${flags.end}) is before --start (${flags.start})`);
      if (flags.dryRun && flags.output) throw new UsageError('--dry-run and --output cannot be used together');
      const sending = !flags.dryRun && !flags.output;
      ctx.requireSecrets(sending ? ['amplitudeExport', 'fmeEvents'] : ['amplitudeExport']);

      const progress = ctx.startProgress(
        [
          { id: 'windows', label: 'windows', total: 0, unit: '' },
          { id: 'read', label: 'events read', total: 0, unit: 'events' },
          { id: 'sent', label: sending ? 'events sent' : 'events mapped', total: 0, unit: 'events' },
        ],
        'read',
        ctx.json && ctx.tty,
      );
      const summary = await runExportEvents({
        config: ctx.config,
        start,
        end,
        dryRun: flags.dryRun === true,
        output: flags.output,
        logger: ctx.logger,
        deadLetters: ctx.deadLetters,
        onProgress: (p) => {
          progress.update('windows', p.windowsDone, p.windowsTotal);
          progress.update('read', p.eventsRead);
          progress.update('sent', p.fmeEventsSent);
        },
      });
      return ctx.finish({ command: 'export-events', ...summary }, summaryLines(summary, ctx.deadLetters.count));
    });
  });
  return cmd;
}
