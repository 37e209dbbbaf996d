/**
 * Whether a process with this pid exists on this host (signal 0 only checks). EPERM: it exists but belongs
 * to another user. A pid in another pid namespace (another container) looks absent from here.
 */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
