import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, runCli } from '../helpers/world.js';
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

  it('demo stopped by SIGINT (the demo alone, or its process group as Ctrl-C in a terminal): exit 1, says so, leaves nothing', async () => {
    for (const target of ['demo', 'group'] as const) {
      const tmp = tempDir('demo-tmp');
      // detached: its own process group, which the 'group' case signals as a terminal's Ctrl-C does.
      const child = spawn(process.execPath, [BIN, 'demo', '--events', '20000', '--impressions', '10'], {
        cwd: tmp,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: tmp },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      const deadline = Date.now() + 20_000;
      while (!out.includes('1. amp-fme export-events')) {
        if (Date.now() > deadline) throw new Error(`demo did not reach export-events:\n${out}${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 500));
      // Still exporting (20,000 events take several seconds), with its folder in TMPDIR.
      expect(readdirSync(tmp).length).toBeGreaterThan(0);
      const url = /Sandbox on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
      process.kill(target === 'group' ? -(child.pid as number) : (child.pid as number), 'SIGINT');
      const code = await done;
      expect(code, `${target}: ${err}`).toBe(1);
      expect(err).toMatch(/^amp-fme demo: stopped \(SIGINT\); emulators closed, temporary folder removed\n$/);
      expect(out).not.toContain('2. amp-fme push-impressions');
      // Its folder, and the step's downloads that were in it, are gone; the emulators no longer answer.
      expect(readdirSync(tmp)).toEqual([]);
      await expect(fetch(`${url}/_sandbox/received`)).rejects.toThrow();
    }
  });

  it('demo piped into a reader that stops early (| head -1), stdout and stderr alike: exit 0, no error, nothing left behind', async () => {
    for (const redirect of ['', '2>&1']) {
      const tmp = tempDir('demo-pipe');
      const child = spawn('bash', ['-c', `"$0" "$1" demo --events 200 --impressions 100 ${redirect} | head -1; echo "demo exited $\{PIPESTATUS[0]}"`, process.execPath, BIN], {
        cwd: tmp,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: tmp },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      await new Promise((resolve) => child.on('close', resolve));
      // The reader got its line; the demo wrote the rest into the closed pipe, and ran and cleaned up as usual.
      expect(out, redirect).toMatch(/^Sandbox on http:\/\/127\.0\.0\.1:\d+: .*\ndemo exited 0\n$/);
      expect(err, redirect).toBe('');
      expect(readdirSync(tmp), redirect).toEqual([]);
    }
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

  it('numeric flags take plain decimal digits only: 0x0, 1e1, " 0", 0.0, +0 or "" is a usage error (exit 2) naming flag and value', async () => {
    // Number() reads each of these as a number (0x50 would be port 80); the values are 0-ish so that, if one were
    // taken, the sandbox would listen on a free port and be stopped, instead of touching a real one.
    const cases: [string, string[]][] = [
      ...['0x0', '1e1', ' 0', '0.0', '+0', ''].map((v): [string, string[]] => ['sandbox', ['--port', v]]),
      ['sandbox', ['--events', '1e1']],
      ['sandbox', ['--days', '0x1']],
      ['demo', ['--events', '1e1']],
      ['demo', ['--impressions', '0x10']],
    ];
    for (const [command, args] of cases) {
      // Small defaults first: the flag under test comes last, and commander keeps the last value.
      const run = runCli([command, ...(command === 'sandbox' ? ['--events', '10', '--days', '1'] : []), ...args], tempDir('sandbox'));
      const stop = setTimeout(() => run.child.kill('SIGTERM'), 10_000);
      const r = await run.finally(() => clearTimeout(stop));
      expect(r.code, `${command} ${args.join(' ')}`).toBe(2);
      expect(r.stderr).toContain(`${args[0] as string} must be a whole number`);
      expect(r.stderr).toContain(`got "${args[1] as string}"`);
      expect(r.stderr).not.toMatch(/Unexpected error|a bug in amp-fme|\n\s+at /);
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

  it('sandbox --write-config to a path that cannot be written: a usage error (exit 2) naming it and what to do', async () => {
    const dir = tempDir('sandbox');
    for (const [target, hint] of [
      [join(dir, 'missing', 'sandbox.json'), /its folder .*missing does not exist; create the folder/],
      [dir, /it is a folder; give a file name/],
    ] as const) {
      const run = runCli(['sandbox', '--events', '10', '--days', '1', '--write-config', target], dir);
      // Without the check a sandbox that wrote its config would serve until stopped.
      const stop = setTimeout(() => run.child.kill('SIGTERM'), 10_000);
      const r = await run.finally(() => clearTimeout(stop));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`amp-fme sandbox: --write-config ${target}: cannot write the config there`);
      expect(r.stderr).toMatch(hint);
      expect(r.stderr).not.toMatch(/ENOENT|EISDIR|Unexpected error|a bug in amp-fme|\n\s+at /);
    }
  });

  it('sandbox: serves a seeded project, a ready config and /_sandbox/received, until stopped', async () => {
    const dir = tempDir('sandbox');
    // A file name with a space: the suggested command must paste as it is.
    const sandbox = runCli(['sandbox', '--events', '600', '--days', '1', '--write-config', 'my sandbox.json'], dir);
    let out = '';
    sandbox.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!out.includes('Press Ctrl-C')) {
      if (Date.now() > deadline) throw new Error(`sandbox did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
    const command = /amp-fme (export-events --config 'my sandbox\.json' --start \S+ --end \S+)/.exec(out)?.[1] as string;
    expect(JSON.parse(readFileSync(join(dir, 'my sandbox.json'), 'utf8')).fme.eventsBaseUrl).toBe(`${url}/api`);
    const r = await runCli([], dir, { AMPLITUDE_API_KEY: undefined, AMPLITUDE_SECRET_KEY: undefined, FME_SDK_KEY: undefined }, { pasted: `${command} --json` });
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
