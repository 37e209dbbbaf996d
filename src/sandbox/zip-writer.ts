/**
 * A small zip writer for the Export API emulator and the tests. It writes every variant the real service
 * might send (specs/amplitude.md leaves it open): STORED or DEFLATED entries, with or without data
 * descriptors (general purpose bit 3: sizes after the data), and zip64 (forced, so that small test
 * archives exercise the zip64 records, or automatic when an entry, offset or count needs it).
 * Entries are given whole (one gzip'd JSON-lines part each); the archive is streamed entry by entry.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { deflateRaw } from 'node:zlib';
import { promisify } from 'node:util';

const deflateRawAsync = promisify(deflateRaw);

export type ZipMethod = 'stored' | 'deflate';

export interface ZipWriterOptions {
  method?: ZipMethod;
  /** Write sizes and CRC in a data descriptor after each entry's data (bit 3), zeros in the local header. */
  dataDescriptor?: boolean;
  /** Use zip64 records for every entry and for the end of the archive, even when not needed. */
  zip64?: boolean;
  /** Modification time stored for entries (DOS format, 2 s resolution). Default 2021-01-01 00:00. */
  date?: Date;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (zip/gzip polynomial). `zlib.crc32` only exists from Node 22, and we run on Node 20. */
export function crc32(data: Uint8Array, previous = 0): number {
  let c = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) {
    c = (CRC_TABLE[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
const FLAG_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;

interface CentralRecord {
  name: Buffer;
  flags: number;
  method: number;
  crc: number;
  compressedSize: number;
  uncompressedSize: number;
  offset: number;
  zip64: boolean;
}

function dosDateTime(d: Date): { date: number; time: number } {
  const year = Math.max(1980, d.getUTCFullYear());
  return {
    date: ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
  };
}

function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeBigUInt64LE(BigInt(value), offset);
}

/**
 * Writes a zip archive to `out` (a Writable, honouring backpressure) or, without `out`, into memory
 * (`toBuffer()` after `finish()`).
 */
export class ZipWriter {
  private readonly out: Writable | undefined;
  private readonly chunks: Buffer[] = [];
  private readonly records: CentralRecord[] = [];
  private readonly method: number;
  private readonly dataDescriptor: boolean;
  private readonly forceZip64: boolean;
  private readonly dos: { date: number; time: number };
  private offset = 0;
  private finished = false;

  constructor(options: ZipWriterOptions = {}, out?: Writable) {
    this.out = out;
    this.method = options.method === 'deflate' ? 8 : 0;
    this.dataDescriptor = options.dataDescriptor ?? false;
    this.forceZip64 = options.zip64 ?? false;
    this.dos = dosDateTime(options.date ?? new Date(Date.UTC(2021, 0, 1)));
  }

  /** Bytes written so far. */
  get bytesWritten(): number {
    return this.offset;
  }

  private async emit(buf: Buffer): Promise<void> {
    this.offset += buf.length;
    if (!this.out) {
      this.chunks.push(buf);
      return;
    }
    if (this.out.destroyed) throw new Error('zip output closed');
    if (!this.out.write(buf)) {
      // Wait for room, but give up if the reader went away (a client that disconnected never drains).
      const ac = new AbortController();
      try {
        await Promise.race([
          once(this.out, 'drain', { signal: ac.signal }),
          once(this.out, 'close', { signal: ac.signal }).then(() => {
            throw new Error('zip output closed');
          }),
        ]);
      } finally {
        ac.abort();
      }
    }
  }

  /** Adds one file. `name` uses `/` separators. */
  async addEntry(name: string, data: Buffer): Promise<void> {
    if (this.finished) throw new Error('zip already finished');
    const nameBuf = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    const payload = this.method === 8 ? await deflateRawAsync(data) : data;
    const offset = this.offset;
    const zip64 = this.forceZip64 || data.length >= MAX32 || payload.length >= MAX32 || offset >= MAX32;
    const flags = FLAG_UTF8 | (this.dataDescriptor ? FLAG_DESCRIPTOR : 0);

    // Local header. With a data descriptor, CRC and sizes are zero here (APPNOTE 4.4.4); a zip64 entry keeps
    // its sizes in the zip64 extra field (zeros with a descriptor, APPNOTE 4.3.9.2).
    const extra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (zip64) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(16, 2);
      writeU64(extra, this.dataDescriptor ? 0 : data.length, 4);
      writeU64(extra, this.dataDescriptor ? 0 : payload.length, 12);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(this.method, 8);
    local.writeUInt16LE(this.dos.time, 10);
    local.writeUInt16LE(this.dos.date, 12);
    local.writeUInt32LE(this.dataDescriptor ? 0 : crc, 14);
    local.writeUInt32LE(zip64 ? MAX32 : this.dataDescriptor ? 0 : payload.length, 18);
    local.writeUInt32LE(zip64 ? MAX32 : this.dataDescriptor ? 0 : data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(extra.length, 28);
    await this.emit(Buffer.concat([local, nameBuf, extra]));
    await this.emit(payload);

    if (this.dataDescriptor) {
      const dd = Buffer.alloc(zip64 ? 24 : 16);
      dd.writeUInt32LE(0x08074b50, 0);
      dd.writeUInt32LE(crc, 4);
      if (zip64) {
        writeU64(dd, payload.length, 8);
        writeU64(dd, data.length, 16);
      } else {
        dd.writeUInt32LE(payload.length, 8);
        dd.writeUInt32LE(data.length, 12);
      }
      await this.emit(dd);
    }
    this.records.push({ name: nameBuf, flags, method: this.method, crc, compressedSize: payload.length, uncompressedSize: data.length, offset, zip64 });
  }

  /** Writes the central directory and the end records. Does not end `out`. */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    const cdStart = this.offset;
    for (const r of this.records) {
      const extra = r.zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
      if (r.zip64) {
        // Order fixed by APPNOTE 4.5.3: uncompressed size, compressed size, local header offset.
        extra.writeUInt16LE(0x0001, 0);
        extra.writeUInt16LE(24, 2);
        writeU64(extra, r.uncompressedSize, 4);
        writeU64(extra, r.compressedSize, 12);
        writeU64(extra, r.offset, 20);
      }
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE(r.zip64 ? 45 : 20, 4); // made by (MS-DOS, spec version)
      h.writeUInt16LE(r.zip64 ? 45 : 20, 6);
      h.writeUInt16LE(r.flags, 8);
      h.writeUInt16LE(r.method, 10);
      h.writeUInt16LE(this.dos.time, 12);
      h.writeUInt16LE(this.dos.date, 14);
      h.writeUInt32LE(r.crc, 16);
      h.writeUInt32LE(r.zip64 ? MAX32 : r.compressedSize, 20);
      h.writeUInt32LE(r.zip64 ? MAX32 : r.uncompressedSize, 24);
      h.writeUInt16LE(r.name.length, 28);
      h.writeUInt16LE(extra.length, 30);
      h.writeUInt16LE(0, 32); // comment length
      h.writeUInt16LE(0, 34); // disk number start
      h.writeUInt16LE(0, 36); // internal attributes
      h.writeUInt32LE(0, 38); // external attributes
      h.writeUInt32LE(r.zip64 ? MAX32 : r.offset, 42);
      await this.emit(Buffer.concat([h, r.name, extra]));
    }
    const cdSize = this.offset - cdStart;
    const count = this.records.length;
    const zip64 = this.forceZip64 || count >= MAX16 || cdStart >= MAX32 || cdSize >= MAX32;
    if (zip64) {
      const eocd64Offset = this.offset;
      const rec = Buffer.alloc(56);
      rec.writeUInt32LE(0x06064b50, 0);
      writeU64(rec, 44, 4); // size of the rest of this record
      rec.writeUInt16LE(45, 12);
      rec.writeUInt16LE(45, 14);
      rec.writeUInt32LE(0, 16);
      rec.writeUInt32LE(0, 20);
      writeU64(rec, count, 24);
      writeU64(rec, count, 32);
      writeU64(rec, cdSize, 40);
      writeU64(rec, cdStart, 48);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeUInt32LE(0, 4);
      writeU64(loc, eocd64Offset, 8);
      loc.writeUInt32LE(1, 16);
      await this.emit(Buffer.concat([rec, loc]));
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(0, 4);
    end.writeUInt16LE(0, 6);
    end.writeUInt16LE(zip64 ? MAX16 : count, 8);
    end.writeUInt16LE(zip64 ? MAX16 : count, 10);
    end.writeUInt32LE(zip64 ? MAX32 : cdSize, 12);
    end.writeUInt32LE(zip64 ? MAX32 : cdStart, 16);
    end.writeUInt16LE(0, 20);
    await this.emit(end);
  }

  /** The whole archive, when no `out` was given. */
  toBuffer(): Buffer {
    if (this.out) throw new Error('this ZipWriter streams to its output');
    return Buffer.concat(this.chunks);
  }
}

/** Builds a small archive in memory (tests). */
export async function zipToBuffer(entries: { name: string; data: Buffer }[], options: ZipWriterOptions = {}): Promise<Buffer> {
  const zip = new ZipWriter(options);
  for (const e of entries) await zip.addEntry(e.name, e.data);
  await zip.finish();
  return zip.toBuffer();
}
