import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createAmplitudeIngestionEmulator } from '../../src/sandbox/amplitude-ingestion.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';

// Needs dist/ (`npm test` builds first): the child runs the built pipeline so that its memory is the
// pipeline's alone (the emulator, which remembers every insert_id, runs here in the test process).
const CHILD = fileURLToPath(new URL('../fixtures/impressions/memory-child.mjs', import.meta.url));
const API_KEY = 'amp-memory-test-key-1';
const IMPRESSIONS = 300_000;
const emulator = createAmplitudeIngestionEmulator({ apiKey: API_KEY, countOnly: true });
let server: RunningServer;
let dir: string;

beforeAll(async () => {
  server = await startServer([emulator.route]);
  dir = mkdtempSync(join(tmpdir(), 'amp-fme-mem-'));
});
afterAll(async () => server.close());

async function writeDump(path: string): Promise<number> {
  const out = createWriteStream(path);
  const now = Date.now();
  let lines: string[] = [];
  for (let i = 0; i < IMPRESSIONS; i++) {
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

it('streams a 300k-impression dump (~100 MB) with flat memory, end to end to the emulator', { timeout: 180_000 }, async () => {
  const file = join(dir, 'big.ndjson');
  const size = await writeDump(file);
  expect(size).toBeGreaterThan(90_000_000);
  // A heap cap well under the file size: buffering the file (as a string) would crash the child.
  const child = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=96', CHILD, file, server.url, API_KEY, join(dir, 'dl.ndjson')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number];
  expect(code, stderr).toBe(0);
  const r = JSON.parse(stdout) as { base: Record<string, number>; peak: Record<string, number>; impressions: number; sent: number; ms: number };
  expect(r.impressions).toBe(IMPRESSIONS);
  expect(r.sent).toBe(IMPRESSIONS);
  expect(emulator.count).toBe(IMPRESSIONS);
  const growth = { heap: r.peak.heap! - r.base.heap!, offHeap: r.peak.offHeap! - r.base.offHeap!, rss: r.peak.rss! - r.base.rss! };
  // Flat: growth is a fraction of the file (chunks, batches in flight), far from its ~100 MB.
  expect(growth.heap + growth.offHeap, JSON.stringify(growth)).toBeLessThan(size / 3);
  expect(growth.rss, JSON.stringify(growth)).toBeLessThan(size / 2);
  console.log(`push-impressions memory: file ${Math.round(size / 1e6)} MB, growth heap ${Math.round(growth.heap / 1e6)} MB, off-heap ${Math.round(growth.offHeap / 1e6)} MB, rss ${Math.round(growth.rss / 1e6)} MB; ${Math.round((r.impressions * 1000) / r.ms)} impressions/s`);
});
