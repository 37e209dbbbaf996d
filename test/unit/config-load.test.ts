import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitCodeFor, messageFor } from '../../src/cli/exit-codes.js';
import { loadConfig, type LoadOptions } from '../../src/config/load.js';
import { ConfigError, UsageError } from '../../src/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The error loadConfig rejects with (fails the test if it resolves). */
async function loadError(options: LoadOptions): Promise<Error> {
  const result = await loadConfig({ env: {}, ...options }).then(
    (loaded) => ({ loaded }),
    (err: unknown) => ({ err }),
  );
  if ('loaded' in result) throw new Error(`loadConfig resolved (config from ${String(result.loaded.filePath)}), expected an error`);
  expect(result.err).toBeInstanceOf(Error);
  return result.err as Error;
}

/** A config or usage error as the user sees it: exit 2, no stack trace, not called a bug. */
function expectUserError(err: Error, kind: typeof ConfigError | typeof UsageError = ConfigError): string {
  expect(err).toBeInstanceOf(kind);
  expect(exitCodeFor(err)).toBe(2);
  const message = messageFor(err);
  expect(message).not.toMatch(/Unexpected error|a bug in amp-fme/);
  expect(message).not.toMatch(/\n\s+at /);
  return message;
}

/**
 * Runs `fn` with the process's current folder set to `dir`: cosmiconfig looked for its meta-config in
 * process.cwd(), whatever folder loadConfig was asked to search. (vitest runs test files in forks, so chdir works.)
 */
async function inFolder<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const before = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(before);
  }
}

/** A JavaScript file that leaves `marker` behind if anything runs it. */
function jsThatLeaves(marker: string): string {
  return `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); module.exports = { exportEvents: { windowHours: 7 } };\n`;
}

const GOOD = JSON.stringify({ exportEvents: { windowHours: 6 } });

describe('loadConfig: a broken package.json in the current folder', () => {
  it('does not matter with --config', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'package.json'), '{ "name": "x", }');
    writeFileSync(join(dir, 'good.json'), GOOD);
    const loaded = await inFolder(dir, () => loadConfig({ configPath: 'good.json', cwd: dir, env: {} }));
    expect(loaded.filePath).toBe(join(dir, 'good.json'));
    expect(loaded.config.exportEvents.windowHours).toBe(6);
  });

  it('is a config error naming package.json, where, and what to do, without --config', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'package.json'), '{\n  "name": "x",\n}\n');
    const err = await inFolder(dir, () => loadError({ cwd: dir }));
    const message = expectUserError(err);
    expect((err as ConfigError).source).toBe(join(dir, 'package.json'));
    expect(message).toContain(join(dir, 'package.json'));
    expect(message).toContain('line 3, column 1: Expected double-quoted property name');
    expect(message).toContain('--config');
  });
});

describe("loadConfig: cosmiconfig's own settings in the current folder", () => {
  // cosmiconfig reads settings of its own (a "cosmiconfig" key in package.json, .config/config.*) from the
  // process's folder; the config search is the four places the README names and nothing else.
  it('are not read: a .config/config.js is not run, and the config comes from amp-fme.config.json', async () => {
    const dir = tempDir('cfgload');
    mkdirSync(join(dir, '.config'));
    const marker = join(dir, 'ran');
    writeFileSync(join(dir, '.config', 'config.js'), jsThatLeaves(marker));
    writeFileSync(join(dir, 'amp-fme.config.json'), GOOD);
    const loaded = await inFolder(dir, () => loadConfig({ cwd: dir, env: {} }));
    expect(loaded.filePath).toBe(join(dir, 'amp-fme.config.json'));
    expect(loaded.config.exportEvents.windowHours).toBe(6);
    expect(existsSync(marker)).toBe(false);
  });

  it('do not move the search: .config/config.json and package.json\'s "cosmiconfig" key are ignored', async () => {
    const defaults = (await inFolder(tempDir('cfgload'), () => loadConfig({ cwd: tempDir('cfgload'), env: {} }))).config.exportEvents.windowHours;
    const other = JSON.stringify({ exportEvents: { windowHours: defaults + 2 } });
    const meta = { searchPlaces: ['elsewhere.json'], 'amp-fme': { exportEvents: { windowHours: defaults + 3 } } };

    const dotConfig = tempDir('cfgload');
    mkdirSync(join(dotConfig, '.config'));
    writeFileSync(join(dotConfig, '.config', 'config.json'), JSON.stringify(meta));
    writeFileSync(join(dotConfig, 'elsewhere.json'), other);
    const fromDotConfig = await inFolder(dotConfig, () => loadConfig({ cwd: dotConfig, env: {} }));
    expect(fromDotConfig.filePath).toBeUndefined();
    expect(fromDotConfig.config.exportEvents.windowHours).toBe(defaults);

    const pkg = tempDir('cfgload');
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'x', cosmiconfig: { searchPlaces: ['elsewhere.json'] } }));
    writeFileSync(join(pkg, 'elsewhere.json'), other);
    const fromPackage = await inFolder(pkg, () => loadConfig({ cwd: pkg, env: {} }));
    expect(fromPackage.filePath).toBeUndefined();
    expect(fromPackage.config.exportEvents.windowHours).toBe(defaults);
  });
});

