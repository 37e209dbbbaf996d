import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import { loadConfig, requireSecrets } from '../../src/config/load.js';
import { knownKeyPaths, validateConfig } from '../../src/config/validate.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

function leafPaths(obj: unknown, prefix = ''): string[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return [prefix];
  return Object.entries(obj as Record<string, unknown>).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

describe('amp-fme.config.example.json', () => {
  const example = JSON.parse(readFileSync(resolve(__dirname, '../../amp-fme.config.example.json'), 'utf8')) as unknown;

  it('is a valid configuration', () => {
    expect(validateConfig(example).problems).toEqual([]);
  });

  /** Keys with no default: set in a copy of the example, each would change what the tool does (README's table has them). */
  const optional = [
    'amplitude.exportBaseUrl', // would pin one region's hosts, whatever amplitude.region says
    'amplitude.ingestionBaseUrl',
    'amplitude.minIdLength', // sent to Amplitude with every request
    'exportEvents.startAt', // the first --since-last-run would start a backfill from there
    'exportEvents.valueFrom',
    'log.format', // by default, text on a terminal and JSON elsewhere
  ];

  it('lists every key the tool knows but the optional ones', () => {
    const documented = new Set(leafPaths(example));
    expect(knownKeyPaths().filter((p) => !documented.has(p))).toEqual(optional);
  });

  it('behaves like the defaults once its placeholder keys are removed, but for the decode threads it sets', () => {
    const { config } = validateConfig(example);
    const expected = defaultConfig();
    expected.exportEvents.workers = 1;
    expected.pushImpressions.workers = 1;
    const { apiKey, secretKey, ...amplitude } = config.amplitude;
    expect([apiKey, secretKey, config.fme.sdkKey].every((k) => typeof k === 'string' && k.startsWith('set-'))).toBe(true);
    expect({ ...config, amplitude: { ...amplitude, apiKey: undefined, secretKey: undefined }, fme: { ...config.fme, sdkKey: undefined } }).toEqual(expected);
  });
});

describe('validateConfig', () => {
  it('reports every problem at once with its dot path, unknown keys included', () => {
    const { problems } = validateConfig({
      amplitude: { region: 'asia', apiKee: 'x' },
      fme: { eventsBaseUrl: 'not a url' },
      exportEvents: { batchSize: 0, identities: [{ trafficType: 'User', from: '' }], surprise: true },
      nonsense: 1,
    });
    const paths = problems.map((p) => p.path).sort();
    expect(paths).toEqual(
      [
        'amplitude.apiKee',
        'amplitude.region',
        'exportEvents.batchSize',
        'exportEvents.identities[0].from',
        'exportEvents.identities[0].trafficType',
        'exportEvents.surprise',
        'fme.eventsBaseUrl',
        'nonsense',
      ].sort(),
    );
    expect(problems.find((p) => p.path === 'amplitude.region')?.message).toContain('"us", "eu"');
  });

  it('reports keys named like Object.prototype members as unknown, and leaves Object.prototype alone', () => {
    const raw = JSON.parse('{"constructor": 1, "amplitude": {"toString": "x"}, "__proto__": {"valueOf": 1}}') as unknown;
    const { problems } = validateConfig(raw);
    expect(problems.map((p) => p.path).sort()).toEqual(['__proto__', 'amplitude.toString', 'constructor']);
    expect(problems.every((p) => p.message.startsWith('unknown key'))).toBe(true);
    expect(typeof Object.prototype.valueOf).toBe('function');
  });

  it('refuses more identities than progress marks can tell apart', () => {
    const ids = (n: number): { trafficType: string; from: string }[] => Array.from({ length: n }, (_, i) => ({ trafficType: `t${i}`, from: `user_properties.id${i}` }));
    expect(validateConfig({ exportEvents: { identities: ids(16) } }).problems).toEqual([]);
    expect(validateConfig({ exportEvents: { identities: ids(17) } }).problems).toEqual([{ path: 'exportEvents.identities', message: 'has 17 identities; at most 16 are supported' }]);
  });

  it('takes exportEvents.startAt exactly as --start takes an hour, and refuses what --start refuses', () => {
    for (const ok of ['20240301T05', '20240301t05', '2024-03-01', '2024-03-01T07:30+02:00']) expect(validateConfig({ exportEvents: { startAt: ok } }).problems).toEqual([]);
    for (const bad of ['2024-03-01Tjunk', '20241301T00', '2024-02-30', 'yesterday', 5]) {
      expect(validateConfig({ exportEvents: { startAt: bad } }).problems).toEqual([{ path: 'exportEvents.startAt', message: expect.stringContaining('must be an upload hour like') }]);
    }
    // The layout was right: the message says which field is wrong.
    expect(validateConfig({ exportEvents: { startAt: '2023-02-29' } }).problems[0]?.message).toContain('(February 2023 has 28 days, so day 29 does not exist)');
  });

  it('keeps defaults for what the file leaves out', () => {
    const { config, problems } = validateConfig({ exportEvents: { windowHours: 6 } });
    expect(problems).toEqual([]);
    expect(config.exportEvents.windowHours).toBe(6);
    expect(config.exportEvents.batchSize).toBe(5000);
    expect(config.exportEvents.excludeEventTypes).toEqual(['get_treatment']);
    expect(config.exportEvents.identities).toEqual([{ trafficType: 'user', from: 'user_id' }]);
  });

  it('rejects a push-impressions event type longer than Amplitude allows', () => {
    const { problems } = validateConfig({ pushImpressions: { eventType: 'x'.repeat(1025) } });
    expect(problems.map((p) => p.path)).toEqual(['pushImpressions.eventType']);
  });
});

describe('loadConfig', () => {
  it('finds amp-fme.config.json, .amp-fmerc, .amp-fmerc.json and package.json "amp-fme"', async () => {
    for (const [file, body] of [
      ['amp-fme.config.json', { exportEvents: { windowHours: 2 } }],
      ['.amp-fmerc', { exportEvents: { windowHours: 3 } }],
      ['.amp-fmerc.json', { exportEvents: { windowHours: 4 } }],
      ['package.json', { name: 'x', 'amp-fme': { exportEvents: { windowHours: 5 } } }],
    ] as const) {
      const dir = tempDir('config');
      writeFileSync(join(dir, file), JSON.stringify(body));
      const loaded = await loadConfig({ cwd: dir, env: {} });
      expect(loaded.filePath).toBe(join(dir, file));
      expect(loaded.config.exportEvents.windowHours).toBe(file === 'package.json' ? 5 : body.exportEvents?.windowHours);
      expect(loaded.stateDir).toBe(join(dir, '.amp-fme'));
    }
  });

  it('takes --config <path> and resolves state.dir against the file folder', async () => {
    const dir = tempDir('config');
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'sync.json'), JSON.stringify({ state: { dir: 'state' } }));
    const loaded = await loadConfig({ configPath: 'etc/sync.json', cwd: dir, env: {} });
    expect(loaded.stateDir).toBe(join(dir, 'etc', 'state'));
  });

  it('lets the environment override secrets from the file', async () => {
    const dir = tempDir('config');
    writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify({ amplitude: { apiKey: 'file-api-key' } }));
    const loaded = await loadConfig({ cwd: dir, env: { AMPLITUDE_API_KEY: 'env-api-key', FME_SDK_KEY: 'env-sdk-key' } });
    expect(loaded.config.amplitude.apiKey).toBe('env-api-key');
    expect(loaded.config.fme.sdkKey).toBe('env-sdk-key');
  });

  it('reports a missing --config file and invalid JSON as config errors', async () => {
    const dir = tempDir('config');
    await expect(loadConfig({ configPath: 'nope.json', cwd: dir, env: {} })).rejects.toThrow(/file not found/);
    writeFileSync(join(dir, 'amp-fme.config.json'), '{ "amplitude": ');
    const err = await loadConfig({ cwd: dir, env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('valid JSON');
  });

  it('names every missing secret with its env variable', async () => {
    const { config } = validateConfig({});
    const err = (() => {
      try {
        requireSecrets(config, ['amplitudeExport', 'fmeEvents']);
      } catch (e) {
        return e as ConfigError;
      }
      return undefined;
    })();
    expect(err?.problems.map((p) => p.path)).toEqual(['amplitude.apiKey', 'amplitude.secretKey', 'fme.sdkKey']);
    expect(err?.message).toContain('AMPLITUDE_SECRET_KEY');
    expect(err?.message).toContain('FME_SDK_KEY');
  });
});
