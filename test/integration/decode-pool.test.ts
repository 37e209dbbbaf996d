import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AmpFmeError } from '../../src/errors.js';
import { defaultConfig } from '../../src/config/defaults.js';
import { ITEM_FIELDS, type DecodedBatch, type DecodeSettings } from '../../src/impressions/decode.js';
import { createDecodePool, type DecodePool } from '../../src/impressions/decode-pool.js';
import { RecordBatchWriter, type RecordBatch } from '../../src/workers/record-batch.js';
import { ScratchBuffers } from '../../src/workers/scratch-buffers.js';
import { RecordSplitter } from '../../src/impressions/splitter.js';
import { tempDir } from '../helpers/temp-dir.js';

// The compiled worker (`npm test` builds first): worker threads run JavaScript, not the TypeScript sources.
const WORKER = new URL('../../dist/impressions/decode-worker.js', import.meta.url);

const settings: DecodeSettings = {
  mode: 'event',
  mapping: { eventType: 'get_treatment', identity: 'user_id', propertyNames: defaultConfig().pushImpressions.propertyNames, library: 'amp-fme/test' },
  minIdLength: undefined,
  coalesce: true,
  lanes: 4,
};

/** A dump with every shape, broken lines, placeholder keys and old impressions, cut into many small batches. */
function batches(scratch: ScratchBuffers): RecordBatch[] {
  const lines: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const time = i % 500 === 0 ? 1_500_000_000_000 : 1_700_000_000_000 + i;
    if (i % 97 === 0) lines.push('{"key":"user-1","split":'); // cut off
    else if (i % 89 === 0) lines.push(JSON.stringify({ key: 'null', split: 'f', treatment: 'on', time }));
    else if (i % 3 === 0) lines.push(JSON.stringify({ impression: { keyName: `user-${i}`, feature: 'f2', treatment: 'off', time, label: 'l "q"' } }));
    else if (i % 5 === 0) lines.push(JSON.stringify({ f: 'f3', i: [{ k: `user-${i}`, t: 'on', m: time }, { k: `user-${i}-b`, t: 'ü', m: time, properties: '{"a":1}' }] }));
    else lines.push(JSON.stringify({ key: `user-${i % 700}`, split: 'f1', treatment: 'on', time, splitVersionNumber: 7, environmentName: 'Production' }));
  }
  const text = Buffer.from(`${lines.join('\n')}\n`);
  const splitter = new RecordSplitter();
  const writer = new RecordBatchWriter('dump.ndjson', scratch);
  const out: RecordBatch[] = [];
  for (let at = 0; at < text.length; at += 16 * 1024) {
    splitter.push(text.subarray(at, at + 16 * 1024), writer);
    const b = writer.take();
    if (b) out.push(b);
  }
  splitter.end(writer);
  const last = writer.take();
  if (last) out.push(last);
  return out;
}

/** What a decoded batch says, in plain values (its events as text). */
function view(d: DecodedBatch): unknown {
  const events: string[] = [];
  const fields: number[][] = [];
  for (let i = 0; i < d.count; i++) {
    const f = Array.from(d.items.subarray(i * ITEM_FIELDS, (i + 1) * ITEM_FIELDS));
    events.push(Buffer.from(d.bytes.buffer, d.bytes.byteOffset + (f[0] as number), f[1]).toString('utf8'));
    fields.push(f.slice(1));
  }
  return { ...d, bytes: undefined, items: undefined, spent: undefined, events, fields };
}

let pool: DecodePool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('decode pool', () => {
  it('decodes on worker threads exactly what the calling thread decodes, in the order the batches were given', async () => {
    const inline = createDecodePool(settings, 0, new ScratchBuffers(4));
    expect(inline.threads).toBe(0);
    const expected: unknown[] = [];
    for (const b of batches(new ScratchBuffers(4))) expected.push(view(await inline.decode(b)));
    expect(expected.length).toBeGreaterThan(10);

    const scratch = new ScratchBuffers(8);
    pool = createDecodePool(settings, 3, scratch, WORKER);
    expect(pool.threads).toBe(3);
    // Until then the calling thread would decode every batch itself.
    await pool.started();
    // All in flight at once: three workers finish in any order, the promises keep the input order.
    const pending = batches(scratch).map((b) => (pool as DecodePool).decode(b));
    const got: unknown[] = [];
    for (const p of pending) {
      const d = await p;
      got.push(view(d));
      pool.recycle(d);
    }
    expect(got).toEqual(expected);
    const all = got as { impressions: number; rejects: { reason: string }[] }[];
    expect(all.reduce((n, d) => n + d.impressions, 0)).toBeGreaterThan(3000);
    expect(new Set(all.flatMap((d) => d.rejects.map((r) => r.reason)))).toEqual(new Set(['invalid_json', 'placeholder_id']));
  });

  it('fails the run with a known error, naming the setting, when a worker dies', async () => {
    const dir = tempDir('dying-worker');
    const script = join(dir, 'dies.mjs');
    // It starts as a worker does (says it is ready), then dies on its first batch.
    writeFileSync(script, "import { parentPort } from 'node:worker_threads';\nparentPort.postMessage({ ready: true });\nparentPort.on('message', () => process.exit(7));\n");
    const scratch = new ScratchBuffers(4);
    pool = createDecodePool(settings, 1, scratch, pathToFileURL(script));
    const [first, second] = batches(scratch);
    // Until the worker is ready, the calling thread decodes.
    await pool.started();
    const err = await pool.decode(first as RecordBatch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmpFmeError);
    expect((err as AmpFmeError).code).toBe('WORKER_FAILED');
    expect((err as Error).message).toMatch(/decoding impressions stopped \(exit code 7\).*pushImpressions\.workers to 0/);
    // Every later batch fails the same way rather than waiting for a worker that is gone.
    await expect(pool.decode(second as RecordBatch)).rejects.toThrow(/WORKER_FAILED|exit code 7/);
  });

  it('fails the run the same way when a worker dies while starting', async () => {
    const script = join(tempDir('dying-worker'), 'dies-at-start.mjs');
    writeFileSync(script, 'process.exit(9);\n');
    const scratch = new ScratchBuffers(4);
    pool = createDecodePool(settings, 1, scratch, pathToFileURL(script));
    await pool.started();
    const [first] = batches(scratch);
    await expect(pool.decode(first as RecordBatch)).rejects.toThrow(/decoding impressions stopped \(exit code 9\)/);
  });

  it('turns a failure inside a worker into a rejected decode that names it', async () => {
    const scratch = new ScratchBuffers(4);
    const broken = { ...settings, mapping: undefined } as unknown as DecodeSettings;
    pool = createDecodePool(broken, 1, scratch, WORKER);
    const [first] = batches(scratch);
    await pool.started();
    await expect(pool.decode(first as RecordBatch)).rejects.toThrow(/decoding impressions failed/);
  });
});
