import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { countBody, createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { startServer } from '../../src/sandbox/server.js';

/** The body cut into chunks at the given offsets. */
async function* chunks(body: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let from = 0;
  for (const at of [...cuts, body.length]) {
    yield body.subarray(from, at);
    from = at;
  }
}

const event = (i: number): string => JSON.stringify({ event_type: 'e', user_id: `user-${i}`, insert_id: `id-${i}`, event_properties: { note: 'insert_id', quoted: '"insert_id":', my_insert_id: 1 } });
const body = Buffer.from(`{"api_key":"k","events":[${[0, 1, 2].map(event).join(',')}]}`);

describe('the ingestion emulator with validate: false', () => {
  it('counts each "insert_id": key once, wherever chunk boundaries fall (keys or values that merely hold it do not count)', async () => {
    // Every single cut, every pair of cuts a few bytes apart (a key split across three chunks), and byte by byte.
    const splits: number[][] = [[]];
    for (let a = 1; a < body.length; a++) {
      splits.push([a]);
      for (const gap of [1, 3, 7, 11]) if (a + gap < body.length) splits.push([a, a + gap]);
    }
    splits.push(Array.from({ length: body.length - 1 }, (_, i) => i + 1));
    for (const cuts of splits) {
      const counted = await countBody(chunks(body, cuts), 1 << 20);
      expect({ cuts, events: counted.events }).toEqual({ cuts, events: 3 });
      expect(counted.bytes).toBe(body.length);
      expect(counted.head.equals(body)).toBe(true);
    }
  });

  it('answers as Amplitude does: events ingested, a wrong key, a body over the limit', async () => {
    const emu = createAmplitudeIngestionEmulator({ apiKey: 'k', validate: false });
    const server = await startServer([emu.route]);
    const post = (path: string, payload: Buffer): Promise<{ status: number; body: Record<string, unknown> }> =>
      new Promise((resolve, reject) => {
        const req = request(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
        });
        req.on('error', reject);
        // Written in pieces (small ones for small bodies), so that the server sees more than one chunk.
        const piece = payload.length > 64 * 1024 ? 64 * 1024 : 5;
        for (let i = 0; i < payload.length; i += piece) req.write(payload.subarray(i, i + piece));
        req.end();
      });
    try {
      expect(await post('/batch', body)).toMatchObject({ status: 200, body: { code: 200, events_ingested: 3, payload_size_bytes: body.length } });
      expect(emu.count).toBe(3);
      const wrongKey = Buffer.from(body.toString().replace('"api_key":"k"', '"api_key":"other"'));
      expect(await post('/batch', wrongKey)).toMatchObject({ status: 400, body: { error: 'Invalid API key' } });
      const big = Buffer.from(`{"api_key":"k","events":[${event(9)}],"pad":"${'x'.repeat(1_000_000)}"}`);
      expect(await post('/2/httpapi', big)).toMatchObject({ status: 413 });
      expect(emu.count).toBe(3);
    } finally {
      await server.close();
    }
  });
});
