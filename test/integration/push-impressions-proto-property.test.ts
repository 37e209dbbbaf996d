import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-proto-1';
const bed = ingestionTestBed('push-proto', { apiKey: API_KEY });
const { emulator } = bed;

describe('impression properties with names JavaScript objects treat specially', () => {
  it('forwards a property named __proto__ like any other, instead of dropping it', async () => {
    // Webhook properties are JSON text, written here by hand: an object literal's __proto__ would set its prototype.
    const lines = [
      { key: 'user-p0001', split: 'f', treatment: 'on', time: 1700000000000, properties: '{"__proto__":"x","page":"cart"}' },
      { key: 'user-p0002', split: 'f', treatment: 'on', time: 1700000000001, properties: '{"__proto__":{"plan":"pro"},"page":"home"}' },
    ].map((l) => JSON.stringify(l));
    writeFileSync(join(bed.dir, 'proto.ndjson'), `${lines.join('\n')}\n`);
    const r = startPush(bed, ['proto.ndjson'], { config: pushConfig(API_KEY, bed.url, 20) });
    expect((await r.done).eventsSent).toBe(2);
    const props = Object.fromEntries(emulator.events.map((e) => [e.user_id, JSON.stringify(e.event_properties)]));
    expect(props).toEqual({
      'user-p0001': '{"flag":"f","treatment":"on","__proto__":"x","page":"cart"}',
      'user-p0002': '{"flag":"f","treatment":"on","__proto__":{"plan":"pro"},"page":"home"}',
    });
  });
});
