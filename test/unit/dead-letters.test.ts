import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { messageFor } from '../../src/cli/exit-codes.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { cutBack, DeadLetterWriter } from '../../src/pipeline/dead-letters.js';
import { acquireLock } from '../../src/state/lock.js';
import { tempDir } from '../helpers/temp-dir.js';

const linesOf = (path: string): { reason: string; payload: unknown }[] =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { reason: string; payload: unknown }) : [];

describe('DeadLetterWriter', () => {
  it('has every record on disk once sync() returns, before anything else runs', () => {
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'sub', 'dead.ndjson'), 'export-events');
    dl.write({ reason: 'invalid_json', retriable: false, payload: '{"a":' });
    dl.write({ reason: 'fme_rejected', status: 400, retriable: true, payload: { eventTypeId: 'x' } });
    dl.sync();
    // Read at once, in the same turn: a record waiting for a stream's asynchronous write would not be there yet.
    expect(linesOf(dl.path).map((l) => l.reason)).toEqual(['invalid_json', 'fme_rejected']);
    expect(dl.counts()).toEqual({ invalid_json: 1, fme_rejected: 1 });
  });

  it("never writes into another run's file of the same name (two containers, both pid 1, started in the same second)", async () => {
    const path = join(tempDir('dl'), 'export-events-20240301T110000Z-1.ndjson');
    writeFileSync(path, '{"reason":"fme_rejected","retriable":true,"payload":{"key":"theirs"}}\n');
    const dl = new DeadLetterWriter(path, 'export-events');
    dl.write({ reason: 'fme_rejected', retriable: true, payload: { key: 'ours' } });
    await dl.close();
    expect(dl.path).toBe(path.replace(/\.ndjson$/, '-2.ndjson'));
    expect(linesOf(path).map((l) => l.payload)).toEqual([{ key: 'theirs' }]);
    // A later record of this run, after close, goes on in its own file.
    dl.write({ reason: 'fme_rejected', retriable: true, payload: { key: 'ours, later' } });
    await dl.close();
    expect(linesOf(dl.path).map((l) => l.payload)).toEqual([{ key: 'ours' }, { key: 'ours, later' }]);
  });

  it('counts the records a retry may re-send', () => {
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'export-events');
    dl.write({ reason: 'invalid_json', retriable: false, payload: '{"a":' });
    expect(dl.retriableCount).toBe(0);
    dl.write({ reason: 'fme_rejected', status: 400, retriable: true, payload: { eventTypeId: 'x' } });
    dl.write({ reason: 'fme_rejected', status: 400, retriable: true, payload: { eventTypeId: 'y' } });
    expect({ count: dl.count, retriable: dl.retriableCount }).toEqual({ count: 3, retriable: 2 });
  });

  it('leaves no file behind for a run without dead letters', async () => {
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'push-impressions');
    dl.sync();
    await dl.close();
    expect(existsSync(dl.path)).toBe(false);
    expect(dl.count).toBe(0);
  });

  it('writes records out as they pile up, so a run full of rejects does not hold them in memory', () => {
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'push-impressions');
    const payload = 'x'.repeat(1000);
    for (let i = 0; i < 300; i++) dl.write({ reason: 'invalid_json', retriable: false, payload });
    // 300 KB written, no sync yet: all but the last few kilobytes are in the file already.
    expect(linesOf(dl.path).length).toBeGreaterThan(200);
    dl.sync();
    expect(linesOf(dl.path).length).toBe(300);
  });

  it('appends after close, and close twice is harmless', async () => {
    const dl = new DeadLetterWriter(join(tempDir('dl'), 'dead.ndjson'), 'retry');
    dl.write({ reason: 'a', retriable: false, payload: 1 });
    await dl.close();
    await dl.close();
    dl.write({ reason: 'b', retriable: false, payload: 2 });
    await dl.close();
    expect(linesOf(dl.path).map((l) => l.payload)).toEqual([1, 2]);
  });

  it.runIf(existsSync('/dev/full'))('names its file when the disk is full', async () => {
    const path = join(tempDir('dl'), 'dead.ndjson');
    const dl = new DeadLetterWriter(path, 'push-impressions');
    dl.write({ reason: 'invalid_json', retriable: false, payload: '{' });
    await dl.close();
    // The disk fills up before the run's next record: its file, opened again to append, now leads to /dev/full.
    rmSync(path);
    symlinkSync('/dev/full', path);
    dl.write({ reason: 'invalid_json', retriable: false, payload: '{' });
    let err: unknown;
    try {
      dl.sync();
    } catch (e) {
      err = e;
    }
    expect(messageFor(err)).toMatch(new RegExp(`^could not write ${path}: no space left on the device \\(ENOSPC\\)`));
    await dl.close().catch(() => undefined);
  });
});

describe('cutBack', () => {
  it("cuts an interrupted run's file back to its recorded size, and says how to do it when another command holds the file", () => {
    const path = join(tempDir('dl'), "export-events-20240301T110000Z-1 it's.ndjson");
    const kept = '{"reason":"fme_rejected","retriable":true,"payload":{"key":"recorded"}}\n';
    writeFileSync(path, `${kept}{"reason":"fme_rejected","retriable":true,"payload":{"key":"handled again"}}\n`);
    const held = acquireLock(`${path}.lock`, 'retry');
    const logger = createMemoryLogger();
    cutBack({ file: path, bytes: Buffer.byteLength(kept) }, logger, 'export-events');
    held.release();
    expect(readFileSync(path, 'utf8')).not.toBe(kept);
    expect(logger.lines).toMatchObject([{ level: 'warn', message: expect.stringContaining(`truncate -s ${Buffer.byteLength(kept)} '`) as unknown }]);

    cutBack({ file: path, bytes: Buffer.byteLength(kept) }, logger, 'export-events');
    expect(readFileSync(path, 'utf8')).toBe(kept);
    expect(logger.lines[1]).toMatchObject({ level: 'info' });
    // A file gone (retried and renamed) or already no longer than recorded is left alone, quietly.
    cutBack({ file: `${path}.gone`, bytes: 0 }, logger, 'export-events');
    cutBack({ file: path, bytes: 10_000 }, logger, 'export-events');
    expect(logger.lines).toHaveLength(2);
    expect(readFileSync(path, 'utf8')).toBe(kept);
  });
});
