import { closeSync, openSync, readFileSync, readlinkSync, rmSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { LockedError } from '../errors.js';
import { withPath } from '../io/file-errors.js';
import { makeDirs } from '../io/make-dirs.js';
import { writeAllSync } from '../io/write-all.js';
import { processExists } from '../io/processes.js';

/** What a lock file says about its holder. */
export interface LockInfo {
  pid: number;
  hostname: string;
  startedAt: string;
  command: string;
  /** The holder's start time from /proc (Linux), to tell a dead holder from a new process reusing its pid. */
  procStart?: string;
  /**
   * The holder's pid namespace (Linux, `pid:[4026531836]`). Containers sharing `state.dir` (a volume) often share
   * the hostname too (`--hostname`, compose's `hostname:`, `--network host`), but a pid of another namespace means
   * nothing here: it looks absent, or is another process (each container's first process is pid 1).
   */
  pidNamespace?: string;
  /**
   * The holder touches the lock file every `heartbeatMs` while it runs. A lock whose pid cannot be checked from here
   * (another host, another container) is judged by that instead: not touched for FOREIGN_STALE_MS, its holder is
   * gone (a crashed pod of a Kubernetes CronJob, a container restarted in a new pid namespace). Absent in locks of
   * earlier versions, which are respected until deleted by hand.
   */
  heartbeatMs?: number;
}

export interface HeldLock {
  path: string;
  release(): void;
}

function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) comes after the command name, which may itself contain spaces and parens.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/** Why the holder's pid cannot be checked from here, if it cannot: then the lock is respected as if it were alive. */
function uncheckable(info: LockInfo): string | undefined {
  if (info.hostname !== hostname()) return 'another host';
  const ours = pidNamespace();
  if (info.pidNamespace !== undefined && ours !== undefined && info.pidNamespace !== ours) return 'another pid namespace (another container) on this host name';
  return undefined;
}

/** How often a held lock is touched (LockInfo.heartbeatMs). */
export const HEARTBEAT_MS = 60_000;
/**
 * A lock from another host or container not touched for this long is taken over: far beyond its heartbeat, so that
 * clocks of hosts sharing `state.dir` that disagree by minutes, or a run briefly stopped, do not make a live lock stale.
 */
export const FOREIGN_STALE_MS = 15 * 60_000;

function isAlive(info: LockInfo, path: string): boolean {
  if (uncheckable(info) !== undefined) {
    // Its pid cannot be checked from here: alive while it keeps touching the lock, if it does so.
    if (info.heartbeatMs === undefined) return true;
    try {
      return Date.now() - statSync(path).mtimeMs < FOREIGN_STALE_MS;
    } catch {
      return false; // gone: try again
    }
  }
  if (!processExists(info.pid)) return false;
  if (info.procStart !== undefined) {
    const now = procStart(info.pid);
    if (now !== undefined && now !== info.procStart) return false; // pid reused by another process
  }
  return true;
}

function readLock(path: string): LockInfo | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockInfo>;
    if (typeof parsed.pid !== 'number' || typeof parsed.hostname !== 'string') return undefined;
    return parsed as LockInfo;
  } catch {
    return undefined;
  }
}

function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeAllSync(fd, content);
  } catch (err) {
    // A full disk: no empty lock file left behind for the next run to wait on.
    closeSync(fd);
    rmSync(path, { force: true });
    throw withPath(err, path);
  }
  closeSync(fd);
  return true;
}

/** A lock file that is empty or unreadable for this long was left by a crash between create and write. */
const UNREADABLE_GRACE_MS = 10_000;
/** A takeover guard older than this was left by a process that died while taking over. */
const GUARD_STALE_MS = 30_000;

/**
 * Takes the lock at `path` (O_EXCL create). If another live process holds it: LockedError (exit 75) naming
 * the holder. If the holder is dead (pid gone, or reused by another process; on another host or in another
 * container: its lock not touched for FOREIGN_STALE_MS): the stale lock is taken over at once, under a guard file
 * so two runs cannot both take it over.
 */
export function acquireLock(path: string, command: string): HeldLock {
  makeDirs(dirname(path));
  const mine: LockInfo = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString(), command, heartbeatMs: HEARTBEAT_MS };
  const start = procStart(process.pid);
  if (start !== undefined) mine.procStart = start;
  const ns = pidNamespace();
  if (ns !== undefined) mine.pidNamespace = ns;
  const content = `${JSON.stringify(mine)}\n`;

  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(path, content)) return held(path, mine);
    const holder = readLock(path);
    if (holder && isAlive(holder, path)) {
      const elsewhere = uncheckable(holder);
      throw new LockedError(
        `another amp-fme run holds the lock ${path}: pid ${holder.pid} on ${holder.hostname}${elsewhere ? ` (in ${elsewhere}: its pid cannot be checked from here)` : ''}, ${holder.command}, started ${holder.startedAt}. ` +
          `This run did nothing. If that process is gone for good, delete the lock file${elsewhere && holder.heartbeatMs !== undefined ? ` (or wait: a lock it has not refreshed for ${FOREIGN_STALE_MS / 60_000} minutes is taken over)` : ''}.`,
      );
    }
    if (!holder) {
      let age = 0;
      try {
        age = Date.now() - statSync(path).mtimeMs;
      } catch {
        continue; // vanished: try again
      }
      if (age < UNREADABLE_GRACE_MS) {
        throw new LockedError(
          `another amp-fme run is taking the lock ${path} right now (or one was killed while taking it: such a lock is taken over ${UNREADABLE_GRACE_MS / 1000} s after it was made); this run did nothing.`,
        );
      }
    }
    takeOverStale(path, holder);
  }
  throw new LockedError(`could not take the lock ${path}: other runs keep taking it; this run did nothing.`);
}

function takeOverStale(path: string, seen: LockInfo | undefined): void {
  const guard = `${path}.takeover`;
  if (!createExclusive(guard, String(process.pid))) {
    try {
      if (Date.now() - statSync(guard).mtimeMs > GUARD_STALE_MS) unlinkSync(guard);
    } catch {
      // gone already
    }
    return;
  }
  try {
    // Still the same dead holder? Then nobody else took it over between our read and the guard.
    const now = readLock(path);
    const same = JSON.stringify(now) === JSON.stringify(seen);
    if (same) {
      try {
        unlinkSync(path);
      } catch {
        // gone already
      }
    }
  } finally {
    unlinkSync(guard);
  }
}

/** The locks this process holds, for `releaseHeldLocks`. */
const heldLocks = new Set<HeldLock>();

/**
 * Releases every lock this process holds: for an exit that skips the code that would release them (an error
 * nothing caught). A lock left behind would be taken over only once its pid is seen dead, and not at all from
 * another host sharing `state.dir`, or where /proc cannot tell a reused pid.
 */
export function releaseHeldLocks(): void {
  for (const lock of [...heldLocks]) lock.release();
}

function held(path: string, mine: LockInfo): HeldLock {
  let released = false;
  // Touched while held, so that a run on another host or in another container can tell it from one left by a crash.
  const heartbeat = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      // gone or unwritable: the next beat tries again; a lock not touched is only taken over after FOREIGN_STALE_MS
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();
  const lock: HeldLock = {
    path,
    release() {
      if (released) return;
      released = true;
      clearInterval(heartbeat);
      heldLocks.delete(lock);
      const now = readLock(path);
      if (now && now.pid === mine.pid && now.startedAt === mine.startedAt) {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      }
    },
  };
  heldLocks.add(lock);
  return lock;
}

