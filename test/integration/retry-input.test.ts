import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor, messageFor } from '../../src/cli/exit-codes.js';
import { defaultConfig } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';
import { UsageError } from '../../src/errors.js';
import { createMemoryLogger, silentLogger, type Logger } from '../../src/log/logger.js';
import { DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { runRetry } from '../../src/pipeline/retry.js';
import { createFmeEventsEmulator } from '../../src/sandbox/fme-events.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { tempDir } from '../helpers/temp-dir.js';

const SDK_KEY = 'retry-input-sdk-key-1';
// A secret that is only in a config file (the run's own key comes from elsewhere), so nothing would redact it.
const FILE_ONLY_SECRET = 'secret-only-in-the-config-file-0123456789';
const fme = createFmeEventsEmulator({ sdkKey: SDK_KEY });
let server: RunningServer;
beforeAll(async () => {
  server = await startServer([fme.route]);
});
afterAll(async () => server.close());

function config(): Config {
  const c = defaultConfig();
  c.fme.sdkKey = SDK_KEY;
  c.fme.eventsBaseUrl = `${server.url}/api`;
  return c;
}

const fmeLetter = (key: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    time: '2024-03-01T10:00:00.000Z',
    command: 'export-events',
    reason: 'fme_rejected',
    status: 400,
    retriable: true,
    payload: { eventTypeId: 'amp.A', trafficTypeName: 'user', key, timestamp: 1_709_287_200_000 },
    ...extra,
  });

/** Runs a retry of `name` (written with `content`, or made by `make`) with the run's dead letters in `<dir>/state/dead-letters/`. */
async function retryOf(name: string, content: string | Buffer | ((path: string) => void), logger: Logger = silentLogger) {
  const dir = tempDir('retry-input');
  const file = join(dir, name);
  if (typeof content === 'function') content(file);
  else writeFileSync(file, content);
  const deadLetters = new DeadLetterWriter(join(dir, 'state', 'dead-letters', 'retry-new.ndjson'), 'retry');
  const outcome = await runRetry({ config: config(), file, logger, deadLetters, force: false }).then(
    (summary) => ({ summary, err: undefined }),
    (err: unknown) => ({ summary: undefined, err }),
  );
  await deadLetters.close();
  return { dir, file, deadLetters, ...outcome };
}

