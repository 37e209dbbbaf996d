import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ingestionTestBed, pushConfig, startPush } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-tar-1';
const bed = ingestionTestBed('push-tar', { apiKey: API_KEY });
const { emulator } = bed;

const imp = (key: string): string => JSON.stringify({ key, split: 'f', treatment: 'on', time: 1700000000000 });

/** A POSIX tar archive of `files`, as `tar cf` writes it: a 512-byte header per member, its content padded to 512, two zero blocks. */
function tar(files: Record<string, string>, gnu = false): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, text] of Object.entries(files)) {
    const body = Buffer.from(text);
    const h = Buffer.alloc(512);
    h.write(name, 0, 'latin1');
    h.write('0000644\0', 100, 'latin1');
    h.write('0000000\0', 108, 'latin1');
    h.write('0000000\0', 116, 'latin1');
    h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
    h.write('00000000000\0', 136, 'latin1');
    h.write('        ', 148, 'latin1');
    h.write('0', 156, 'latin1');
    h.write(gnu ? 'ustar  \0' : 'ustar\0' + '00', 257, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

describe('a tar archive given as a dump', () => {
  it('is one not_a_dump dead letter naming it, gzip or not: none of its lines is sent, and the next file is', async () => {
    const members = { 'a.ndjson': `${imp('user-t0001')}\n${imp('user-t0002')}\n`, 'b.ndjson': `${imp('user-t0003')}\n${imp('user-t0004')}\n` };
    writeFileSync(join(bed.dir, 'dumps-1.tar.gz'), gzipSync(tar(members)));
    writeFileSync(join(bed.dir, 'dumps-2.tar'), tar(members, true));
    writeFileSync(join(bed.dir, 'dumps-3.ndjson'), `${imp('user-t0005')}\n`);
    const r = startPush(bed, ['dumps-*'], { config: pushConfig(API_KEY, bed.url, 20) });
    const s = await r.done;
    expect(emulator.events.map((e) => e.user_id)).toEqual(['user-t0005']);
    expect(s.eventsSent).toBe(1);
    expect(r.letters().map((l) => [l.reason, l.source, l.detail])).toEqual([
      ['not_a_dump', { file: 'dumps-1.tar.gz' }, 'dumps-1.tar.gz: it is a tar archive: extract it (tar xf <file>) and give the files inside; the rest of this file was not read'],
      ['not_a_dump', { file: 'dumps-2.tar' }, 'dumps-2.tar: it is a tar archive: extract it (tar xf <file>) and give the files inside; the rest of this file was not read'],
    ]);
  });

  it('a dump shorter than a tar header, or that says ustar where a tar would, is read as usual', async () => {
    writeFileSync(join(bed.dir, 'short.ndjson'), `${imp('user-t0006')}\n`);
    // `ustar` at byte 257 of a JSON text: not a tar (no NUL byte after it).
    const padded = JSON.stringify({ key: 'user-t0007', split: 'f', treatment: 'on', time: 1700000000000, label: '' });
    const label = 'x'.repeat(257 - padded.length + 2) + 'ustar  and more';
    const text = `${JSON.stringify({ key: 'user-t0007', split: 'f', treatment: 'on', time: 1700000000000, label })}\n`;
    expect(text.indexOf('ustar')).toBe(257);
    writeFileSync(join(bed.dir, 'ustar.ndjson'), text);
    const r = startPush(bed, ['short.ndjson', 'ustar.ndjson'], { config: pushConfig(API_KEY, bed.url, 20) });
    expect((await r.done).eventsSent).toBe(2);
    expect(r.letters()).toEqual([]);
  });
});
