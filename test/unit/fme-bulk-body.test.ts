import { describe, expect, it } from 'vitest';
import { buildBulkBody } from '../../src/fme/events-client.js';
import { Batcher, eventJson, type Batch } from '../../src/pipeline/batcher.js';

const jsons = [
  JSON.stringify({ eventTypeId: 'amp.Vid_o_lue', key: 'user-1', properties: { title: 'Vidéo lue' } }),
  JSON.stringify({ eventTypeId: 'amp.order', key: 'ユーザー', properties: { emoji: '🎉', text: '注文完了' } }),
  JSON.stringify({ eventTypeId: 'amp.plain', key: 'u', timestamp: 1 }),
];

describe('buildBulkBody', () => {
  it('writes the same JSON array with or without a size', () => {
    const sized = buildBulkBody(jsons, Buffer.byteLength(`[${jsons.join(',')}]`));
    expect(sized.toString('utf8')).toBe(`[${jsons.join(',')}]`);
    expect(JSON.parse(sized.toString('utf8'))).toEqual(jsons.map((j) => JSON.parse(j)));
    expect(buildBulkBody(jsons).equals(sized)).toBe(true);
  });

  it('never sends a cut body when the given size is wrong', () => {
    const right = `[${jsons.join(',')}]`;
    expect(buildBulkBody(jsons, Buffer.byteLength(right) - 5).toString('utf8')).toBe(right);
    expect(buildBulkBody(jsons, Buffer.byteLength(right) + 5).toString('utf8')).toBe(right);
  });

  it('writes an empty array', () => {
    expect(buildBulkBody([], 2).toString('utf8')).toBe('[]');
  });
});

describe('Batcher', () => {
  const encoded = jsons.map((j) => Buffer.from(j));
  const run = (b: Batcher): Batch[] => {
    const out: Batch[] = [];
    encoded.forEach((e, i) => {
      const full = b.add(e, 0, e.length, i * 10);
      if (full) out.push(full);
    });
    const rest = b.flush();
    if (rest) out.push(rest);
    return out;
  };

  it('writes each batch as the body buildBulkBody would write, and keeps every event findable', () => {
    const [batch, more] = run(new Batcher(100, 1_000_000));
    expect(more).toBeUndefined();
    expect(batch?.body.equals(buildBulkBody(jsons))).toBe(true);
    expect(batch?.positions).toEqual([0, 10, 20]);
    expect(jsons.map((_, i) => eventJson(batch as Batch, i))).toEqual(jsons);
  });

  it('cuts batches by count and by bytes, the same way every time', () => {
    expect(run(new Batcher(2, 1_000_000)).map((b) => b.positions)).toEqual([[0, 10], [20]]);
    const twoFit = 2 + (encoded[0] as Buffer).length + 1 + (encoded[1] as Buffer).length;
    expect(run(new Batcher(100, twoFit)).map((b) => b.positions)).toEqual([[0, 10], [20]]);
    expect(run(new Batcher(100, twoFit - 1)).map((b) => b.positions)).toEqual([[0], [10, 20]]);
    // An event over the byte limit on its own still goes, alone.
    expect(run(new Batcher(100, 10)).map((b) => b.count)).toEqual([1, 1, 1]);
  });
});
