import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

/**
 * HTTP V2's pace of ~30 events/s per id, on the emulator's real-time clock (specs/amplitude.md): an id's held events
 * never go again less than a second after the id's last request, however the lane's requests and their answers fall.
 * (push-impressions-rate-limits.test.ts runs the emulator's clock faster; these cases depend on when answers come.)
 */
const API_KEY = 'amp-test-api-key-pacing-1';
const bed = ingestionTestBed('push-pacing', { apiKey: API_KEY, rateLimits: true });
const { emulator } = bed;

/** Impressions of each `[user, count]` in order; each user's times count up across the whole dump. */
function dump(name: string, users: [string, number][]): string {
  const lines: string[] = [];
  const seen = new Map<string, number>();
  for (const [u, per] of users) {
    for (let i = 0; i < per; i++) {
      const k = seen.get(u) ?? 0;
      seen.set(u, k + 1);
      lines.push(JSON.stringify({ key: u, split: 'f', treatment: 'on', time: 1700000000000 + k }));
    }
  }
  writeFileSync(join(bed.dir, name), `${lines.join('\n')}\n`);
  return name;
}

const others = (n: number, prefix: string): [string, number][] => Array.from({ length: n }, (_, i) => [`user-${prefix}${String(i).padStart(4, '0')}`, 1]);

function run(file: string, batchSize: number) {
  const config: Config = pushConfig(API_KEY, bed.url, 1000, (c) => {
    c.pushImpressions.concurrency = 1;
    c.pushImpressions.batchSize = batchSize;
  });
  return startPush(bed, [file], { config, api: 'httpapi' });
}

/** Answered as usual (stored), optionally after a delay. */
const ok = (delayMs = 0) => ({ status: 200, afterProcessing: true, delayMs });

describe('HTTP V2 pacing, in real time', () => {
  for (const held of [30, 40]) {
    it(`an id's events held back while its held group waits for its lane go a pace after that group is sent (${held} held)`, async () => {
      // 1: 30 of the busy id go, the rest are held (1 s). 2: others, answered after 1.1 s: the group fires meanwhile,
      // its resend queued behind 3. 3: the busy id's 10 new events are held back. 4: the resend: a 503 after 0.2 s,
      // then again. The 10 must wait a pace after the resend, not after request 3.
      emulator.faults.push(ok()).push(ok(1100)).push(ok()).push({ status: 503, delayMs: 200 });
      const file = dump(`held-${held}.ndjson`, [['user-busy1', held + 30], ...others(held + 30, 'a'), ['user-busy1', 10], ...others(held + 20, 'b')]);
      const r = run(file, held + 30);
      const s = await r.done;
      expect(s.eventsSent).toBe(3 * held + 90);
      expect(r.letters()).toEqual([]);
      expect(emulator.requests.filter((q) => q.status === 429)).toEqual([]);
      expect(emulator.events.filter((e) => e.user_id === 'user-busy1')).toHaveLength(held + 40);
    });
  }
});
