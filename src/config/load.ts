import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import { ConfigError, UsageError, type ConfigProblem } from '../errors.js';
import { registerSecret } from '../http/redact.js';
import { currentFolder } from '../io/current-folder.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

/**
 * Where cosmiconfig looks for the config file, in the current folder only, first found wins (package.json only
 * if it has an "amp-fme" key). Every file it reads goes through `jsonLoader`; the loaders of other formats refuse
 * (so `$import` cannot pull in YAML or run JavaScript). `--config` reads its file directly.
 */
export const CONFIG_SEARCH_PLACES = ['package.json', 'amp-fme.config.json', '.amp-fmerc', '.amp-fmerc.json'];

/** The key of package.json that holds the config. */
const PACKAGE_KEY = 'amp-fme';

/** Extensions of other config formats: refused by name, so that nothing of them is run or half-read. */
const NOT_JSON: Record<string, string> = {
  '.js': 'JavaScript', '.cjs': 'JavaScript', '.mjs': 'JavaScript', '.jsx': 'JavaScript',
  '.ts': 'TypeScript', '.cts': 'TypeScript', '.mts': 'TypeScript', '.tsx': 'TypeScript',
  '.yaml': 'YAML', '.yml': 'YAML', '.toml': 'TOML', '.ini': 'INI',
};

const START_ONE = 'Copy amp-fme.config.example.json to start one.';

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
const ENV_SECRETS: { env: string; path: string; set: (c: Config, v: string) => void; get: (c: Config) => string | undefined }[] = [
  { env: 'AMPLITUDE_API_KEY', path: 'amplitude.apiKey', set: (c, v) => (c.amplitude.apiKey = v), get: (c) => c.amplitude.apiKey },
  { env: 'AMPLITUDE_SECRET_KEY', path: 'amplitude.secretKey', set: (c, v) => (c.amplitude.secretKey = v), get: (c) => c.amplitude.secretKey },
  { env: 'FME_SDK_KEY', path: 'fme.sdkKey', set: (c, v) => (c.fme.sdkKey = v), get: (c) => c.fme.sdkKey },
];

/** What keys are made of: printable ASCII, no space. */
const KEY_CHARACTERS = /^[\x21-\x7e]*$/;

/**
 * Loads the configuration: defaults < config file (`--config <path>`, else the first of CONFIG_SEARCH_PLACES in
 * the folder `cwd`) < environment. Flags are applied by each command afterwards. Every problem is reported at
 * once in one ConfigError; a file that is missing, empty, not JSON or not an object is a ConfigError naming it
 * (never a silent fall back to the defaults, which point at the production hosts).
 */
