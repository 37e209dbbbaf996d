import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { cosmiconfig, defaultLoaders } from 'cosmiconfig';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { registerSecret } from '../http/redact.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

export const CONFIG_SEARCH_PLACES = ['package.json', 'amp-fme.config.json', '.amp-fmerc', '.amp-fmerc.json'];

export interface LoadedConfig {
  config: Config;
  /** The file the config came from, if any. */
  filePath: string | undefined;
  /** Folder that relative paths (state.dir) resolve against: the config file's folder, else the cwd. */
  baseDir: string;
  /** `state.dir` resolved to an absolute path. */
  stateDir: string;
}

export interface LoadOptions {
  /** `--config <path>` */
  configPath?: string | undefined;
  /** Where to search when no path is given. */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Secrets read from the environment (they win over the file). */
const ENV_SECRETS: { env: string; path: string; set: (c: Config, v: string) => void }[] = [
  { env: 'AMPLITUDE_API_KEY', path: 'amplitude.apiKey', set: (c, v) => (c.amplitude.apiKey = v) },
  { env: 'AMPLITUDE_SECRET_KEY', path: 'amplitude.secretKey', set: (c, v) => (c.amplitude.secretKey = v) },
  { env: 'FME_SDK_KEY', path: 'fme.sdkKey', set: (c, v) => (c.fme.sdkKey = v) },
];

/**
 * Loads the configuration: defaults < config file (cosmiconfig: `amp-fme.config.json`, `.amp-fmerc`,
 * `.amp-fmerc.json`, an "amp-fme" key in package.json, or `--config <path>`) < environment. Flags are applied
 * by each command afterwards. Every problem is reported at once in one ConfigError.
 */
export async function loadConfig(options: LoadOptions = {}): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const explorer = cosmiconfig('amp-fme', {
    searchPlaces: CONFIG_SEARCH_PLACES,
    loaders: { '.json': defaultLoaders['.json'], noExt: defaultLoaders['.json'] },
    searchStrategy: 'none',
    cache: false,
  });

  let raw: unknown;
  let filePath: string | undefined;
  if (options.configPath) {
    const p = resolve(cwd, options.configPath);
    if (!existsSync(p)) {
      throw new ConfigError([{ path: '--config', message: `file not found: ${p}. Copy amp-fme.config.example.json to start one.` }]);
    }
    const found = await loadFile(() => explorer.load(p), p);
    raw = found?.config;
    filePath = p;
  } else {
    const found = await loadFile(() => explorer.search(cwd), cwd);
    if (found && !found.isEmpty) {
      raw = found.config;
      filePath = found.filepath;
    }
  }

  const { config, problems } = validateConfig(raw);
  for (const s of ENV_SECRETS) {
    const v = env[s.env];
    if (v !== undefined && v.trim() !== '') s.set(config, v.trim());
  }
  registerSecret(config.amplitude.apiKey);
  registerSecret(config.amplitude.secretKey);
  registerSecret(config.fme.sdkKey);
  if (problems.length > 0) throw new ConfigError(problems, filePath);

  const baseDir = filePath ? dirname(filePath) : cwd;
  return { config, filePath, baseDir, stateDir: resolve(baseDir, config.state.dir) };
}

async function loadFile<T>(fn: () => Promise<T>, where: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0] ?? 'unreadable';
    throw new ConfigError([{ path: '(file)', message: `could not read ${where}: ${msg}. The config file must be valid JSON.` }]);
  }
}

export type Requirement = 'amplitudeExport' | 'amplitudeIngestion' | 'fmeEvents';

/** Checks that the secrets a command needs are present; reports all that are missing at once. */
export function requireSecrets(config: Config, needs: Requirement[], source?: string): void {
  const problems: ConfigProblem[] = [];
  const need = new Set(needs);
  if (need.has('amplitudeExport') || need.has('amplitudeIngestion')) {
    if (!config.amplitude.apiKey) problems.push({ path: 'amplitude.apiKey', message: 'missing: set AMPLITUDE_API_KEY (or amplitude.apiKey in the config file)' });
  }
  if (need.has('amplitudeExport') && !config.amplitude.secretKey) {
    problems.push({ path: 'amplitude.secretKey', message: 'missing: set AMPLITUDE_SECRET_KEY (or amplitude.secretKey in the config file); the Export API needs the project secret key' });
  }
  if (need.has('fmeEvents') && !config.fme.sdkKey) {
    problems.push({ path: 'fme.sdkKey', message: 'missing: set FME_SDK_KEY to a server-side SDK key of the target FME environment (or fme.sdkKey in the config file)' });
  }
  if (problems.length > 0) throw new ConfigError(problems, source);
}
