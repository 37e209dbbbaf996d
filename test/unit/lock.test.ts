import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { LockedError } from '../../src/errors.js';
import { acquireLock, FOREIGN_STALE_MS, HEARTBEAT_MS } from '../../src/state/lock.js';
import { tempDir } from '../helpers/temp-dir.js';

function lockPath(): string {
  return join(tempDir('lock'), 'export-events.lock');
}

/** What acquireLock throws for `p` (undefined: it took the lock). */
function lockError(p: string): unknown {
  try {
    acquireLock(p, 'export-events');
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('acquireLock', () => {
  it('takes a free lock, writes pid and start time, and releases it', () => {
    const p = lockPath();
    const lock = acquireLock(p, 'export-events --since-last-run');
    const info = JSON.parse(readFileSync(p, 'utf8')) as { pid: number; startedAt: string; command: string };
    expect(info.pid).toBe(process.pid);
    expect(info.command).toBe('export-events --since-last-run');
    lock.release();
    expect(existsSync(p)).toBe(false);
  });

  it('refuses a lock held by a live process, naming its pid and start time', async () => {
    const p = lockPath();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      writeFileSync(p, JSON.stringify({ pid: child.pid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events' }));
      const err = lockError(p);
      expect(err).toBeInstanceOf(LockedError);
      expect((err as Error).message).toContain(`pid ${child.pid}`);
      expect((err as Error).message).toContain('2024-03-05T10:00:00.000Z');
      // The holder's lock is untouched.
      expect(JSON.parse(readFileSync(p, 'utf8')).pid).toBe(child.pid);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('an empty lock (a run killed while taking it) is refused for 10 s, saying so, then taken over', () => {
    const p = lockPath();
    writeFileSync(p, '');
    const err = lockError(p);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as Error).message).toBe(
      `another amp-fme run is taking the lock ${p} right now (or one was killed while taking it: such a lock is taken over 10 s after it was made); this run did nothing.`,
    );
    const old = new Date(Date.now() - 11_000);
    utimesSync(p, old, old);
    const lock = acquireLock(p, 'export-events');
    expect(JSON.parse(readFileSync(p, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('takes over at once a lock left by a dead process', () => {
    const p = lockPath();
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    writeFileSync(p, JSON.stringify({ pid: deadPid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events' }));
    const started = Date.now();
    const lock = acquireLock(p, 'export-events');
    // Not held back by the 10 s grace period that an unreadable lock gets (the bound leaves room for a slow machine).
    expect(Date.now() - started).toBeLessThan(5000);
    expect(JSON.parse(readFileSync(p, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('treats a live pid with another start time as a reused pid, hence stale', () => {
    const p = lockPath();
    writeFileSync(p, JSON.stringify({ pid: process.pid, hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z', command: 'x', procStart: '1' }));
    const lock = acquireLock(p, 'export-events');
    expect(JSON.parse(readFileSync(p, 'utf8')).startedAt).not.toBe('2020-01-01T00:00:00.000Z');
    lock.release();
  });
});

describe('acquireLock and a lock from another host', () => {
  it('respects a lock written by another host, whatever its pid, naming the holder and leaving the file as it was', () => {
    const p = lockPath();
    // A pid that certainly does not exist here: on this host such a lock would be taken over as stale.
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    const foreign = `other-${hostname()}.example`;
    const content = `${JSON.stringify({ pid: deadPid, hostname: foreign, startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events --since-last-run' })}\n`;
    writeFileSync(p, content);
    const err = lockError(p);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as Error).message).toContain(`pid ${deadPid} on ${foreign}`);
    expect((err as Error).message).toContain('2024-03-05T10:00:00.000Z');
    expect((err as Error).message).toContain('This run did nothing');
    // The other host's lock is left exactly as it was, and no takeover guard is left behind.
    expect(readFileSync(p, 'utf8')).toBe(content);
    expect(existsSync(`${p}.takeover`)).toBe(false);
  });

  it('takes over a lock of another host or container that its holder has stopped touching (a crashed pod, a restarted container), and only then', () => {
    const minutesAgo = (m: number): Date => new Date(Date.now() - m * 60_000);
    for (const where of [{ hostname: `pod-${hostname()}-7f9c` }, { hostname: hostname(), pidNamespace: 'pid:[1]' }]) {
      const p = lockPath();
      writeFileSync(p, JSON.stringify({ pid: 1, ...where, startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events --since-last-run', heartbeatMs: HEARTBEAT_MS }));
      // Touched two minutes ago: its holder is running.
      utimesSync(p, minutesAgo(2), minutesAgo(2));
      const err = lockError(p);
      expect(err).toBeInstanceOf(LockedError);
      expect((err as Error).message).toContain(`not refreshed for ${FOREIGN_STALE_MS / 60_000} minutes is taken over`);
      // Not touched for longer than FOREIGN_STALE_MS: its holder is gone, and this run goes on.
      utimesSync(p, minutesAgo(FOREIGN_STALE_MS / 60_000 + 1), minutesAgo(FOREIGN_STALE_MS / 60_000 + 1));
      const lock = acquireLock(p, 'export-events');
      expect(JSON.parse(readFileSync(p, 'utf8'))).toMatchObject({ pid: process.pid, heartbeatMs: HEARTBEAT_MS });
      lock.release();
    }
  });

  it('respects a lock of another host from an earlier version (no heartbeat), however old', () => {
    const p = lockPath();
    writeFileSync(p, JSON.stringify({ pid: 1, hostname: `other-${hostname()}`, startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events' }));
    const old = new Date(Date.now() - 24 * 3_600_000);
    utimesSync(p, old, old);
    expect(lockError(p)).toBeInstanceOf(LockedError);
  });

  it('touches the lock it holds every HEARTBEAT_MS until released', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const p = lockPath();
      const lock = acquireLock(p, 'export-events');
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(p, old, old);
      vi.advanceTimersByTime(HEARTBEAT_MS);
      expect(Date.now() - statSync(p).mtimeMs).toBeLessThan(10_000);
      lock.release();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('acquireLock and a lock from another container on the same host name', () => {
  /** The pid namespace of this process, as a lock records it. */
  const ourNamespace = (): string => readlinkSync('/proc/self/ns/pid');

  it('respects a lock of another pid namespace whose pid is this very process (each container starts at pid 1)', () => {
    const p = lockPath();
    // What a run in another container wrote: same host name (compose's hostname:, --network host), its own pid space.
    const content = `${JSON.stringify({ pid: process.pid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'export-events --since-last-run', procStart: '1', pidNamespace: 'pid:[1]' })}\n`;
    writeFileSync(p, content);
    const err = lockError(p);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as Error).message).toContain('another pid namespace');
    expect((err as Error).message).toContain('This run did nothing');
    expect(readFileSync(p, 'utf8')).toBe(content);
  });

  it('respects a lock of another pid namespace whose pid does not exist here', () => {
    const p = lockPath();
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim());
    writeFileSync(p, JSON.stringify({ pid: deadPid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'x', procStart: '1', pidNamespace: 'pid:[1]' }));
    expect(lockError(p)).toBeInstanceOf(LockedError);
  });

  it('records its own pid namespace, and still takes over a dead holder of the same one at once', () => {
    const p = lockPath();
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim());
    writeFileSync(p, JSON.stringify({ pid: deadPid, hostname: hostname(), startedAt: '2024-03-05T10:00:00.000Z', command: 'x', pidNamespace: ourNamespace() }));
    const lock = acquireLock(p, 'export-events');
    const info = JSON.parse(readFileSync(p, 'utf8')) as { pid: number; pidNamespace: string };
    expect(info).toMatchObject({ pid: process.pid, pidNamespace: ourNamespace() });
    lock.release();
  });
});