export async function loadConfig(options: LoadOptions = {}): Promise<LoadedConfig> {
  // The current folder only when it is needed: an absolute --config works even if it no longer exists.
  const cwd = (): string => options.cwd ?? currentFolder();
  const env = options.env ?? process.env;
  const found = options.configPath !== undefined ? await readGivenFile(options.configPath, cwd) : await searchFolder(cwd());
  const raw = found?.raw;
  const filePath = found?.filePath;

  const { config, problems } = validateConfig(raw);
  for (const s of ENV_SECRETS) {
    const v = env[s.env];
    const fromEnv = v !== undefined && v.trim() !== '';
    if (fromEnv) s.set(config, v.trim());
    const value = s.get(config);
    registerSecret(value);
    // A key pasted with a stray character would fail every request (as a "network error", for a header) and be retried.
    if (value !== undefined && !KEY_CHARACTERS.test(value)) {
      problems.push({ path: s.path, message: `${fromEnv ? `${s.env} holds` : 'holds'} a space, a control character or a non-ASCII character, which no key has: check what was pasted (the value is not shown)` });
    } else if (value !== undefined && /^(["']).*\1$/s.test(value)) {
      // `docker run --env-file` and Kubernetes keep the quotes of `AMPLITUDE_API_KEY="..."`: sent, the key would
      // only be refused, after a whole export was downloaded, with advice about the region.
      problems.push({ path: s.path, message: `${fromEnv ? `${s.env} is` : 'is'} wrapped in quotes, which are then part of the key and no key has: remove them (the value is not shown)` });
    }
  }
  // A proxy's password in amplitude.ingestionBaseUrl (validate.ts allows it there): masked like a key if any text shows the URL.
  registerUrlPassword(config.amplitude.ingestionBaseUrl);
  if (problems.length > 0) throw new ConfigError(problems, filePath);

  const baseDir = filePath ? dirname(filePath) : cwd();
  return { config, filePath, baseDir, stateDir: resolve(baseDir, expandHome(config.state.dir)) };
}

/**
 * `~` and `~/...` as a shell reads them (the home folder): a JSON config is not read by a shell, and `"~/amp-state"`
 * would otherwise be a folder named `~` next to the config, where a cron run from elsewhere would not look.
 */
function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

/** The password of a URL (as written, percent-encoded, and decoded), for `redact`. */
function registerUrlPassword(value: string | undefined): void {
  if (value === undefined || !URL.canParse(value)) return;
  const { password } = new URL(value);
  registerSecret(password);
  try {
    registerSecret(decodeURIComponent(password));
  } catch {
    // A malformed escape (%zz): the password is only the text as written.
  }
}

interface FoundConfig {
  raw: unknown;
  filePath: string;
}

/** `--config <path>`: that file and no other (package.json of the current folder is not even read). */
async function readGivenFile(configPath: string, cwd: () => string): Promise<FoundConfig> {
  if (configPath.trim() === '') {
    throw new UsageError(`--config needs the path of a JSON config file, got an empty value. ${START_ONE}`);
  }
  const filePath = isAbsolute(configPath) ? resolve(configPath) : resolve(cwd(), configPath);
  const ext = extname(filePath);
  const format = NOT_JSON[ext.toLowerCase()];
  if (format !== undefined) {
    throw fileError(filePath, `is ${format}, but the config file is JSON: amp-fme reads no other format and runs no code. Write it as JSON, e.g. ${basename(filePath, ext)}.json (see amp-fme.config.example.json).`);
  }
  const text = await readText(filePath);
  if (text === undefined) throw new ConfigError([{ path: '--config', message: `file not found: ${filePath}. ${START_ONE}` }]);
  const isPackage = basename(filePath) === 'package.json';
  if (text.trim() === '') throw fileError(filePath, isPackage ? 'is empty.' : IS_EMPTY);
  const raw = configIn(filePath, parseJson(text, filePath, jsonHint(isPackage, false)));
  if (raw === undefined) throw fileError(filePath, `has no "${PACKAGE_KEY}" key: put the config under that key, or give --config a JSON config file.`);
  return { raw, filePath };
}

/** No `--config`: cosmiconfig's search of the folder; the first of CONFIG_SEARCH_PLACES that holds a config wins. */
async function searchFolder(dir: string): Promise<FoundConfig | undefined> {
  const refuse: Loader = (filePath) => {
    throw fileError(filePath, `is not JSON, and the config file is JSON: amp-fme reads no other format and runs no code.`);
  };
  const explorer = explorerWithoutMetaConfig({
    searchPlaces: CONFIG_SEARCH_PLACES,
    searchStrategy: 'none',
    cache: false,
    ignoreEmptySearchPlaces: false,
    loaders: { '.json': jsonLoader, noExt: jsonLoader, '.js': refuse, '.cjs': refuse, '.mjs': refuse, '.ts': refuse, '.yaml': refuse, '.yml': refuse },
  });
  let found: Awaited<ReturnType<typeof explorer.search>>;
  try {
    found = await explorer.search(dir);
  } catch (err) {
    throw unreadable(err, dir);
  }
  await refuseSkipped(dir, found?.filepath);
  if (!found) {
    await refuseUnsearched(dir);
    return undefined;
  }
  if (found.isEmpty) throw fileError(found.filepath, IS_EMPTY);
  // jsonLoader has checked it with configIn.
  return { raw: found.config as Record<string, unknown>, filePath: found.filepath };
}

/**
 * cosmiconfig passes over a search place that is a folder or cannot be read (EISDIR, EACCES) as if it were not
 * there, and goes on to the next place or to the defaults (the production hosts, region us): a config file the
 * user wrote but amp-fme cannot read (a root-owned file under cron, a Docker bind mount of a missing file, which
 * Docker creates as a folder) would be silently ignored. Refuses any such place before `foundPath`.
 */
async function refuseSkipped(dir: string, foundPath: string | undefined): Promise<void> {
  for (const place of CONFIG_SEARCH_PLACES) {
    const filePath = join(dir, place);
    if (foundPath !== undefined && resolve(foundPath) === resolve(filePath)) return;
    let isFolder: boolean;
    try {
      isFolder = (await stat(filePath)).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw fileError(filePath, `could not be read (${unreadableBecause(code, 'unknown error')}): fix it, or give --config <path>.`);
    }
    if (isFolder) throw fileError(filePath, 'is a folder, not a file: remove it, or give --config the path of the JSON config file.');
    try {
      await access(filePath, constants.R_OK);
    } catch (err) {
      throw fileError(filePath, `could not be read (${unreadableBecause((err as NodeJS.ErrnoException).code, 'unknown error')}): make it readable by the user that runs amp-fme, or give --config <path>.`);
    }
  }
}

/**
 * Where cosmiconfig would look by default, or a user by analogy with amp-fme.config.json, but amp-fme does not: a
 * config written there (`.amp-fmerc.yml`, `amp-fme.config.js`, `.config/amp-fmerc.json`) would be passed over
 * without a word and the run would go on the defaults (the production hosts, region us).
 */
const UNSEARCHED_PLACES = [
  ...['yaml', 'yml', 'js', 'ts', 'cjs', 'mjs'].flatMap((ext) => [`.amp-fmerc.${ext}`, `amp-fme.config.${ext}`]),
  ...['', '.json', '.yaml', '.yml', '.js', '.ts', '.cjs', '.mjs'].map((ext) => join('.config', `amp-fmerc${ext}`)),
];

/** No config found: refuses a file in one of UNSEARCHED_PLACES rather than running on the defaults. */
async function refuseUnsearched(dir: string): Promise<void> {
  for (const place of UNSEARCHED_PLACES) {
    const filePath = join(dir, place);
    try {
      await stat(filePath);
    } catch {
      continue;
    }
    const format = NOT_JSON[extname(filePath).toLowerCase()];
    const what = format !== undefined ? `is ${format}, but the config file is JSON: amp-fme reads no other format and runs no code.` : 'is not a place amp-fme reads its config from.';
    throw fileError(filePath, `${what} Without --config, the config is the first of an "amp-fme" key in package.json, amp-fme.config.json, .amp-fmerc and .amp-fmerc.json in the current folder: move it to amp-fme.config.json (as JSON), or give --config <path>.`);
  }
}

/** amp-fme's own package folder: it holds no cosmiconfig settings (no "cosmiconfig" key in its package.json, no .config folder). */
const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));

