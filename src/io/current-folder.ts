import { UsageError } from '../errors.js';

/**
 * The process's current folder. When it no longer exists (deleted or moved from under the shell or the cron
 * job), Node fails with "uv_cwd"; this says what that means and what to do instead.
 */
export function currentFolder(): string {
  try {
    return process.cwd();
  } catch {
    throw new UsageError('the current folder no longer exists (it was deleted or moved): cd to a folder that exists, or give --config and the files by absolute paths, and run again');
  }
}
