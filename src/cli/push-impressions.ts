import { Command, Option } from 'commander';
import type { CoalesceMode, ImpressionIdentity, IngestionApi, PushMode } from '../config/types.js';
import { UsageError } from '../errors.js';
import type { PushImpressionsSummary } from '../pipeline/push-impressions.js';
import { addCommonOptions, runCommand, type CommandContext, type CommonFlags } from './context.js';
import { byReason, duration, n } from './format.js';
import { watchInterrupts } from './interrupts.js';

interface PushImpressionsFlags extends CommonFlags {
  mode?: PushMode;
  api?: IngestionApi;
  identity?: ImpressionIdentity;
  coalesce?: CoalesceMode;
  dryRun?: boolean;
  output?: string;
}

export function summaryLines(s: PushImpressionsSummary, deadLetters: number, deadLettersByReason: Record<string, number>): string[] {
  const shapes = Object.entries(s.byShape).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${n(v)}`).join(', ') || 'none';
  const what = s.mode === 'identify' ? 'identifications' : 'events';
  const lines = [
    `push-impressions (${s.mode === 'identify' ? 'identify' : `events via ${s.api}`}, ${s.run})`,
    `  inputs               ${n(s.inputs)} (${n(s.bytesRead)} bytes read)`,
    `  impressions read     ${n(s.impressionsRead)} from ${n(s.recordsRead)} records (${shapes})`,
  ];
  if (s.coalesced > 0) lines.push(`  coalesced            ${n(s.coalesced)} (repeats of key, flag, treatment and change number)`);
  if (s.mode === 'identify') lines.push(`  users folded         ${n(s.usersFolded)}`);
  if (s.run === 'send') lines.push(`  ${what.padEnd(20)} ${n(s.mode === 'identify' ? s.identificationsSent : s.eventsSent)} sent in ${n(s.requests)} batches`);
  else if (s.run === 'output') lines.push(`  ${what.padEnd(20)} ${n(s.written)} written`);
  else lines.push(`  ${what.padEnd(20)} ${n(s.mapped)} mapped (dry run: nothing sent)`);
  lines.push(
    `  dead letters         ${n(deadLetters)}${deadLetters > 0 ? ` (${byReason(deadLettersByReason)})` : ''}`,
    `  duration             ${duration(s.durationMs)} (${n(s.impressionsPerSecond)} impressions/s)`,
  );
  return lines;
}

export function pushImpressionsCommand(): Command {
  const cmd = new Command('push-impressions')
    .description('Replay FME impression dumps (JSON array or NDJSON, gzip or plain, any of the four shapes) into Amplitude as events or user properties')
    .argument('<files...>', 'impression dumps: files, globs (quote them), or - for stdin')
    .addOption(new Option('--mode <mode>', 'event: one Amplitude event per impression; identify: one user property per flag (latest treatment)').choices(['event', 'identify']))
    .addOption(new Option('--api <api>', 'ingestion API for event mode: batch (replays, 1000 events/s per user) or httpapi').choices(['batch', 'httpapi']))
    .addOption(new Option('--identity <field>', 'Amplitude field that receives the impression key').choices(['user_id', 'device_id']))
    .addOption(new Option('--coalesce <how>', 'first: send only the first impression per key, flag, treatment and change number').choices(['none', 'first']))
    .option('--dry-run', 'read, validate and map, but send nothing')
    .option('--output <file>', 'write the Amplitude events (or identifications) as NDJSON to this file instead of sending them');
  addCommonOptions(cmd);
  cmd.action(async (files: string[], flags: PushImpressionsFlags) => {
    process.exitCode = await runCommand('push-impressions', flags, (ctx) => pushImpressions(ctx, files, flags));
  });
  return cmd;
}

async function pushImpressions(ctx: CommandContext, files: string[], flags: PushImpressionsFlags): Promise<number> {
  const { config, logger } = ctx;
  if (flags.dryRun && flags.output) throw new UsageError('--dry-run and --output cannot be used together');
  const pc = config.pushImpressions;
  const mode = flags.mode ?? pc.mode;
  const api = flags.api ?? pc.api;
  if (mode === 'identify' && flags.api) throw new UsageError('--api applies to event mode; identify mode always uses the Identify API');
  if (mode === 'identify' && flags.coalesce === 'first') {
    throw new UsageError('--coalesce applies to event mode; identify mode already sends one value per flag and user, the latest treatment');
  }
  const sending = !flags.dryRun && !flags.output;
  if (sending) ctx.requireSecrets(['amplitudeIngestion']);
  const interrupts = watchInterrupts({ logger });
  try {
    const progress = ctx.startProgress(
      [
        { id: 'bytes', label: 'bytes read', total: 0, unit: 'bytes' },
        { id: 'read', label: 'impressions', total: 0, unit: 'read' },
        { id: 'delivered', label: mode === 'identify' ? 'users' : 'events', total: 0, unit: sending ? 'sent' : flags.dryRun ? 'mapped' : 'written' },
      ],
      'read',
      flags.quiet === true,
    );
    // Loaded here, not at start-up: each command loads only its own pipeline (see cli/main.ts).
    const { runPushImpressions } = await import('../pipeline/push-impressions.js');
    const summary = await runPushImpressions({
      config,
      files,
      mode,
      api,
      identity: flags.identity ?? pc.identity,
      coalesce: flags.coalesce ?? pc.coalesce,
      dryRun: flags.dryRun === true,
      output: flags.output,
      logger,
      deadLetters: ctx.deadLetters,
      signal: interrupts.signal,
      onProgress: (p) => {
        progress.update('bytes', p.bytesRead, p.bytesTotal);
        progress.update('read', p.impressionsRead);
        progress.update('delivered', p.delivered);
      },
    });
    const { deadLetters: _d, deadLettersByReason: _r, ...rest } = summary;
    return await ctx.finish({ command: 'push-impressions', ...rest }, summaryLines(summary, ctx.deadLetters.count, ctx.deadLetters.counts()));
  } finally {
    interrupts.dispose();
  }
}