describe('amp-fme retry refuses what is not a dead-letter file', () => {
  const notDeadLetters: [string, string, string | Buffer | ((path: string) => void), RegExp][] = [
    [
      'the config file (pretty-printed JSON)',
      'amp-fme.config.json',
      JSON.stringify({ fme: { sdkKey: FILE_ONLY_SECRET }, amplitude: { apiKey: FILE_ONLY_SECRET } }, null, 2),
      /line 1 is not JSON/,
    ],
    ['a config file on one line', 'amp-fme.config.json', JSON.stringify({ fme: { sdkKey: FILE_ONLY_SECRET } }), /line 1 is a JSON object without a string "reason" and a boolean "retriable"/],
    ['a plain text file', 'notes.txt', `\n\nremember to rotate ${FILE_ONLY_SECRET}\n${fmeLetter('user-1')}\n`, /line 3 is not a JSON object/],
    [
      'an impressions dump (NDJSON)',
      'impressions.ndjson',
      `${JSON.stringify({ keyName: 'user-1', feature: 'checkout', treatment: 'on', time: 1_709_287_200_000, changeNumber: 1, label: 'default rule' })}\n`,
      /line 1 is a JSON object without/,
    ],
    ['a gzip of a dead-letter file', 'dead.ndjson.gz', gzipSync(`${fmeLetter('user-1')}\n`), /line 1 is not a JSON object/],
    ['a record whose retriable is not a boolean', 'old.ndjson', `${fmeLetter('user-1', { retriable: 'true' })}\n`, /without a string "reason" and a boolean "retriable"/],
    ['a JSON array', 'old.ndjson', '[{"reason":"fme_rejected","retriable":true}]\n', /line 1 is not a JSON object/],
    ['an empty file', 'old.ndjson', '\n  \n', /it is empty/],
    ['a folder', 'dead-letters', (p) => mkdirSync(p), /is a folder, not a dead-letter file/],
  ];

  it.each(notDeadLetters)('%s: exit 2 naming the file, before anything is sent, written or renamed', async (_what, name, content, why) => {
    const before = fme.count;
    const { dir, file, deadLetters, summary, err } = await retryOf(name, content);
    expect(summary).toBeUndefined();
    expect(err).toBeInstanceOf(UsageError);
    expect(exitCodeFor(err)).toBe(2);
    const message = messageFor(err);
    expect(message).toContain(file);
    expect(message).toMatch(why);
    expect(message).toContain(`state.dir/dead-letters/ (here ${join(dir, 'state', 'dead-letters')}/)`);
    expect(message).not.toContain(FILE_ONLY_SECRET);
    expect(message).not.toMatch(/Unexpected error|\n\s+at /);
    // Nothing renamed, written or sent.
    expect(existsSync(file)).toBe(true);
    expect(existsSync(`${file}.retried`)).toBe(false);
    expect(readdirSync(dir).sort()).toEqual([name]);
    expect(deadLetters.count).toBe(0);
    expect(existsSync(deadLetters.path)).toBe(false);
    expect(fme.count).toBe(before);
  });

  it('takes a dead-letter file, also one made by hand or an older version (no time or command), after blank lines', async () => {
    const before = fme.count;
    const old = JSON.stringify({ command: 'export-events', reason: 'fme_rejected', retriable: true, payload: JSON.parse(fmeLetter('user-2')).payload as unknown });
    const { file, summary, err } = await retryOf('old.ndjson', `\n\r\n  ${old}\r\n${fmeLetter('user-3')}\n`);
    expect(err).toBeUndefined();
    expect(summary?.resent.fme).toBe(2);
    expect(fme.count - before).toBe(2);
    expect(summary?.renamedTo).toBe(`${file}.retried`);
  });

  it('still carries over an unreadable line in the middle of a dead-letter file', async () => {
    const { deadLetters, summary, err } = await retryOf('old.ndjson', `${fmeLetter('user-4')}\nthis line is not a record\n${JSON.stringify({ reason: 'invalid_json', retriable: false, payload: '{"a' })}\n`);
    expect(err).toBeUndefined();
    expect(summary).toMatchObject({ resent: { fme: 1 }, carriedOver: 2 });
    const reasons = readFileSync(deadLetters.path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { reason: string }).reason);
    expect(reasons).toEqual(['unreadable_dead_letter', 'invalid_json']);
    expect(deadLetters.retriableCount).toBe(0);
  });

  it('re-sends only records whose retriable is true: "yes", 1 or none is not guessed at, but carried over and said', async () => {
    const before = fme.count;
    const logger = createMemoryLogger();
    const lines = [fmeLetter('user-5'), fmeLetter('user-6', { retriable: 'yes' }), fmeLetter('user-7', { retriable: 1 }), fmeLetter('user-8', { retriable: undefined })];
    const { file, deadLetters, summary, err } = await retryOf('old.ndjson', `${lines.join('\n')}\n`, logger);
    expect(err).toBeUndefined();
    expect(fme.events.slice(before).map((e) => e.key)).toEqual(['user-5']);
    expect(summary).toMatchObject({ records: 4, resent: { fme: 1 }, carriedOver: 3, invalid: 3 });
    // Each line kept as it was, not retriable, its line named.
    const carried = readFileSync(deadLetters.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; detail: string; retriable: boolean; payload: string });
    expect(carried.map((l) => [l.reason, l.retriable, l.payload])).toEqual(lines.slice(1).map((l) => ['unreadable_dead_letter', false, l]));
    expect(carried.map((l) => l.detail)).toEqual([
      `${file} line 2: its "retriable" is a string, not true or false`,
      `${file} line 3: its "retriable" is a number, not true or false`,
      `${file} line 4: its "retriable" is missing, not true or false`,
    ]);
    expect(deadLetters.retriableCount).toBe(0);
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
      expect.stringContaining(`${file} line 2 is not a dead-letter record retry can use (its "retriable" is a string, not true or false): it is not re-sent`),
    ]);
  });
});
