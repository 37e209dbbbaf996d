import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/defaults.js';
import { addMapperStats, emptyMapperStats, type MapperStats } from '../../src/mapping/amplitude-to-fme.js';
import { EVENT_FIELDS, type DecodedRows } from '../../src/mapping/export-rows.js';
import { createRowsPool, type RowsPool } from '../../src/pipeline/export-rows-pool.js';
import { RecordBatchWriter, type RecordBatch } from '../../src/workers/record-batch.js';
import { ScratchBuffers } from '../../src/workers/scratch-buffers.js';

// The compiled worker (`npm test` builds first): worker threads run JavaScript, not the TypeScript sources.
const WORKER = new URL('../../dist/pipeline/export-rows-worker.js', import.meta.url);

const config = {
  ...defaultConfig().exportEvents,
  identities: [
    { trafficType: 'user', from: 'user_id' },
    { trafficType: 'anonymous', from: 'device_id' },
  ],
  excludeEventTypes: ['skip me'],
  valueFrom: 'event_properties.revenue',
};

/** Export lines of every kind: events for one or two identities, blanks, broken JSON, non-objects, skipped and unmappable rows. */
function batches(scratch: ScratchBuffers): RecordBatch[] {
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const row = { event_type: i % 50 === 0 ? 'skip me' : `Viewed page ${i % 7}!`, user_id: i % 3 === 0 ? null : `user-${i}`, device_id: `device-${i}`, event_time: '2024-03-01 10:00:00.123', event_properties: { revenue: i % 4 === 0 ? 'x' : i, page: `/p/${i}` } };
    if (i % 97 === 0) lines.push('{"event_type":');
    else if (i % 89 === 0) lines.push('[1,2]');
    else if (i % 83 === 0) lines.push('');
    else if (i % 79 === 0) lines.push(JSON.stringify({ ...row, event_time: 'never', client_event_time: null, server_upload_time: null }));
    else lines.push(JSON.stringify(row));
  }
  const text = Buffer.from(`${lines.join('\n')}\n`);
  const writer = new RecordBatchWriter('entry-1.json.gz', scratch);
  const out: RecordBatch[] = [];
  let start = 0;
  lines.forEach((line, i) => {
    const end = start + Buffer.byteLength(line);
    writer.record(text, start, end, i + 1, undefined);
    start = end + 1;
    if (i % 150 === 149) out.push(writer.take() as RecordBatch);
  });
  out.push(writer.take() as RecordBatch);
  return out;
}

/** A decoded batch as plain values (its events as text). */
function view(d: DecodedRows): unknown {
  const events: unknown[] = [];
  for (let k = 0; k < d.eventCount; k++) {
    const [start, size, identity] = Array.from(d.items.subarray(k * EVENT_FIELDS, (k + 1) * EVENT_FIELDS)) as [number, number, number];
    events.push({ identity, json: Buffer.from(d.bytes.buffer, d.bytes.byteOffset + start, size).toString('utf8') });
  }
  return { entry: d.entry, count: d.count, lines: Array.from(d.lines), rejects: d.rejects, events };
}

let pool: RowsPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('export rows pool', () => {
  it('maps rows on worker threads exactly as the calling thread does, in order, with the same counts', async () => {
    const decodeAll = async (p: RowsPool, scratch: ScratchBuffers): Promise<{ views: unknown[]; stats: MapperStats }> => {
      const stats = emptyMapperStats();
      const pending = batches(scratch).map((b) => p.decode(b));
      const views: unknown[] = [];
      for (const r of pending) {
        const d = await r;
        views.push(view(d));
        addMapperStats(stats, d.stats);
        p.recycle(d);
      }
      return { views, stats };
    };
    const inlineScratch = new ScratchBuffers(8);
    const inline = createRowsPool(config, 0, inlineScratch);
    expect(inline.threads).toBe(0);
    const expected = await decodeAll(inline, inlineScratch);

    const scratch = new ScratchBuffers(8);
    pool = createRowsPool(config, 2, scratch, WORKER);
    expect(pool.threads).toBe(2);
    // Until then the calling thread would map every batch itself.
    await pool.started();
    const got = await decodeAll(pool, scratch);
    expect(got.views).toEqual(expected.views);
    expect(got.stats).toEqual(expected.stats);

    // The counts add up over batches decoded in different places.
    expect(got.stats.skipped.excluded_event_type).toBeGreaterThan(0);
    expect(got.stats.invalid.no_timestamp).toBeGreaterThan(0);
    expect(got.stats.value.not_numeric).toBeGreaterThan(0);
    expect(got.stats.identities.missing_user_id).toBeGreaterThan(0);
    expect(got.stats.renamed.get('Viewed page 1!')).toBe('amp.Viewed_page_1');
  });
});
