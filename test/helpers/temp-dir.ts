import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * Directories made for the test file that imports this module, removed after its last test, so that test
 * runs leave nothing behind in the system's temp folder. (Each test file loads its own copy of this module.)
 */
const made: string[] = [];

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new empty directory `<tmp>/amp-fme-<name>-XXXXXX`, removed after the file's tests. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `amp-fme-${name}-`));
  made.push(dir);
  return dir;
}