describe('loadConfig: invalid JSON', () => {
  const broken = '{\n  "amplitude": {\n    "region": "eu"\n    "apiKey": "sekrit-123"\n  }\n}\n';

  it('names the --config file and gives the reason with line and column, and no file content', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'c1.json'), broken);
    const message = expectUserError(await loadError({ configPath: 'c1.json', cwd: dir }));
    expect(message).toContain(join(dir, 'c1.json'));
    expect(message).toContain('line 4, column 5');
    expect(message).toMatch(/Expected ',' or '}' after property value/);
    expect(message).not.toContain('sekrit');
    expect(message).not.toMatch(/: \./);
  });

  it('names the file found by searching, not its folder', async () => {
    for (const name of ['amp-fme.config.json', '.amp-fmerc', '.amp-fmerc.json']) {
      const dir = tempDir('cfgload');
      writeFileSync(join(dir, name), '{ "exportEvents": { "windowHours": 6, } }');
      const err = await loadError({ cwd: dir });
      const message = expectUserError(err);
      expect((err as ConfigError).source).toBe(join(dir, name));
      expect(message).toContain(join(dir, name));
      expect(message).toContain('line 1, column 39: Expected double-quoted property name');
    }
  });

  it('locates the usual mistakes', async () => {
    const cases: [string, RegExp][] = [
      ['{ "a": 1 ', /line 1, column 10: Expected ',' or '}'/],
      ['{ "a": \'x\' }', /not valid JSON: strings and property names need double quotes/],
      ['{\n  // comment\n  "a": 1 }', /line 2, column 3: Expected property name or '}'/],
      ['// comment\n{ "a": 1 }', /not valid JSON: comments are not allowed/],
      ['{ "a": "line\nbreak" }', /line 1, column 13: Bad control character in string literal/],
      ['{ "a": 1 } x', /line 1, column 12: text after the end of the JSON value/],
      ['{ "a" 1 }', /line 1, column 7: Expected ':'/],
      ['{ "a": yes }', /not valid JSON: unexpected 'y' \(strings need double quotes; true, false and null are lower case\)/],
      ['', /is empty/],
    ];
    const dir = tempDir('cfgload');
    for (const [text, expected] of cases) {
      writeFileSync(join(dir, 'c.json'), text);
      const message = expectUserError(await loadError({ configPath: 'c.json', cwd: dir }));
      expect(message, text).toMatch(expected);
    }
  });

  it('reads a file that starts with a byte order mark', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'bom.json'), `\uFEFF${GOOD}`);
    const loaded = await loadConfig({ configPath: 'bom.json', cwd: dir, env: {} });
    expect(loaded.config.exportEvents.windowHours).toBe(6);
  });
});

describe('loadConfig: --config never falls back to the defaults', () => {
  it('refuses an empty file', async () => {
    const dir = tempDir('cfgload');
    for (const body of ['', '  \n']) {
      writeFileSync(join(dir, 'empty.json'), body);
      const message = expectUserError(await loadError({ configPath: 'empty.json', cwd: dir }));
      expect(message).toContain(join(dir, 'empty.json'));
      expect(message).toMatch(/is empty/);
    }
  });

  it('refuses a file that holds JSON but not an object', async () => {
    const dir = tempDir('cfgload');
    for (const body of ['null', '[]', '"eu"', '42']) {
      writeFileSync(join(dir, 'c.json'), body);
      const message = expectUserError(await loadError({ configPath: 'c.json', cwd: dir }));
      expect(message).toContain(join(dir, 'c.json'));
      expect(message, body).toMatch(/must be a JSON object/);
    }
  });

  it('refuses --config "" as a usage error', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'amp-fme.config.json'), GOOD);
    for (const configPath of ['', '   ']) {
      const message = expectUserError(await loadError({ configPath, cwd: dir }), UsageError);
      expect(message).toMatch(/--config needs the path/);
    }
  });

  it('refuses a folder', async () => {
    const dir = tempDir('cfgload');
    mkdirSync(join(dir, 'etc'));
    const message = expectUserError(await loadError({ configPath: 'etc', cwd: dir }));
    expect(message).toMatch(/is a folder/);
  });
});

