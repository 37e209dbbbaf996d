import { spawn } from 'node:child_process';
import { createWriteStream, statSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { ingestionTestBed } from '../helpers/push.js';

// Needs dist/ (`npm test` builds first): the child runs the built pipeline so that its memory is the
// pipeline's alone (the emulator, which remembers every insert_id, runs here in the test process).
const CHILD = fileURLToPath(new URL('../fixtures/impressions/memory-child.mjs', import.meta.url));
const API_KEY = 'amp-memory-test-key-1';
const bed = ingestionTestBed('mem', { apiKey: API_KEY, countOnly: true });
const { emulator } = bed;

async function writeDump(path: string, impressions: number): Promise<number> {
  const out = createWriteStream(path);
  const now = Date.now();
  let lines: string[] = [];
  for (let i = 0; i < impressions; i++) {
    lines.push(
      JSON.stringify({
        key: `user-${(i * 7919) % 50_000}`,
        split: `flag_${i % 40}`,
        environmentId: 'env-1',
        environmentName: 'Production',
        treatment: i % 3 === 0 ? 'on' : 'off',
        time: now - 3_600_000 + i,
        bucketingKey: null,
        label: 'default rule',
        machineName: 'web-1',
        machineIp: '10.0.0.1',
        splitVersionNumber: 1700000000000,
        sdk: 'javascript',
        sdkVersion: '10.22.0',
        properties: '{"page":"checkout","plan":"pro","region":"eu-west-1"}',
      }),
    );
    if (lines.length === 5000) {
      if (!out.write(`${lines.join('\n')}\n`)) await once(out, 'drain');
      lines = [];
    }
  }
  out.end(lines.length ? `${lines.join('\n')}\n` : '');
  await once(out, 'close');
  return statSync(path).size;
}

interface Measured {
  size: number;
  /** Peak growth over the child's baseline, bytes. */
  heapAndOffHeap: number;
  rss: number;
  rate: number;
}

async function measure(impressions: number): Promise<Measured> {
  const file = join(bed.dir, `big-${impressions}.ndjson`);
  const size = await writeDump(file, impressions);
  emulator.reset();
  // A heap cap under the big file's size: holding that file as a string would crash the child.
  const child = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=96', CHILD, file, bed.url, API_KEY, join(bed.dir, 'dl.ndjson')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number];
  expect(code, stderr).toBe(0);
  const r = JSON.parse(stdout) as { base: Record<string, number>; peak: Record<string, number>; impressions: number; sent: number; ms: number };
  expect(r.impressions).toBe(impressions);
  expect(r.sent).toBe(impressions);
  expect(emulator.count).toBe(impressions);
  return {
    size,
    heapAndOffHeap: r.peak.heap! - r.base.heap! + (r.peak.offHeap! - r.base.offHeap!),
    rss: r.peak.rss! - r.base.rss!,
    rate: Math.round((r.impressions * 1000) / r.ms),
  };
}

it('streams a 450k-impression dump (~170 MB) with flat memory, end to end to the emulator', { timeout: 240_000 }, async () => {
  // Both runs must be past warm-up (JIT, the young generation growing, the decode thread starting),
  // which takes the first ~100k impressions: against a 60k run, warm-up alone read as 24-32 MB of growth.
  const small = await measure(150_000);
  const big = await measure(450_000);
  expect(big.size).toBeGreaterThan(150_000_000);
  const report = JSON.stringify({ small, big });
  // Flat memory means a 3x larger file costs about the same memory: the extra growth must be a small
  // fraction of the extra ~113 MB (buffering the file would add all of it). Seen: 8-10 MB of RSS.
  const extraBytes = big.size - small.size;
  expect(big.heapAndOffHeap - small.heapAndOffHeap, report).toBeLessThan(extraBytes * 0.3);
  expect(big.rss - small.rss, report).toBeLessThan(extraBytes * 0.35);
  expect(big.rss, report).toBeLessThan(big.size);
  console.log(`push-impressions memory: ${report}`);
});
