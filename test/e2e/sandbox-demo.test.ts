import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

const num = (text: string, re: RegExp): number => {
  const m = re.exec(text);
  if (!m) throw new Error(`no match for ${re} in:\n${text}`);
  return Number((m[1] as string).replace(/,/g, ''));
};

describe('amp-fme demo and sandbox (spawned)', () => {
  it('demo: exits 0 and its figures match what the emulators received', async () => {
    const r = await runCli(['demo'], process.cwd(), { AMPLITUDE_API_KEY: undefined, AMPLITUDE_SECRET_KEY: undefined, FME_SDK_KEY: undefined });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const sent = num(r.stdout, /FME events sent\s+([\d,]+)/);
    const fmeReceived = num(r.stdout, /FME events API\s+([\d,]+) events/);
    const pushed = num(r.stdout, /events\s+([\d,]+) sent in/);
    const ampReceived = num(r.stdout, /Amplitude Batch API\s+([\d,]+) events/);
    expect(sent).toBeGreaterThan(1000);
    expect(fmeReceived).toBe(sent);
    expect(pushed).toBe(2000);
    expect(ampReceived).toBe(pushed);
    expect(r.stdout).not.toContain('MISMATCH');
  });

  it('demo --json with injected faults: retries make them invisible in the result', async () => {
    const r = await runCli(['demo', '--json', '--events', '3000', '--impressions', '1500', '--faults', '5xx=0.15,429=0.1'], process.cwd());
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as {
      exportEvents: { eventsRead: number; fmeEventsSent: number };
      pushImpressions: { eventsSent: number };
      received: { fme: { events: number }; amplitude: { events: number } };
    };
    expect(out.exportEvents.eventsRead).toBe(3000);
    expect(out.received.fme.events).toBe(out.exportEvents.fmeEventsSent);
    expect(out.pushImpressions.eventsSent).toBe(1500);
    expect(out.received.amplitude.events).toBe(1500);
  });

  it('demo: a step that fails says why, not only exit 1', async () => {
    // Every request answers 503: both steps run out of retries (about 6 s each with the sandbox's short waits).
    const r = await runCli(['demo', '--events', '50', '--impressions', '10', '--faults', '5xx=1'], process.cwd());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/amp-fme demo: export-events exited 1: .*503.*gave up after/);
    expect(r.stderr).toMatch(/amp-fme demo: push-impressions exited 1: .*503/);
  });

  it('demo: a bad --faults or --impressions is a usage error (exit 2) before anything runs', async () => {
    for (const args of [['--faults', '5xx=2'], ['--impressions', 'abc']]) {
      const r = await runCli(['demo', ...args], process.cwd());
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(args[0] as string);
      expect(r.stderr).not.toMatch(/Unexpected error|a bug in amp-fme|\n\s+at /);
      // Nothing ran: no export-events step was printed.
      expect(r.stdout).toBe('');
    }
  });

  it('sandbox --port that is taken: a usage error (exit 2) that says so', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await runCli(['sandbox', '--port', String(port), '--events', '10', '--days', '1'], tempDir('sandbox'));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--port ${port}: already in use`);
    } finally {
      taken.close();
    }
  });

  it('sandbox: serves a seeded project, a ready config and /_sandbox/received, until stopped', async () => {
    const dir = tempDir('sandbox');
    const sandbox = runCli(['sandbox', '--events', '600', '--days', '1', '--write-config', 'sandbox.json'], dir);
    let out = '';
    sandbox.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!out.includes('Press Ctrl-C')) {
      if (Date.now() > deadline) throw new Error(`sandbox did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
    const command = /amp-fme (export-events --config sandbox\.json --start \S+ --end \S+)/.exec(out)?.[1] as string;
    expect(JSON.parse(readFileSync(join(dir, 'sandbox.json'), 'utf8')).fme.eventsBaseUrl).toBe(`${url}/api`);
    const r = await runCli([...command.split(' '), '--json'], dir, { AMPLITUDE_API_KEY: undefined, AMPLITUDE_SECRET_KEY: undefined, FME_SDK_KEY: undefined });
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { eventsRead: number; fmeEventsSent: number };
    expect(summary.eventsRead).toBe(600);
    const received = (await (await fetch(`${url}/_sandbox/received`)).json()) as { fme: { events: number; byTrafficType: Record<string, number> } };
    expect(received.fme.events).toBe(summary.fmeEventsSent);
    expect(Object.keys(received.fme.byTrafficType).sort()).toEqual(['anonymous', 'user']);
    sandbox.child.kill('SIGTERM');
    const done = await sandbox;
    expect(done.code).toBe(0);
  });
});
