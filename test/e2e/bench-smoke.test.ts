import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';

// `npm test` builds first, and the benchmark runs the built CLI (dist/), as `npm run bench` does.
const SCRIPT = resolve(__dirname, '../../scripts/bench.mjs');
// A fresh cache folder, so the smoke run also exercises generating the data.
const cache = tempDir('bench-smoke');

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [SCRIPT, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: cache },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

describe('npm run bench (smoke, --quick)', () => {
  it('runs both commands against the emulators, checks the counts and prints one table', async () => {
    const r = await runBench(['--quick']);
    expect(r.stderr).not.toContain('Error');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    const header = lines.findIndex((l) => l.startsWith('run ') && l.includes('items/s') && l.includes('peak RSS MB') && l.includes('vs floor'));
    expect(header).toBeGreaterThan(-1);
    const rows = lines.slice(header + 2).filter((l) => /^(export-events|push-impressions)/.test(l));
    expect(rows.map((l) => l.split(/\s{2,}/)[0])).toEqual(['export-events', 'push-impressions ndjson.gz', 'push-impressions json.gz']);
    for (const row of rows) {
      const cells = row.split(/\s{2,}/);
      expect(cells[1]).toBe('20,000');
      // Every figure is a number: nothing came out as NaN or missing.
      expect(cells.slice(2).every((c) => /^[\d,.]+%?$/.test(c))).toBe(true);
    }
    // The benchmark verified what the emulators received, not just that the CLI exited 0.
    expect(r.stderr).toMatch(/export-events 20,000: [\d,]+ FME events counted = expected/);
    expect(r.stderr).toMatch(/push-impressions json\.gz 20,000: 20,000 events received = expected/);
  }, 120_000);

  it('rejects an unknown flag', async () => {
    const r = await runBench(['--nope']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown argument --nope');
  });
});