describe('loadConfig: a config found by searching', () => {
  it('refuses an empty amp-fme.config.json rather than silently using the defaults', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'amp-fme.config.json'), '');
    const message = expectUserError(await loadError({ cwd: dir }));
    expect(message).toContain(join(dir, 'amp-fme.config.json'));
    expect(message).toMatch(/is empty/);
  });

  it('skips a package.json without an "amp-fme" key and refuses one whose key is not an object', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'x' }));
    writeFileSync(join(dir, '.amp-fmerc'), GOOD);
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.filePath).toBe(join(dir, '.amp-fmerc'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'x', 'amp-fme': null }));
    const message = expectUserError(await loadError({ cwd: dir }));
    expect(message).toContain(join(dir, 'package.json'));
    expect(message).toMatch(/"amp-fme".*must be a JSON object/);
  });

  it('refuses an amp-fme.config.json that is a folder rather than silently using the defaults', async () => {
    // What `docker run -v ./amp-fme.config.json:/app/amp-fme.config.json` leaves when the host file is missing.
    const dir = tempDir('cfgload');
    mkdirSync(join(dir, 'amp-fme.config.json'));
    writeFileSync(join(dir, '.amp-fmerc'), GOOD);
    const message = expectUserError(await loadError({ cwd: dir }));
    expect(message).toContain(join(dir, 'amp-fme.config.json'));
    expect(message).toMatch(/is a folder/);
  });

  it.skipIf(process.getuid?.() === 0)('refuses an amp-fme.config.json it may not read rather than silently using the defaults', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { region: 'eu' } }));
    chmodSync(join(dir, 'amp-fme.config.json'), 0o000);
    const message = expectUserError(await loadError({ cwd: dir }));
    expect(message).toContain(join(dir, 'amp-fme.config.json'));
    expect(message).toMatch(/permission denied/);
  });

  it('uses the defaults when there is no config file at all', async () => {
    const dir = tempDir('cfgload');
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.filePath).toBeUndefined();
    expect(loaded.baseDir).toBe(dir);
  });
});

