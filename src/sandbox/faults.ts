import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** A forced response: the emulator answers this instead of doing its work. */
export interface ForcedResponse {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  /** Process the request normally (store the data) and then answer with `status` anyway: an ambiguous failure. */
  afterProcessing?: boolean;
  /** Hold the response this long first (timeouts). */
  delayMs?: number;
  /** Hold the response until this settles (tests: answer only once the client has reached a given point). */
  until?: PromiseLike<unknown>;
  /** Destroy the socket without answering (connection reset). */
  reset?: boolean;
  /** Answer normally but end the body cleanly after this many bytes (a truncated download). Emulators that stream bodies honour it. */
  truncateAt?: number;
}

/** Random faults, as `amp-fme sandbox --faults 5xx=0.1,429=0.05,slow=0.02`. */
export interface FaultRates {
  '5xx'?: number;
  '429'?: number;
  slow?: number;
  reset?: number;
}

/**
 * Fault injection for an emulator: a queue of scripted responses (tests) and random rates (sandbox).
 * Scripted faults are consumed in order, one per request, optionally only for requests matching a filter.
 */
export class FaultScript {
  private readonly queue: { response: ForcedResponse; remaining: number }[] = [];
  rates: FaultRates = {};
  slowMs = 2000;

  /** Answer the next `times` requests with `response`. */
  push(response: ForcedResponse, times = 1): this {
    this.queue.push({ response, remaining: times });
    return this;
  }

  clear(): void {
    this.queue.length = 0;
    this.rates = {};
  }

  get pending(): number {
    return this.queue.reduce((n, q) => n + q.remaining, 0);
  }

  /** The fault for this request, if any. */
  next(): ForcedResponse | undefined {
    const head = this.queue[0];
    if (head) {
      head.remaining--;
      if (head.remaining <= 0) this.queue.shift();
      return head.response;
    }
    const r = Math.random();
    let acc = 0;
    if ((acc += this.rates['5xx'] ?? 0) > r) return { status: 503, body: 'Service Unavailable (injected fault)' };
    if ((acc += this.rates['429'] ?? 0) > r) return { status: 429, body: 'Too Many Requests (injected fault)', headers: { 'retry-after': '1' } };
    if ((acc += this.rates.reset ?? 0) > r) return { status: 0, reset: true };
    if ((acc += this.rates.slow ?? 0) > r) return { status: 200, afterProcessing: true, delayMs: this.slowMs };
    return undefined;
  }
}

/** Parses `5xx=0.1,429=0.05,slow=0.02`. Throws with a readable message on a bad spec. */
export function parseFaultRates(spec: string): FaultRates {
  const out: FaultRates = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, value, ...extra] = part.split('=');
    // Number('') is 0: "5xx=" must not quietly mean "no faults", nor "5xx=0.1=3" take the 0.1.
    const rate = value === undefined || value.trim() === '' || extra.length > 0 ? NaN : Number(value);
    if (!name || !['5xx', '429', 'slow', 'reset'].includes(name) || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new Error(`bad fault "${part}": use 5xx=0.1,429=0.05,slow=0.02,reset=0.01 (rates between 0 and 1)`);
    }
    out[name as keyof FaultRates] = rate;
  }
  return out;
}

/** Sends a forced response that is not `afterProcessing`. Returns after the response is sent. */
export async function sendForced(res: ServerResponse, f: ForcedResponse): Promise<void> {
  if (f.delayMs) await sleep(f.delayMs);
  if (f.until) await f.until;
  if (f.reset) {
    res.socket?.destroy();
    return;
  }
  const body = f.body ?? '';
  res.writeHead(f.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...f.headers });
  res.end(body);
}
