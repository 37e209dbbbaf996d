import { describe, expect, it } from 'vitest';
import { BodyBuilder, joinedBody, JSON_ARRAY, type BodyFrame } from '../../src/http/body.js';

const items = [
  JSON.stringify({ event_type: 'get_treatment', user_id: 'user-1', event_properties: { title: 'Vidéo lue' } }),
  JSON.stringify({ event_type: 'get_treatment', user_id: 'ユーザー', event_properties: { emoji: '🎉' } }),
  JSON.stringify({ event_type: 'plain', user_id: 'u' }),
];
const frame: BodyFrame = { prefix: '{"api_key":"k","events":[', separator: ',', suffix: ']}' };
const plain = (f: BodyFrame, list: string[]): string => `${f.prefix}${list.join(f.separator)}${f.suffix}`;

describe('joinedBody', () => {
  it('writes prefix, items and suffix as UTF-8, with or without the counted size', () => {
    const text = plain(frame, items);
    const size = Buffer.byteLength(text);
    expect(joinedBody(frame, items, size).toString('utf8')).toBe(text);
    expect(joinedBody(frame, items, size).length).toBe(size);
    expect(joinedBody(frame, items).toString('utf8')).toBe(text);
    expect(joinedBody(JSON_ARRAY, []).toString('utf8')).toBe('[]');
    expect(joinedBody({ prefix: 'a=%5B', separator: '%2C', suffix: '%5D' }, ['x', 'y']).toString('utf8')).toBe('a=%5Bx%2Cy%5D');
  });

  it('never cuts or pads the body when the counted size is wrong, whatever the characters at the edge', () => {
    const edgy = ['é', 'ユユ', '🎉🎉', 'abc', '🎉'];
    for (const list of [items, edgy, edgy.slice().reverse()]) {
      const text = plain(frame, list);
      const size = Buffer.byteLength(text);
      for (let delta = -12; delta <= 12; delta++) {
        if (size + delta < 0) continue;
        expect(joinedBody(frame, list, size + delta).toString('utf8')).toBe(text);
      }
    }
  });
});

describe('BodyBuilder', () => {
  it('builds the same body as joinedBody while items arrive, growing as needed, and says where each item is', () => {
    const b = new BodyBuilder(frame, 8); // far too small at first: must grow, keeping what was written
    const encoded = items.map((t) => Buffer.from(`..${t}..`));
    const starts = encoded.map((e) => b.addBytes(e, 2, e.length - 2));
    const body = b.finish();
    expect(body.equals(joinedBody(frame, items))).toBe(true);
    expect(JSON.parse(body.toString('utf8'))).toEqual({ api_key: 'k', events: items.map((t) => JSON.parse(t)) });
    items.forEach((t, i) => expect(body.toString('utf8', starts[i] as number, (starts[i] as number) + Buffer.byteLength(t))).toBe(t));
  });

  it('an empty builder finishes as the bare envelope', () => {
    expect(new BodyBuilder(JSON_ARRAY).finish().toString('utf8')).toBe('[]');
  });
});