describe('loadConfig: only JSON is read', () => {
  it('refuses YAML and JavaScript given with --config, and runs nothing', async () => {
    const dir = tempDir('cfgload');
    const marker = join(dir, 'ran.txt');
    writeFileSync(join(dir, 'x.yaml'), 'exportEvents:\n  windowHours: 7\n');
    writeFileSync(join(dir, 'x.yml'), 'exportEvents:\n  windowHours: 7\n');
    for (const ext of ['js', 'cjs', 'mjs', 'ts']) writeFileSync(join(dir, `x.${ext}`), jsThatLeaves(marker));
    for (const file of ['x.yaml', 'x.yml', 'x.js', 'x.cjs', 'x.mjs', 'x.ts']) {
      const message = expectUserError(await loadError({ configPath: file, cwd: dir }));
      expect(message, file).toContain(join(dir, file));
      expect(message, file).toMatch(/config file is JSON/);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a YAML .amp-fmerc with the JSON reason', async () => {
    const dir = tempDir('cfgload');
    writeFileSync(join(dir, '.amp-fmerc'), 'exportEvents:\n  windowHours: 7\n');
    const message = expectUserError(await loadError({ cwd: dir }));
    expect(message).toContain(join(dir, '.amp-fmerc'));
    expect(message).toMatch(/is not valid JSON: unexpected 'e'/);
  });

  it('refuses a config in a place it does not search (cosmiconfig\'s other names) rather than running on the defaults, and runs nothing', async () => {
    const marker = join(tempDir('cfgload'), 'ran.txt');
    const files: [string, string][] = [
      ['amp-fme.config.yaml', 'exportEvents:\n  windowHours: 7\n'],
      ['.amp-fmerc.yml', 'exportEvents:\n  windowHours: 7\n'],
      ['amp-fme.config.js', jsThatLeaves(marker)],
      ['.amp-fmerc.cjs', jsThatLeaves(marker)],
      [join('.config', 'amp-fmerc.json'), GOOD],
    ];
    for (const [file, body] of files) {
      const dir = tempDir('cfgload');
      mkdirSync(join(dir, '.config'));
      writeFileSync(join(dir, file), body);
      const err = await inFolder(dir, () => loadError({ cwd: dir }));
      const message = expectUserError(err);
      expect((err as ConfigError).source, file).toBe(join(dir, file));
      expect(message, file).toMatch(file.endsWith('.json') ? /is not a place amp-fme reads its config from/ : /config file is JSON/);
      expect(message, file).toContain('amp-fme.config.json');
    }
    expect(existsSync(marker)).toBe(false);
  });

  it('does not follow cosmiconfig\'s "$import" (an unknown key), and runs nothing', async () => {
    const dir = tempDir('cfgload');
    const marker = join(dir, 'ran.txt');
    writeFileSync(join(dir, 'evil.js'), jsThatLeaves(marker));
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ $import: 'evil.js' }));
    const err = await loadError({ cwd: dir });
    expectUserError(err);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['$import']);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('loadConfig: keys with a stray character', () => {
  it('refuses a key holding a control character, a space or a non-ASCII character, without showing it', async () => {
    const dir = tempDir('cfgkeys');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { apiKey: 'abc def 0123456789' } }));
    const err = await loadError({ cwd: dir, env: { FME_SDK_KEY: 'fme-key-0123456789\u0001', AMPLITUDE_SECRET_KEY: 'secret-0123456789€' } });
    const message = expectUserError(err);
    expect((err as ConfigError).problems.map((p) => p.path).sort()).toEqual(['amplitude.apiKey', 'amplitude.secretKey', 'fme.sdkKey']);
    expect(message).toMatch(/fme\.sdkKey: FME_SDK_KEY holds a space, a control character or a non-ASCII character/);
    expect(message).toMatch(/amplitude\.apiKey: holds a space/);
    for (const part of ['0123456789', 'abc def', 'secret-']) expect(message).not.toContain(part);
  });

  it('refuses a key wrapped in quotes (as docker --env-file passes KEY="..."), without showing it', async () => {
    const dir = tempDir('cfgkeys');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ fme: { sdkKey: "'fme-key-0123456789'" } }));
    const err = await loadError({ cwd: dir, env: { AMPLITUDE_API_KEY: '"a1b2c3d4e5f6a1b2"', AMPLITUDE_SECRET_KEY: ' "s1s2s3s4s5s6" ' } });
    const message = expectUserError(err);
    expect((err as ConfigError).problems.map((p) => p.path).sort()).toEqual(['amplitude.apiKey', 'amplitude.secretKey', 'fme.sdkKey']);
    expect(message).toMatch(/amplitude\.apiKey: AMPLITUDE_API_KEY is wrapped in quotes/);
    expect(message).toMatch(/fme\.sdkKey: is wrapped in quotes/);
    expect(message).toContain(join(dir, 'amp-fme.config.json'));
    for (const part of ['a1b2', 's1s2', '0123456789']) expect(message).not.toContain(part);
  });

  it('takes keys of printable ASCII, trimmed from the environment', async () => {
    const loaded = await loadConfig({ cwd: tempDir('cfgkeys'), env: { FME_SDK_KEY: '  fme-key_0123456789.x  \n', AMPLITUDE_API_KEY: 'a1b2c3d4e5f6' } });
    expect(loaded.config.fme.sdkKey).toBe('fme-key_0123456789.x');
    expect(loaded.config.amplitude.apiKey).toBe('a1b2c3d4e5f6');
  });
});

describe('state.dir', () => {
  it('takes ~/ as the home folder, as a shell would, and anything else relative to the config file', async () => {
    const dir = tempDir('config-home');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ state: { dir: '~/amp-state' } }));
    expect((await loadConfig({ env: {}, cwd: dir })).stateDir).toBe(join(homedir(), 'amp-state'));
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ state: { dir: 'x/~/y' } }));
    expect((await loadConfig({ env: {}, cwd: dir })).stateDir).toBe(join(dir, 'x/~/y'));
  });
});
