import { mkdirSync, createWriteStream, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { once } from 'node:events';
import { redact } from '../http/redact.js';

/** Where a dead letter came from: the input file and line, an export window and zip entry, a batch... */
export type SourcePosition = Record<string, string | number>;

export interface DeadLetter {
  /** Stable machine-readable reason, e.g. `invalid_json`, `fme_rejected`, `amplitude_invalid_field`. */
  reason: string;
  /** Human-readable detail (status, response body excerpt, field). */
  detail?: string;
  /** HTTP status when a service rejected it. */
  status?: number;
  source?: SourcePosition;
  /** Whether `amp-fme retry` may re-send `payload` as is. */
  retriable: boolean;
  /** The record itself: the unparsed line, the FME event, the Amplitude event... */
  payload: unknown;
}

/**
 * Dead letters as NDJSON, one record per line. The file is created on the first record only, so a clean
 * run leaves nothing behind. Counts by reason feed the run summary.
 */
export class DeadLetterWriter {
  readonly path: string;
  private stream: WriteStream | undefined;
  private readonly byReason = new Map<string, number>();
  private total = 0;
  private readonly command: string;

  constructor(path: string, command: string) {
    this.path = path;
    this.command = command;
  }

  write(letter: DeadLetter): void {
    if (!this.stream) {
      mkdirSync(dirname(this.path), { recursive: true });
      this.stream = createWriteStream(this.path, { flags: 'a' });
    }
    this.total++;
    this.byReason.set(letter.reason, (this.byReason.get(letter.reason) ?? 0) + 1);
    const record = { time: new Date().toISOString(), command: this.command, ...letter };
    this.stream.write(`${redact(JSON.stringify(record))}\n`);
  }

  get count(): number {
    return this.total;
  }

  counts(): Record<string, number> {
    return Object.fromEntries(this.byReason);
  }

  /** Flushes to disk; safe to call more than once. */
  async close(): Promise<void> {
    const s = this.stream;
    if (!s) return;
    this.stream = undefined;
    s.end();
    await once(s, 'finish');
  }
}
