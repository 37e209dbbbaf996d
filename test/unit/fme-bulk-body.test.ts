import { describe, expect, it } from 'vitest';
import { buildBulkBody } from '../../src/fme/events-client.js';
import { Batcher } from '../../src/pipeline/batcher.js';

const jsons = [
  JSON.stringify({ eventTypeId: 'amp.Vid_o_lue', key: 'user-1', properties: { title: 'Vidéo lue' } }),
  JSON.stringify({ eventTypeId: 'amp.order', key: 'ユーザー', properties: { emoji: '🎉', text: '注文完了' } }),
  JSON.stringify({ eventTypeId: 'amp.plain', key: 'u', timestamp: 1 }),
];

describe('buildBulkBody', () => {
  it('writes the same JSON array with or without the size the Batcher counted', () => {
    const batcher = new Batcher(100, 1_000_000);
    jsons.forEach((j, i) => batcher.add(j, Buffer.byteLength(j), i));
    const batch = batcher.flush();
    expect(batch).toBeDefined();
    const sized = buildBulkBody(batch?.jsons ?? [], batch?.bytes);
    expect(sized.length).toBe(batch?.bytes);
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
