import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { closeOutput, openOutputFile, writeOutput } from '../../src/io/output-file.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('the --output file', () => {
  it('waits for room as often as it must without piling listeners on the stream', async () => {
    const out = await openOutputFile(join(tempDir('output-file'), 'out.ndjson'));
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    // Each 64 KB write fills the stream's buffer: every one of them waits for 'drain'.
    for (let i = 0; i < 200; i++) await writeOutput(out, chunk);
    for (const event of ['close', 'finish', 'drain', 'end']) expect(out.listenerCount(event), event).toBe(0);
    expect(out.listenerCount('error')).toBe(1); // openOutputFile's own, which keeps a later failure from being unhandled
    await closeOutput(out);
    expect(out.bytesWritten).toBe(200 * 64 * 1024);
  });
});