/**
 * A cosmiconfig explorer that takes these options and no others. When made, cosmiconfig reads settings of its own
 * from the process's current folder (a "cosmiconfig" key in package.json, or .config/config.{json,yaml,js,ts,...},
 * which it would run): they would move the search to other files, make a .config/config.json the config, or stop
 * every run in a folder where another tool keeps a .config/config.js. So it is made from amp-fme's own folder,
 * which holds none. Made synchronously: no other code runs while the process is in that folder.
 */
function explorerWithoutMetaConfig(options: Parameters<typeof cosmiconfig>[1]): ReturnType<typeof cosmiconfig> {
  const cwd = process.cwd();
  process.chdir(PACKAGE_DIR);
  try {
    return cosmiconfig('amp-fme', options);
  } finally {
    process.chdir(cwd);
  }
}

/** cosmiconfig's loader of every config file: JSON only, checked by `configIn`. An empty package.json is not ours to judge. */
const jsonLoader: Loader = (filePath, content) => {
  const text = withoutBom(content);
  const isPackage = basename(filePath) === 'package.json';
  if (text.trim() === '') return isPackage ? {} : null;
  const value = parseJson(text, filePath, jsonHint(isPackage, true));
  configIn(filePath, value);
  return value;
};

const IS_EMPTY = 'is empty: write a JSON object in it ({} for all the defaults; see amp-fme.config.example.json), or delete it.';

/** What to do about a file that is not valid JSON. */
function jsonHint(isPackage: boolean, searching: boolean): string {
  if (!isPackage) return 'The config file is JSON: see amp-fme.config.example.json.';
  const other = searching ? ', or give --config <path> to read the config from a file of its own' : '';
  return `amp-fme looks in it for an "${PACKAGE_KEY}" key: fix it (npm cannot read it either)${other}.`;
}

/**
 * The config a config file's JSON holds: the whole of it, or package.json's "amp-fme" key (undefined when it
 * has none). It must be an object, without cosmiconfig's `$import`, which it would follow into other files
 * (and skip the whole config when one is missing).
 */
function configIn(filePath: string, value: unknown): Record<string, unknown> | undefined {
  let own = value;
  if (basename(filePath) === 'package.json') {
    if (!isObject(value) || !Object.hasOwn(value, PACKAGE_KEY)) return undefined;
    own = value[PACKAGE_KEY];
    if (!isObject(own)) {
      // cosmiconfig would take a null key for none, and the defaults for the config.
      throw new ConfigError([{ path: `"${PACKAGE_KEY}"`, message: `must be a JSON object ({ ... }; {} for all the defaults), got ${describe(own)}.` }], filePath);
    }
  } else if (!isObject(own)) {
    throw fileError(filePath, `must be a JSON object ({ ... }; {} for all the defaults), got ${describe(own)}.`);
  }
  if (Object.hasOwn(own, '$import')) {
    throw new ConfigError([{ path: '$import', message: 'unknown key: amp-fme reads one JSON file, with no imports' }], filePath);
  }
  return own;
}

