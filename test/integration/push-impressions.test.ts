import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import type { PushImpressionsOptions } from '../../src/pipeline/push-impressions.js';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-123456';
const FIXTURES = new URL('../fixtures/impressions/', import.meta.url).pathname;

const bed = ingestionTestBed('push', { apiKey: API_KEY });
const { emulator } = bed;
let dir: string;

beforeAll(() => {
  dir = bed.dir;
  for (const f of ['webhook.json', 'listener-js.ndjson', 'listener-java.ndjson', 'bulk.json', 'grouped.ndjson', 'mixed-bad.ndjson']) copyFileSync(join(FIXTURES, f), join(dir, f));
});

function config(mut?: (c: Config) => void): Config {
  return pushConfig(API_KEY, bed.url, 30, mut);
}

function run(files: string[], over: Partial<PushImpressionsOptions> = {}) {
  return startPush(bed, files, { config: config(), ...over });
}

describe('push-impressions: shapes and formats', () => {
  it('reads all four shapes from arrays and NDJSON, plain and gzip (by magic bytes), and stores each event once', async () => {
    writeFileSync(join(dir, 'webhook-gz.json'), gzipSync(readFileSync(join(dir, 'webhook.json'))));
    writeFileSync(join(dir, 'bulk.ndjson.gz'), gzipSync(readFileSync(join(dir, 'bulk.json'))));
    const r = run(['webhook-gz.json', 'listener-*.ndjson', 'bulk.ndjson.gz', 'grouped.ndjson']);
    const s = await r.done;
    expect(s.byShape).toEqual({ webhook: 3, listener: 3, bulk: 3, grouped: 3 });
    expect(s.impressionsRead).toBe(12);
    expect(s.eventsSent).toBe(12);
    expect(s.deadLetters).toBe(0);
    expect(emulator.count).toBe(12);
    const ev = emulator.events.find((e) => e.user_id === 'user-00001');
    expect(ev).toMatchObject({
      event_type: 'get_treatment',
      time: 1700000000000,
      library: expect.stringMatching(/^amp-fme\/\d+\.\d+\.\d+/),
      event_properties: { flag: 'overridden', treatment: 'on', label: 'default rule', change_number: 1699999999000, environment: 'Production', page: 'cart' },
    });
    expect(emulator.requests.every((q) => q.path === '/batch' && q.status === 200)).toBe(true);
  });

  it('reads stdin (-), gzip or not', async () => {
    const body = gzipSync(readFileSync(join(dir, 'grouped.ndjson')));
    const s = await run(['-'], { stdin: () => Readable.from([body.subarray(0, 5), body.subarray(5)]) }).done;
    expect(s.byShape.grouped).toBe(3);
    expect(emulator.count).toBe(3);
  });

  it('replaying the same dump (and an overlapping one) stores each event once: insert_id dedupe', async () => {
    await run(['webhook.json', 'bulk.json']).done;
    expect(emulator.count).toBe(6);
    const again = await run(['bulk.json', 'webhook.json']).done;
    expect(again.eventsSent).toBe(6);
    expect(emulator.count).toBe(6);
    expect(emulator.duplicates).toBe(6);
  });

  it('uses HTTP V2 with --api httpapi, device_id with --identity, and the configured event type', async () => {
    const s = await run(['webhook.json'], { api: 'httpapi', identity: 'device_id', config: config((c) => (c.pushImpressions.eventType = 'FME Impression')) }).done;
    expect(s.api).toBe('httpapi');
    expect(new Set(emulator.requests.map((q) => q.path))).toEqual(new Set(['/2/httpapi']));
    expect(emulator.events.map((e) => [e.device_id, e.user_id, e.event_type])).toEqual([
      ['user-00001', undefined, 'FME Impression'],
      ['user-00002', undefined, 'FME Impression'],
      ['user-00003', undefined, 'FME Impression'],
    ]);
  });

  it('dead-letters bad records with file, line and reason, and sends the rest', async () => {
    const r = run(['mixed-bad.ndjson']);
    const s = await r.done;
    expect(s.eventsSent).toBe(2);
    expect(emulator.events.map((e) => e.user_id).sort()).toEqual(['user-00050', 'user-00056']);
    const letters = r.letters().map((l) => [l.reason, l.source]);
    expect(letters).toEqual([
      ['invalid_json', { file: 'mixed-bad.ndjson', line: 2 }],
      ['missing_field', { file: 'mixed-bad.ndjson', line: 3 }],
      ['unknown_shape', { file: 'mixed-bad.ndjson', line: 4 }],
      ['placeholder_id', { file: 'mixed-bad.ndjson', line: 5 }],
      ['id_too_short', { file: 'mixed-bad.ndjson', line: 6 }],
      ['invalid_field', { file: 'mixed-bad.ndjson', line: 7 }],
      ['missing_field', { file: 'mixed-bad.ndjson', line: 8, item: 1 }],
    ]);
    expect(s.deadLettersByReason).toEqual({ invalid_json: 1, missing_field: 2, unknown_shape: 1, placeholder_id: 1, id_too_short: 1, invalid_field: 1 });
    expect(readFileSync(r.deadLetters.path, 'utf8')).not.toContain(API_KEY);
  });

  it('a file that cannot be read on is a dead letter naming it; the run goes on and sends what every file held', async () => {
    const imp = (key: string): string => JSON.stringify({ key, split: 'f', treatment: 'on', time: 1700000000000 });
    writeFileSync(join(dir, 'ok-1.ndjson'), `${imp('user-00081')}\n`);
    writeFileSync(join(dir, 'ok-2.zip'), Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(40)]));
    writeFileSync(join(dir, 'ok-3.ndjson'), Buffer.from(`\ufeff${imp('user-00083')}\n`, 'utf16le'));
    // A record past the size limit after a good one (a bracket never closed, no newline after it): that one is sent.
    writeFileSync(join(dir, 'ok-4.ndjson'), `${imp('user-00084')}\n{"key":"user-00085","n":[${'1,'.repeat(400)}`);
    writeFileSync(join(dir, 'ok-5.ndjson'), `${imp('user-00087')}\n`);
    const r = run(['ok-*'], { maxRecordBytes: 512 });
    const s = await r.done;
    expect(emulator.events.map((e) => e.user_id).sort()).toEqual(['user-00081', 'user-00084', 'user-00087']);
    expect(s.eventsSent).toBe(3);
    expect(r.letters().map((l) => [l.reason, l.source, l.detail])).toEqual([
      ['not_a_dump', { file: 'ok-2.zip' }, 'ok-2.zip: it is a zip archive: unzip it and give the files inside; the rest of this file was not read'],
      ['not_a_dump', { file: 'ok-3.ndjson' }, expect.stringMatching(/^ok-3\.ndjson: it is UTF-16 text: convert it to UTF-8 first \(iconv/)],
      ['record_too_large', { file: 'ok-4.ndjson' }, expect.stringMatching(/^ok-4\.ndjson: a record starting at line 2 is larger than .*; the rest of this file was not read$/)],
    ]);
  });

  it('a dump compressed with something other than gzip is one dead letter saying how to stream it in, not lines of binary', async () => {
    const imp = (key: string): string => JSON.stringify({ key, split: 'f', treatment: 'on', time: 1700000000000 });
    // Each format's magic bytes, then bytes that are no JSON (a newline among them, as real compressed data has).
    const body = Buffer.from([0x00, 0x9c, 0x0a, 0xff, 0x7b, 0x0a, 0x22]);
    const formats: [string, number[]][] = [
      ['c-1.json.bz2', [0x42, 0x5a, 0x68, 0x39, 0x31, 0x41]],
      ['c-2.json.xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
      ['c-3.json.zst', [0x28, 0xb5, 0x2f, 0xfd]],
      ['c-4.json.lz4', [0x04, 0x22, 0x4d, 0x18]],
      ['c-5.7z', [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]],
    ];
    for (const [name, magic] of formats) writeFileSync(join(dir, name), Buffer.concat([Buffer.from(magic), body]));
    writeFileSync(join(dir, 'c-6.ndjson'), `${imp('user-00091')}\n`);
    const r = run(['c-*']);
    const s = await r.done;
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-00091']);
    expect(s.deadLettersByReason).toEqual({ not_a_dump: 5 });
    const stream = (what: string, tool: string): string =>
      `it is ${what}-compressed, and amp-fme reads gzip only: stream it in (${tool} -dc <file> | amp-fme push-impressions ... -) or decompress it first; the rest of this file was not read`;
    expect(r.letters().map((l) => l.detail)).toEqual([
      `c-1.json.bz2: ${stream('bzip2', 'bzip2')}`,
      `c-2.json.xz: ${stream('xz', 'xz')}`,
      `c-3.json.zst: ${stream('zstd', 'zstd')}`,
      `c-4.json.lz4: ${stream('lz4', 'lz4')}`,
      'c-5.7z: it is a 7z archive: extract it (7z x <file>) and give the files inside; the rest of this file was not read',
    ]);
  });

  it('refuses an --output that is one of its inputs, which writing would empty', async () => {
    const text = `${JSON.stringify({ key: 'user-00090', split: 'f', treatment: 'on', time: 1700000000000 })}\n`;
    writeFileSync(join(dir, 'self.ndjson'), text);
    const r = run(['self.ndjson'], { output: join(dir, 'self.ndjson') });
    await expect(r.done).rejects.toThrow('--output ' + join(dir, 'self.ndjson') + ' is the input self.ndjson: writing it would empty it. Give another file for --output.');
    expect(readFileSync(join(dir, 'self.ndjson'), 'utf8')).toBe(text);
  });

  it('array dumps point at the element index', async () => {
    writeFileSync(join(dir, 'arr-bad.json'), '[\n{"key":"user-00060","split":"f","treatment":"on","time":1700000000000},\n{"key":"user-00061","split":"f","time":1700000000000}\n]');
    const r = run(['arr-bad.json']);
    await r.done;
    expect(r.letters().map((l) => l.source)).toEqual([{ file: 'arr-bad.json', line: 3, index: 1 }]);
  });

  it('short ids pass with amplitude.minIdLength, sent as options.min_id_length', async () => {
    writeFileSync(join(dir, 'short.ndjson'), '{"key":"abc","split":"f","treatment":"on","time":1700000000000}\n{"key":"ab","split":"f","treatment":"on","time":1700000000000}\n');
    const r = run(['short.ndjson'], { config: config((c) => (c.amplitude.minIdLength = 3)) });
    const s = await r.done;
    expect(s.eventsSent).toBe(1);
    expect(emulator.requests[0]?.minIdLength).toBe(3);
    expect(emulator.events.map((e) => e.user_id)).toEqual(['abc']);
    expect(r.letters().map((l) => l.reason)).toEqual(['id_too_short']);
  });

  it('--coalesce first sends only the first impression per key, flag, treatment and change number', async () => {
    const lines = [
      { key: 'user-00070', split: 'f', treatment: 'on', time: 1700000000000, splitVersionNumber: 1 },
      { key: 'user-00070', split: 'f', treatment: 'on', time: 1700000001000, splitVersionNumber: 1 },
      { key: 'user-00070', split: 'f', treatment: 'off', time: 1700000002000, splitVersionNumber: 1 },
      { key: 'user-00070', split: 'f', treatment: 'on', time: 1700000003000, splitVersionNumber: 2 },
    ];
    writeFileSync(join(dir, 'repeats.ndjson'), lines.map((l) => JSON.stringify(l)).join('\n'));
    writeFileSync(join(dir, 'repeats2.ndjson'), JSON.stringify(lines[0]));
    const s = await run(['repeats.ndjson', 'repeats2.ndjson'], { coalesce: 'first' }).done;
    expect(s.coalesced).toBe(2);
    expect(emulator.events.map((e) => [e.time, e.event_properties?.['treatment']])).toEqual([
      [1700000000000, 'on'],
      [1700000002000, 'off'],
      [1700000003000, 'on'],
    ]);
  });

  it('replays impressions of any age without a duplicate or a warning: the 7 days run from when Amplitude received an insert_id', async () => {
    // The fixtures are from November 2023; the emulator, like Amplitude, drops an insert_id it received in the last 7 days.
    const first = run(['webhook.json']);
    await first.done;
    const again = run(['webhook.json']);
    expect((await again.done).eventsSent).toBe(3);
    expect(emulator.count).toBe(3);
    expect(emulator.duplicates).toBe(3);
    expect([...first.logger.lines, ...again.logger.lines].filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('--dry-run sends nothing; --output writes the events as NDJSON without the API key', async () => {
    const d = await run(['webhook.json', 'bulk.json'], { dryRun: true }).done;
    expect(d.mapped).toBe(6);
    expect(emulator.requests).toHaveLength(0);
    const outFile = join(dir, 'out.ndjson');
    const o = await run(['webhook.json', 'bulk.json'], { output: outFile }).done;
    expect(o.written).toBe(6);
    expect(emulator.requests).toHaveLength(0);
    const text = readFileSync(outFile, 'utf8');
    const events = text.trim().split('\n').map((l) => JSON.parse(l) as { user_id: string; insert_id: string });
    expect(events.map((e) => e.user_id)).toContain('user-00031');
    expect(new Set(events.map((e) => e.insert_id)).size).toBe(6);
    expect(text).not.toContain(API_KEY);
  });

  it('keeps requests within the limits: batch size, HTTP V2 events and bytes', async () => {
    const big = 'x'.repeat(600);
    const lines: string[] = [];
    // 1000 users of 5 events: HTTP V2 requests fill up to their byte limit (more than 30 events of one id would be paced).
    for (let i = 0; i < 5000; i++) {
      lines.push(JSON.stringify({ key: `user-${i % 1000}-abc`, split: 'f', treatment: 'on', time: 1700000000000 + i, properties: JSON.stringify({ pad: big }) }));
    }
    writeFileSync(join(dir, 'many.ndjson'), lines.join('\n'));
    const s = await run(['many.ndjson'], { api: 'httpapi', config: config((c) => (c.pushImpressions.batchSize = 5000)) }).done;
    expect(s.eventsSent).toBe(5000);
    expect(emulator.count).toBe(5000);
    expect(emulator.requests.every((q) => q.status === 200 && q.bytes < 1_000_000 && q.items < 2000)).toBe(true);
    expect(Math.max(...emulator.requests.map((q) => q.bytes))).toBeGreaterThan(800_000);
  });

  it("one user's events keep their order across requests, whatever the concurrency", async () => {
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) lines.push(JSON.stringify({ key: `user-${i % 7}-ordered`, split: 'f', treatment: 'on', time: 1700000000000 + i }));
    writeFileSync(join(dir, 'ordered.ndjson'), lines.join('\n'));
    await run(['ordered.ndjson'], { config: config((c) => ((c.pushImpressions.batchSize = 50), (c.pushImpressions.concurrency = 4))) }).done;
    expect(emulator.count).toBe(3000);
    const byUser = new Map<string, number[]>();
    for (const e of emulator.events) byUser.set(e.user_id as string, [...(byUser.get(e.user_id as string) ?? []), e.time as number]);
    for (const times of byUser.values()) expect(times).toEqual([...times].sort((a, b) => a - b));
  });
});

describe('push-impressions: identify mode', () => {
  it('folds the latest treatment per user and flag, many users per form-encoded request', async () => {
    const lines = [
      { key: 'user-00080', split: 'checkout', treatment: 'on', time: 1700000002000 },
      { key: 'user-00080', split: 'checkout', treatment: 'off', time: 1700000001000 },
      { key: 'user-00080', split: 'search', treatment: 'v2', time: 1700000001000 },
      { key: 'user-00081', split: 'checkout', treatment: 'off', time: 1700000001000 },
      { key: 'null', split: 'checkout', treatment: 'off', time: 1700000001000 },
    ];
    writeFileSync(join(dir, 'fold.ndjson'), lines.map((l) => JSON.stringify(l)).join('\n'));
    writeFileSync(join(dir, 'fold2.ndjson'), JSON.stringify({ key: 'user-00081', split: 'checkout', treatment: 'on', time: 1700000009000 }));
    const r = run(['fold.ndjson', 'fold2.ndjson'], { mode: 'identify', config: config((c) => ((c.pushImpressions.userPropertyPrefix = 'fme.'), (c.pushImpressions.concurrency = 1))) });
    const s = await r.done;
    expect(s.usersFolded).toBe(2);
    expect(s.identificationsSent).toBe(2);
    expect(emulator.requests.map((q) => [q.path, q.items])).toEqual([['/identify', 2]]);
    expect(emulator.userProperties.get('user-00080')).toEqual({ 'fme.checkout': 'on', 'fme.search': 'v2' });
    expect(emulator.userProperties.get('user-00081')).toEqual({ 'fme.checkout': 'on' });
    expect(r.letters().map((l) => l.reason)).toEqual(['placeholder_id']);
  });

  it('keeps the latest treatment even with coalesce first, which leaves identify mode alone', async () => {
    const lines = [
      { key: 'user-00090', split: 'checkout', treatment: 'on', time: 1700000001000 },
      { key: 'user-00090', split: 'checkout', treatment: 'off', time: 1700000002000 },
      { key: 'user-00090', split: 'checkout', treatment: 'on', time: 1700000003000 },
    ];
    writeFileSync(join(dir, 'flip.ndjson'), lines.map((l) => JSON.stringify(l)).join('\n'));
    const s = await run(['flip.ndjson'], { mode: 'identify', coalesce: 'first' }).done;
    expect(s.coalesced).toBe(0);
    expect(emulator.userProperties.get('user-00090')).toEqual({ checkout: 'on' });
  });

  it('splits identifications into requests within the limits', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 2500; i++) lines.push(JSON.stringify({ key: `user-${i}-many`, split: 'flag_with_a_long_name', treatment: 'on', time: 1700000000000 }));
    writeFileSync(join(dir, 'fold-many.ndjson'), lines.join('\n'));
    const s = await run(['fold-many.ndjson'], { mode: 'identify', config: config((c) => (c.pushImpressions.batchSize = 5000)) }).done;
    expect(s.identificationsSent).toBe(2500);
    expect(emulator.identifications).toBe(2500);
    expect(emulator.requests.every((q) => q.status === 200 && q.items <= 1000 && q.bytes < 1_000_000)).toBe(true);
  });
});
