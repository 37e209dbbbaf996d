import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createExportEmulator, ExportStore, type ExportEmulatorOptions } from '../../src/sandbox/amplitude-export.js';
import { createFmeEventsEmulator, type FmeEventsEmulatorOptions } from '../../src/sandbox/fme-events.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { parseHourArg } from '../../src/amplitude/hours.js';
import type { Config } from '../../src/config/types.js';
import { validateConfig } from '../../src/config/validate.js';
import { createMemoryLogger, type Logger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runExportEvents, type ExportEventsSummary } from '../../src/pipeline/export-events.js';
import { tempDir } from './temp-dir.js';

export const KEYS = {
  amplitudeApiKey: 'amp-api-key-0123456789',
  amplitudeSecretKey: 'amp-secret-key-0123456789',
  fmeSdkKey: 'fme-sdk-key-server-0123456789',
};

export const BIN = resolve(__dirname, '../../bin/amp-fme.js');

/** Fast retries so tests never sleep for long. */
export const FAST_HTTP = { retries: 4, retryBaseDelayMs: 1, retryMaxDelayMs: 20, timeoutMs: 5000, exportTimeoutMs: 5000 };

export interface World {
  server: RunningServer;
  store: ExportStore;
  exportApi: ReturnType<typeof createExportEmulator>;
  fme: ReturnType<typeof createFmeEventsEmulator>;
  dir: string;
  /** Writes amp-fme.config.json in `dir` with the emulator URLs, fast retries and `extra` merged per section. */
  writeConfig(extra?: Record<string, Record<string, unknown>>): string;
  close(): Promise<void>;
}

export async function startWorld(opts: { exportOptions?: Partial<ExportEmulatorOptions>; fmeOptions?: Partial<FmeEventsEmulatorOptions> } = {}): Promise<World> {
  const store = new ExportStore();
  const exportApi = createExportEmulator({ apiKey: KEYS.amplitudeApiKey, secretKey: KEYS.amplitudeSecretKey, source: store, ...opts.exportOptions });
  const fme = createFmeEventsEmulator({ sdkKey: KEYS.fmeSdkKey, ...opts.fmeOptions });
  const server = await startServer([exportApi.route, fme.route]);
  const dir = tempDir('world');
  return {
    server,
    store,
    exportApi,
    fme,
    dir,
    writeConfig(extra = {}) {
      const config: Record<string, Record<string, unknown>> = {
        amplitude: { exportBaseUrl: server.url, ingestionBaseUrl: server.url, ...extra.amplitude },
        fme: { eventsBaseUrl: `${server.url}/api`, ...extra.fme },
        http: { ...FAST_HTTP, ...extra.http },
      };
      for (const [k, v] of Object.entries(extra)) if (!(k in config)) config[k] = v;
      const path = join(dir, 'amp-fme.config.json');
      writeFileSync(path, JSON.stringify(config, null, 2));
      return path;
    },
    close: () => server.close(),
  };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/amp-fme.js ...args` in `cwd` with the test keys in the environment (override with `env`).
 * `fileSizeLimit` runs it under `ulimit -f` (in the shell's blocks): writes past that fail with EFBIG, as on a
 * full disk, without filling one. `removeCwd` removes `cwd` (an empty folder) just before, as if it was deleted
 * from under the shell. `pasted` is shell text put after the args as it is, as a user pastes what a message
 * suggests: /bin/sh parses it.
 */
export function runCli(
  args: string[],
  cwd: string,
  env: Record<string, string | undefined> = {},
  opts: { fileSizeLimit?: number; removeCwd?: boolean; terminal?: boolean; pasted?: string } = {},
): Promise<CliResult> & { child: ReturnType<typeof spawn> } {
  const before = [opts.fileSizeLimit !== undefined ? `ulimit -f ${opts.fileSizeLimit}` : '', opts.removeCwd ? 'rmdir "$PWD"' : ''].filter(Boolean);
  const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
  const [command, argv] = opts.terminal
    ? // On a terminal, as a person runs it: util-linux `script` gives the CLI a pty (stdout and stderr both come out on stdout).
      ['script', ['-qefc', [process.execPath, BIN, ...args].map(quote).join(' '), '/dev/null']]
    : before.length === 0 && opts.pasted === undefined
      ? [process.execPath, [BIN, ...args]]
      : ['/bin/sh', ['-c', [...before, `exec "$0" "$@" ${opts.pasted ?? ''}`].join(' && '), process.execPath, BIN, ...args]];
  const child = spawn(command, argv, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AMPLITUDE_API_KEY: KEYS.amplitudeApiKey,
      AMPLITUDE_SECRET_KEY: KEYS.amplitudeSecretKey,
      FME_SDK_KEY: KEYS.fmeSdkKey,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolvePromise) => {
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
  return Object.assign(done, { child });
}

/** JSON log lines from stderr (`--log-format json`). */
export function logLines(stderr: string): { level: string; message: string; [k: string]: unknown }[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; message: string });
}

/** A checked config for in-process runs against `w`'s emulators, with the test keys; `exportEvents` as given. */
export function worldConfig(w: World, exportEvents: Record<string, unknown> = {}): Config {
  const { config, problems } = validateConfig({ amplitude: { exportBaseUrl: w.server.url }, fme: { eventsBaseUrl: `${w.server.url}/api` }, http: FAST_HTTP, exportEvents });
  if (problems.length > 0) throw new Error(`test config refused: ${JSON.stringify(problems)}`);
  config.amplitude.apiKey = KEYS.amplitudeApiKey;
  config.amplitude.secretKey = KEYS.amplitudeSecretKey;
  config.fme.sdkKey = KEYS.fmeSdkKey;
  return config;
}

/** export-events over one upload hour (`YYYYMMDDTHH`), in this process: its summary and its dead-letter file's path. */
export async function exportHour(config: Config, hour: string, logger: Logger = createMemoryLogger()): Promise<{ summary: ExportEventsSummary; deadLetterFile: string }> {
  const at = parseHourArg(hour, 'start');
  const deadLetters = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'export-events');
  try {
    const summary = await runExportEvents({ config, start: at, end: at, dryRun: false, logger, deadLetters });
    return { summary, deadLetterFile: deadLetters.path };
  } finally {
    await deadLetters.close();
  }
}