/** A byte order mark, as some Windows editors write, is not JSON but means no harm. */
function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** A failure of cosmiconfig's search as a ConfigError naming the file it was reading (ours pass through). */
function unreadable(err: unknown, dir: string): ConfigError {
  if (err instanceof ConfigError) return err;
  const e = err as NodeJS.ErrnoException;
  // Not the library's message: it may quote the file, and its secrets, before they are known to the redactor.
  if (typeof e.path !== 'string') return fileError(dir, `could not be searched for a config file (${e.code ?? 'unknown error'}): give --config <path>.`);
  return fileError(e.path, `could not be read (${unreadableBecause(e.code, 'unknown error')}): fix it, or give --config <path>.`);
}

/** Why a file could not be read, in words: its error code, or `otherwise` without one. */
function unreadableBecause(code: string | undefined, otherwise: string): string {
  return code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (code ?? otherwise);
}

/** The `--config` file's text; undefined if there is no such file. */
async function readText(filePath: string): Promise<string | undefined> {
  try {
    return withoutBom(await readFile(filePath, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EISDIR') throw fileError(filePath, 'is a folder, not a file: give --config the path of the JSON config file.');
    const why = unreadableBecause(code, 'unknown error');
    throw fileError(filePath, `could not be read (${why}). Make it readable by the user that runs amp-fme.`);
  }
}

/**
 * JSON.parse, with a failure said as its reason and, when V8 gives the position, line and column. Not the whole
 * message: V8 quotes the text near the fault, which may hold a secret the redactor does not know yet.
 */
function parseJson(text: string, filePath: string, hint: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fileError(filePath, `is not valid JSON${jsonFault(text, (err as Error).message)}. ${hint}`);
  }
}

/** `: <reason>` or ` at line L, column C: <reason>`, from V8's message for `text`, without the text it quotes. */
function jsonFault(text: string, message: string): string {
  const at = /^(.*?) in JSON at position (\d+)/.exec(message) ?? /^(.*?) after JSON at position (\d+)/.exec(message);
  if (at) {
    const pos = Number(at[2]);
    const before = text.slice(0, pos);
    const line = (before.match(/\n/g)?.length ?? 0) + 1;
    return ` at line ${line}, column ${pos - before.lastIndexOf('\n')}: ${(at[1] as string).replace(/^Unexpected non-whitespace character$/, 'text after the end of the JSON value')}`;
  }
  // `Unexpected token 'x', "...text..." is not valid JSON`, `Unexpected end of JSON input`.
  const token = /^Unexpected token '(.)'/.exec(message)?.[1];
  if (token === "'") return ': strings and property names need double quotes (")';
  if (token === '/' || token === '#') return ': comments are not allowed in JSON';
  if (token !== undefined) return `: unexpected '${token}' (strings need double quotes; true, false and null are lower case)`;
  if (/^Unexpected end of JSON input/.test(message)) return ': the file ends before the JSON does (a closing } or ] missing?)';
  return '';
}

function fileError(filePath: string, message: string): ConfigError {
  return new ConfigError([{ path: '(file)', message }], filePath);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'boolean' ? String(value) : `a ${typeof value}`;
}

export type Requirement = 'amplitudeExport' | 'amplitudeIngestion' | 'fmeEvents';

/**
 * What amp-fme.config.example.json holds in place of each key (`set-FME_SDK_KEY-in-the-environment-instead`). A copy
 * that keeps one, with the variable unset, has no key: sent, it would only be refused, after a whole export was
 * downloaded, with advice about the region.
 */
const EXAMPLE_PLACEHOLDER = /^set-[A-Z_]+-in-the-environment-instead$/;

/** Checks that the secrets a command needs are present; reports all that are missing at once. */
export function requireSecrets(config: Config, needs: Requirement[], source?: string): void {
  const problems: ConfigProblem[] = [];
  const need = new Set(needs);
  const missing = (path: string, value: string | undefined, advice: string): void => {
    if (!value) problems.push({ path, message: `missing: ${advice}` });
    else if (EXAMPLE_PLACEHOLDER.test(value)) problems.push({ path, message: `still holds the placeholder of amp-fme.config.example.json: ${advice}` });
  };
  if (need.has('amplitudeExport') || need.has('amplitudeIngestion')) {
    missing('amplitude.apiKey', config.amplitude.apiKey, 'set AMPLITUDE_API_KEY (or amplitude.apiKey in the config file)');
  }
  if (need.has('amplitudeExport')) {
    missing('amplitude.secretKey', config.amplitude.secretKey, 'set AMPLITUDE_SECRET_KEY (or amplitude.secretKey in the config file); the Export API needs the project secret key');
  }
  if (need.has('fmeEvents')) {
    missing('fme.sdkKey', config.fme.sdkKey, 'set FME_SDK_KEY to a server-side SDK key of the target FME environment (or fme.sdkKey in the config file)');
  }
  if (problems.length > 0) throw new ConfigError(problems, source);
}
