import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { Command } from 'commander';
import { formatHour, HOUR_MS } from '../amplitude/hours.js';
import type { ExportEventsSummary } from '../pipeline/export-events.js';
import type { PushImpressionsSummary } from '../pipeline/push-impressions.js';
import type { ReceivedReport, Sandbox } from '../sandbox/sandbox.js';
import { EXIT } from './exit-codes.js';
import { summaryLines as exportSummaryLines } from './export-events.js';
import { n } from './format.js';
import { summaryLines as pushSummaryLines } from './push-impressions.js';
import { intFlag, parseFaults } from './sandbox.js';

const BIN = fileURLToPath(new URL('../../bin/amp-fme.js', import.meta.url));

interface DemoFlags {
  events?: string;
  impressions?: string;
  faults?: string;
  json?: boolean;
}

interface Child {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A SIGINT or SIGTERM that stops the tour, and the step it has to reach (the amp-fme process running, if any). */
interface Stop {
  signal?: NodeJS.Signals;
  child?: ChildProcess | undefined;
}

class Stopped extends Error {}

function runAmpFme(args: string[], cwd: string, stop: Stop): Promise<Child> {
  return new Promise((resolve, reject) => {
    // The sandbox's keys are in the config file; real keys in the environment would override them.
    const env = { ...process.env };
    for (const k of ['AMPLITUDE_API_KEY', 'AMPLITUDE_SECRET_KEY', 'FME_SDK_KEY']) delete env[k];
    // Its downloads go in the tour's folder too: a step stopped before it could remove them leaves nothing
    // behind once that folder is removed.
    env.TMPDIR = cwd;
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    stop.child = child;
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      stop.child = undefined;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A step that failed says why on stderr, with the error its run logged: the children run with --quiet and their
 * stderr is captured, so without this the tour exits 1 with no reason anywhere.
 */
function reportFailure(child: Child, what: string): void {
  if (child.code === 0 || child.code === 3) return;
  const errors: string[] = [];
  for (const line of child.stderr.split('\n')) {
    try {
      const rec = JSON.parse(line) as { level?: unknown; message?: unknown };
      if (rec.level === 'error' && typeof rec.message === 'string') errors.push(rec.message);
    } catch {
      // not a log line
    }
  }
  const why = errors.length > 0 ? errors.join('\n') : child.stderr.trim().split('\n').slice(-3).join('\n');
  process.stderr.write(`amp-fme demo: ${what} exited ${child.code}${why ? `: ${why}` : ''}\n`);
}

function parseSummary<T>(child: Child, what: string): T {
  try {
    return JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as T;
  } catch {
    throw new Error(`${what} exited ${child.code} without a summary:\n${child.stderr.trim()}`);
  }
}

/**
 * `amp-fme demo`: the whole tool in one command, with no keys. Starts the sandbox, runs export-events over
 * its days and push-impressions with a generated dump (as separate amp-fme processes, exactly as a user
 * would), then prints both summaries next to what the emulators received.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('See amp-fme work in one command: sandbox emulators, export-events and push-impressions, then what the emulators received')
    .option('--events <n>', 'Amplitude events in the generated project (default 5000)')
    .option('--impressions <n>', 'impressions in the generated dump (default 2000)')
    .option('--faults <spec>', 'inject random faults into the emulators, e.g. 5xx=0.1,429=0.05 (retries make them invisible in the result)')
    .option('--json', 'print one JSON object with both summaries and what the emulators received')
    .action(async (flags: DemoFlags) => {
      // Every flag is checked before anything starts: a mistake is a usage error (exit 2), not a failure of the
      // tour found after the export has run.
      const events = intFlag(flags.events, '--events', 1, 5_000_000) ?? 5000;
      const impressions = intFlag(flags.impressions, '--impressions', 1, 5_000_000) ?? 2000;
      const faults = flags.faults !== undefined ? parseFaults(flags.faults) : undefined;
      // Ctrl-C (or SIGTERM) stops the tour, which then cleans up like any other end: Node's default would exit at
      // once, leaving the temporary folder behind and the step running. The signal is passed on to the step: after
      // Ctrl-C in a terminal it got one of its own too, and a second one makes it stop at once, which the tour,
      // throwing its result away, wants anyway.
      const stop: Stop = {};
      const onSignal = (signal: NodeJS.Signals): void => {
        stop.signal ??= signal;
        stop.child?.kill(signal);
      };
      const stopped = (): void => {
        if (stop.signal !== undefined) throw new Stopped();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const dir = mkdtempSync(join(tmpdir(), 'amp-fme-demo-'));
      let code: number = EXIT.OK;
      let sandbox: Sandbox | undefined;
      try {
        // The emulators are loaded only by the commands that start them (see cli/main.ts).
        const { startSandbox } = await import('../sandbox/sandbox.js');
        const { generateWebhookImpressions } = await import('../sandbox/generate.js');
        sandbox = await startSandbox({
          events,
          days: 2,
          ...(faults ? { faults } : {}),
        });
        stopped();
        const say = (line = ''): void => {
          if (!flags.json) process.stdout.write(`${line}\n`);
        };
        writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify(sandbox.config, null, 2));
        say(`Sandbox on ${sandbox.url}: a generated Amplitude project with ${n(sandbox.events)} events, and an FME environment.`);
        say();

        say(`1. amp-fme export-events --start ${formatHour(sandbox.firstHour)} --end ${formatHour(sandbox.lastHour)}`);
        const exp = await runAmpFme(['export-events', '--start', formatHour(sandbox.firstHour), '--end', formatHour(sandbox.lastHour), '--json', '--quiet'], dir, stop);
        stopped();
        reportFailure(exp, 'export-events');
        const exportSummary = parseSummary<ExportEventsSummary & { deadLetters: number }>(exp, 'export-events');
        for (const l of exportSummaryLines(exportSummary, exportSummary.deadLetters)) say(`   ${l}`);
        say();

        const dump = join(dir, 'impressions.ndjson.gz');
        const gz = createGzip();
        const file = createWriteStream(dump);
        gz.pipe(file);
        const now = Date.now();
        for (const rec of generateWebhookImpressions(impressions, { from: now - 2 * 24 * HOUR_MS, to: now - HOUR_MS, users: 3000 })) {
          if (stop.signal !== undefined) {
            gz.destroy();
            file.destroy();
            stopped();
          }
          if (!gz.write(`${JSON.stringify(rec)}\n`)) await once(gz, 'drain');
        }
        gz.end();
        await once(file, 'finish');
        stopped();

        say(`2. amp-fme push-impressions impressions.ndjson.gz   (${n(impressions)} impressions, FME webhook shape, gzip)`);
        const push = await runAmpFme(['push-impressions', dump, '--json', '--quiet'], dir, stop);
        stopped();
        reportFailure(push, 'push-impressions');
        const pushSummary = parseSummary<PushImpressionsSummary>(push, 'push-impressions');
        for (const l of pushSummaryLines(pushSummary, pushSummary.deadLetters, pushSummary.deadLettersByReason)) say(`   ${l}`);
        say();

        const received: ReceivedReport = sandbox.received();
        const fmeOk = received.fme.events === exportSummary.fmeEventsSent;
        const ampOk = received.amplitude.events === pushSummary.eventsSent;
        say(`3. What the emulators received (GET ${sandbox.url}/_sandbox/received)`);
        say(`   FME events API        ${n(received.fme.events)} events in ${n(received.fme.requests)} requests ${fmeOk ? '(= sent by export-events)' : `(MISMATCH: export-events sent ${n(exportSummary.fmeEventsSent)})`}`);
        say(`   by traffic type       ${Object.entries(received.fme.byTrafficType).map(([k, v]) => `${k} ${n(v)}`).join(', ')}`);
        say(`   Amplitude Batch API   ${n(received.amplitude.events)} events ${ampOk ? '(= sent by push-impressions)' : `(MISMATCH: push-impressions sent ${n(pushSummary.eventsSent)})`}`);
        say();
        say('Next: the same commands with your keys. See "Quick start" in the README.');
        if (flags.json) process.stdout.write(`${JSON.stringify({ exportEvents: exportSummary, pushImpressions: pushSummary, received })}\n`);
        const childrenOk = (exp.code === 0 || exp.code === 3) && (push.code === 0 || push.code === 3);
        code = childrenOk && fmeOk && ampOk ? EXIT.OK : EXIT.FAILED;
      } catch (err) {
        // Interrupted, like any run: exit 1 (README, Exit codes). What a step stopped mid-way said is not news.
        if (stop.signal === undefined) process.stderr.write(`amp-fme demo: ${(err as Error).message}\n`);
        code = EXIT.FAILED;
      } finally {
        await sandbox?.close();
        rmSync(dir, { recursive: true, force: true });
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      if (code !== EXIT.OK && stop.signal !== undefined) process.stderr.write(`amp-fme demo: stopped (${stop.signal}); emulators closed, temporary folder removed\n`);
      process.exitCode = code;
    });
}
