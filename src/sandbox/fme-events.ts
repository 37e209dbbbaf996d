/**
 * Emulator of FME's events API (specs/fme.md, "Events API"), for tests, the benchmark and `amp-fme sandbox`.
 *
 * `POST {basePath}/events/bulk` takes a JSON array, `POST {basePath}/events` one event. `basePath` is `/api`
 * by default, so the client's eventsBaseUrl is `http://127.0.0.1:PORT/api`, as `https://events.split.io/api`.
 * - `Authorization: Bearer <sdkKey>` or 401.
 * - Every event is checked against the spec page's rules (fme-contract.ts, not the product's own fme/rules.ts);
 *   the first problem rejects the whole request with 400 and a JSON body naming it (the real error bodies
 *   are undocumented).
 * - Otherwise 202 (or `successStatus`, e.g. 200 for a proxy) and the events are kept.
 * Scripted or random faults come from a FaultScript; `afterProcessing` keeps the events and then answers
 * the forced status (an ambiguous failure: FME does not deduplicate, so a retry stores them twice).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FmeEvent } from '../fme/types.js';
import { fmeContractProblem } from './fme-contract.js';
import { FaultScript, sendForced } from './faults.js';
import { readBody, sendJson, type Route } from './server.js';

export interface FmeEventsEmulatorOptions {
  /** The environment's server-side SDK key, or several: an environment can have more than one (a key rotation). */
  sdkKey: string | readonly string[];
  faults?: FaultScript;
  /** Keep counts only, not the events (the benchmark sends millions). */
  countOnly?: boolean;
  /** Check every event against FME's rules (default true; the benchmark may turn it off). */
  validate?: boolean;
  /** Path prefix matching the eventsBaseUrl's path; `/api` by default. */
  basePath?: string;
  /** Status for accepted requests: 202 like FME, 200 like a proxy. */
  successStatus?: number;
}

export interface FmeEventsRequestRecord {
  status: number;
  /** Events in the request body (0 when the body could not be read). */
  events: number;
  /** Whether the events were stored. */
  stored: boolean;
}

export interface FmeEventsEmulator {
  route: Route;
  readonly faults: FaultScript;
  /** Events stored, in arrival order (empty with countOnly). */
  readonly events: FmeEvent[];
  /** Number of events stored. */
  readonly count: number;
  /** One record per request (not kept with countOnly: see requestCount). */
  readonly requests: FmeEventsRequestRecord[];
  readonly requestCount: number;
  reset(): void;
}

const BAD_REQUEST = (message: string): { code: number; message: string } => ({ code: 400, message });

export function createFmeEventsEmulator(options: FmeEventsEmulatorOptions): FmeEventsEmulator {
  const faults = options.faults ?? new FaultScript();
  const basePath = (options.basePath ?? '/api').replace(/\/+$/, '');
  const bulkPath = `${basePath}/events/bulk`;
  const singlePath = `${basePath}/events`;
  const countOnly = options.countOnly ?? false;
  const validate = options.validate ?? true;
  const successStatus = options.successStatus ?? 202;
  const acceptedAuth = new Set((typeof options.sdkKey === 'string' ? [options.sdkKey] : options.sdkKey).map((k) => `Bearer ${k}`));

  const events: FmeEvent[] = [];
  const requests: FmeEventsRequestRecord[] = [];
  let count = 0;
  let requestCount = 0;

  const record = (status: number, n: number, stored: boolean): void => {
    requestCount++;
    if (!countOnly) requests.push({ status, events: n, stored });
  };

  /** Parses and checks a body; returns the events or a 400 message. */
  const check = (body: Buffer, bulk: boolean): { events: FmeEvent[] } | { error: string; events: number } => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return { error: 'request body is not valid JSON', events: 0 };
    }
    let list: unknown[];
    if (bulk) {
      if (!Array.isArray(parsed)) return { error: 'request body must be a JSON array of events', events: 0 };
      list = parsed;
    } else {
      list = [parsed];
    }
    if (validate) {
      for (let i = 0; i < list.length; i++) {
        const problem = fmeContractProblem(list[i]);
        if (problem) return { error: bulk ? `event ${i}: ${problem}` : problem, events: list.length };
      }
    }
    return { events: list as FmeEvent[] };
  };

  /** How many events a refused body held (what a test sees of the requests a client split), 0 if it is not JSON. */
  const eventsIn = (body: Buffer, bulk: boolean): number => {
    if (!bulk) return 1;
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8'));
      return Array.isArray(parsed) ? parsed.length : 0;
    } catch {
      return 0;
    }
  };

  const store = (list: FmeEvent[]): void => {
    count += list.length;
    if (!countOnly) for (const e of list) events.push(e);
  };

  const route: Route = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    const bulk = path === bulkPath;
    if (!bulk && path !== singlePath) return false;
    if (req.method !== 'POST') {
      sendJson(res, 405, { code: 405, message: 'Method Not Allowed' }, { allow: 'POST' });
      return true;
    }
    const forced = faults.next();
    const body = await readBody(req);
    if (forced && !forced.afterProcessing) {
      record(forced.status, countOnly ? 0 : eventsIn(body, bulk), false);
      await sendForced(res, forced);
      return true;
    }
    if (!acceptedAuth.has(req.headers.authorization ?? '')) {
      record(401, 0, false);
      sendJson(res, 401, { code: 401, message: 'Unauthorized: invalid SDK key' });
      return true;
    }
    const result = check(body, bulk);
    if ('error' in result) {
      record(400, result.events, false);
      sendJson(res, 400, BAD_REQUEST(result.error));
      return true;
    }
    store(result.events);
    if (forced) {
      record(forced.status, result.events.length, true);
      await sendForced(res, { ...forced, afterProcessing: false });
      return true;
    }
    record(successStatus, result.events.length, true);
    res.writeHead(successStatus, { 'content-length': 0 }).end();
    return true;
  };

  return {
    route,
    faults,
    events,
    requests,
    get count() {
      return count;
    },
    get requestCount() {
      return requestCount;
    },
    reset() {
      events.length = 0;
      requests.length = 0;
      count = 0;
      requestCount = 0;
      faults.clear();
    },
  };
}
