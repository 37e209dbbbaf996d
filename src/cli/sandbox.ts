import { writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { formatHour } from '../amplitude/hours.js';
import { UsageError } from '../errors.js';
import { shellArg } from '../io/shell-quote.js';
import { parseFaultRates } from '../sandbox/faults.js';
import { EXIT } from './exit-codes.js';

interface SandboxFlags {
  port?: string;
  events?: string;
  days?: string;
  faults?: string;
  writeConfig?: string;
}

/**
 * A whole-number flag, in plain decimal digits only: Number() alone also reads '0x50' (80), '1e3', ' 80', '80.0',
 * '+80' and '' (0), so a typo would quietly become another port or count instead of a usage error.
 */
export function intFlag(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be a whole number from ${min} to ${max} in decimal digits, got "${value}"`);
  return n;
}

export function sandboxCommand(): Command {
  return new Command('sandbox')
    .description('Serve emulators of the Amplitude and FME APIs on 127.0.0.1, seeded with a generated project, to try amp-fme without real keys')
    .option('--port <n>', 'port to listen on (default: any free port)')
    .option('--events <n>', 'events in the generated Amplitude project (default 20000)')
    .option('--days <n>', 'whole UTC days of events before today (default 3)')
    .option('--faults <spec>', 'inject faults at random, e.g. 5xx=0.1,429=0.05,slow=0.02,reset=0.01, to watch retries work')
    .option('--write-config <file>', 'also write the ready config to this file')
    .action(async (flags: SandboxFlags) => {
      let code: number = EXIT.OK;
      try {
        // The emulators are loaded only by the commands that start them (see cli/main.ts).
        const { startSandbox } = await import('../sandbox/sandbox.js');
        const sandbox = await startSandbox({
          ...(flags.port !== undefined ? { port: intFlag(flags.port, '--port', 0, 65535) as number } : {}),
          ...(flags.events !== undefined ? { events: intFlag(flags.events, '--events', 0, 50_000_000) as number } : {}),
          ...(flags.days !== undefined ? { days: intFlag(flags.days, '--days', 1, 60) as number } : {}),
          ...(flags.faults !== undefined ? { faults: parseFaults(flags.faults) } : {}),
        });
        const configText = `${JSON.stringify(sandbox.config, null, 2)}\n`;
        if (flags.writeConfig) writeConfig(flags.writeConfig, configText);
        const configHint = flags.writeConfig ? `--config ${shellArg(flags.writeConfig)}` : '--config sandbox.json';
        process.stdout.write(
          [
            `amp-fme sandbox listening on ${sandbox.url}`,
            `  Amplitude Export API   ${sandbox.url}/api/2/export`,
            `  Amplitude Batch/HTTP   ${sandbox.url}/batch, ${sandbox.url}/2/httpapi, ${sandbox.url}/identify`,
            `  FME events API         ${sandbox.url}/api/events/bulk`,
            `  what they received     ${sandbox.url}/_sandbox/received`,
            `  data                   ${sandbox.events.toLocaleString('en-US')} events, upload hours ${formatHour(sandbox.firstHour)}..${formatHour(sandbox.lastHour)}`,
            '',
            flags.writeConfig ? `Config written to ${flags.writeConfig}:` : 'Config (save as sandbox.json):',
            configText,
            'Try (with AMPLITUDE_API_KEY, AMPLITUDE_SECRET_KEY and FME_SDK_KEY unset: the environment overrides the config file):',
            `  npx amp-fme export-events ${configHint} --start ${formatHour(sandbox.firstHour)} --end ${formatHour(sandbox.lastHour)}`,
            `  curl ${sandbox.url}/_sandbox/received`,
            '',
            'Press Ctrl-C to stop.',
            '',
          ].join('\n'),
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await sandbox.close();
      } catch (caught) {
        let err = caught;
        // The port the user asked for is taken (another sandbox?) or not theirs: a usage error, said so.
        const errno = (err as NodeJS.ErrnoException).code;
        if (flags.port !== undefined && (errno === 'EADDRINUSE' || errno === 'EACCES')) {
          err = new UsageError(`--port ${flags.port}: ${errno === 'EADDRINUSE' ? 'already in use (another sandbox?)' : 'not allowed for this user'}; choose another, or leave --port out for any free port`);
        }
        process.stderr.write(`amp-fme sandbox: ${(err as Error).message}\n`);
        code = err instanceof UsageError ? EXIT.USAGE : EXIT.FAILED;
      }
      process.exitCode = code;
    });
}

/**
 * `--write-config`: a path that cannot be written (its folder missing, a folder, no permission) is a mistake in the
 * flag, said with the path and what to do (exit 2), not a raw ENOENT from the machine (exit 1).
 */
function writeConfig(file: string, text: string): void {
  try {
    writeFileSync(file, text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why: Record<string, string> = {
      ENOENT: `its folder ${dirname(file)} does not exist; create the folder first, or give a path in an existing one`,
      ENOTDIR: 'part of the path is a file, not a folder; give a path in an existing folder',
      EISDIR: 'it is a folder; give a file name, e.g. sandbox.json',
      EACCES: 'permission denied; give a path you can write to',
      EPERM: 'not permitted; give a path you can write to',
      EROFS: 'the file system is read-only; give a path you can write to',
    };
    const reason = code !== undefined ? why[code] : undefined;
    if (reason === undefined) throw err;
    throw new UsageError(`--write-config ${file}: cannot write the config there: ${reason}`);
  }
}

/** `--faults`, a mistake in it as a usage error (exit 2). */
export function parseFaults(spec: string): ReturnType<typeof parseFaultRates> {
  try {
    return parseFaultRates(spec);
  } catch (err) {
    throw new UsageError(`--faults: ${(err as Error).message}`);
  }
}
