import type { IncomingMessage, ServerResponse } from 'node:http';
import { floorHour, formatHour, HOUR_MS } from '../amplitude/hours.js';
import { createExportEmulator } from './amplitude-export.js';
import { createAmplitudeIngestionEmulator } from './amplitude-ingestion.js';
import { FaultScript, type FaultRates } from './faults.js';
import { createFmeEventsEmulator } from './fme-events.js';
import { generateExportRows } from './generate.js';
import { sendJson, startServer, type RunningServer } from './server.js';

/** Keys the sandbox accepts: stand-ins, never real credentials. */
export const SANDBOX_KEYS = {
  amplitudeApiKey: 'sandbox-amplitude-api-key',
  amplitudeSecretKey: 'sandbox-amplitude-secret-key',
  fmeSdkKey: 'sandbox-fme-server-sdk-key',
} as const;

export interface SandboxOptions {
  /** 0 = any free port. */
  port?: number;
  /** Events in the generated Amplitude project, spread over `days`. */
  events?: number;
  days?: number;
  /** Users in the generated project (about a third of events are anonymous). */
  users?: number;
  faults?: FaultRates;
  seed?: number;
  now?: number;
}

export interface ReceivedReport {
  fme: { events: number; requests: number; byEventType: Record<string, number>; byTrafficType: Record<string, number>; sample: unknown[] };
  amplitude: {
    events: number;
    duplicatesDropped: number;
    identifications: number;
    usersWithProperties: number;
    requests: number;
    byEventType: Record<string, number>;
    sample: unknown[];
  };
  export: { requests: { start: string; end: string; status: number }[] };
}

export interface Sandbox {
  url: string;
  port: number;
  /** First and last upload hour with data (whole UTC days before today). */
  firstHour: number;
  lastHour: number;
  events: number;
  /** A config file that points amp-fme at this sandbox (keys included: they are the sandbox's). */
  config: Record<string, unknown>;
  received(): ReceivedReport;
  close(): Promise<void>;
}

function tally(items: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of items) out[k] = (out[k] ?? 0) + 1;
  return out;
}

/**
 * The Amplitude (Export, Batch, HTTP V2, Identify) and FME (events) emulators on one port of 127.0.0.1,
 * seeded with a generated project: `days` whole UTC days before today, a few thousand users, anonymous and
 * logged-in, nested properties, odd event names and some `get_treatment` events.
 * `GET /_sandbox/received` reports what the FME and Amplitude emulators received.
 */
export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const days = options.days ?? 3;
  const total = options.events ?? 20_000;
  const users = options.users ?? 3000;
  const seed = options.seed ?? 1;
  const today = floorHour(options.now ?? Date.now()) - (new Date(options.now ?? Date.now()).getUTCHours() * HOUR_MS);
  const firstHour = today - days * 24 * HOUR_MS;
  const lastHour = today - HOUR_MS;
  const hours = days * 24;
  const perHour = (hourMs: number): number => {
    const i = Math.round((hourMs - firstHour) / HOUR_MS);
    if (i < 0 || i >= hours) return 0;
    return Math.floor(((i + 1) * total) / hours) - Math.floor((i * total) / hours);
  };

  const faultsFor = (): FaultScript => {
    const f = new FaultScript();
    if (options.faults) f.rates = options.faults;
    return f;
  };
  const exportApi = createExportEmulator({
    apiKey: SANDBOX_KEYS.amplitudeApiKey,
    secretKey: SANDBOX_KEYS.amplitudeSecretKey,
    source: (hourMs) => generateExportRows(hourMs, perHour(hourMs), { users, seed }),
    entriesPerHour: 2,
    zip: { method: 'deflate', dataDescriptor: true },
    faults: faultsFor(),
  });
  const fme = createFmeEventsEmulator({ sdkKey: SANDBOX_KEYS.fmeSdkKey, faults: faultsFor() });
  const amplitude = createAmplitudeIngestionEmulator({ apiKey: SANDBOX_KEYS.amplitudeApiKey, faults: faultsFor() });

  const received = (): ReceivedReport => ({
    fme: {
      events: fme.count,
      requests: fme.requestCount,
      byEventType: tally(fme.events.map((e) => e.eventTypeId)),
      byTrafficType: tally(fme.events.map((e) => e.trafficTypeName)),
      sample: fme.events.slice(0, 3),
    },
    amplitude: {
      events: amplitude.count,
      duplicatesDropped: amplitude.duplicates,
      identifications: amplitude.identifications,
      usersWithProperties: amplitude.userProperties.size,
      requests: amplitude.requests.length,
      byEventType: tally(amplitude.events.map((e) => e.event_type)),
      sample: amplitude.events.slice(0, 3),
    },
    export: { requests: exportApi.requests.map((r) => ({ ...r })) },
  });
  const receivedRoute = (req: IncomingMessage, res: ServerResponse): boolean => {
    if ((req.url ?? '').split('?')[0] !== '/_sandbox/received') return false;
    sendJson(res, 200, received());
    return true;
  };

  const server: RunningServer = await startServer([receivedRoute, exportApi.route, fme.route, amplitude.route], options.port ?? 0);
  return {
    url: server.url,
    port: server.port,
    firstHour,
    lastHour,
    events: total,
    config: {
      amplitude: {
        apiKey: SANDBOX_KEYS.amplitudeApiKey,
        secretKey: SANDBOX_KEYS.amplitudeSecretKey,
        exportBaseUrl: server.url,
        ingestionBaseUrl: server.url,
      },
      fme: { sdkKey: SANDBOX_KEYS.fmeSdkKey, eventsBaseUrl: `${server.url}/api` },
      exportEvents: {
        startAt: formatHour(firstHour),
        // The generated hours are complete at once: nothing is still arriving, so --end may be the last one.
        lagHours: 0,
        identities: [
          { trafficType: 'user', from: 'user_id' },
          { trafficType: 'anonymous', from: 'device_id' },
        ],
        properties: ['event_properties.*', 'user_properties.plan', 'country', 'platform'],
        valueFrom: 'event_properties.price',
      },
      // Short waits, so retries and throttling are quick to watch (the real APIs ask for 15-30 s).
      http: { retryBaseDelayMs: 200, retryMaxDelayMs: 2000 },
      pushImpressions: { throttleDelayMs: { httpapi: 1000, batch: 1000, identify: 1000 } },
      // Its own state per sandbox: the data is generated anew, and the state of a sandbox on another port would
      // belong to other hosts (the state file is per host and keys) and refuse --since-last-run.
      state: { dir: `.amp-fme-sandbox/${server.port}-${Date.now().toString(36)}` },
    },
    received,
    close: () => server.close(),
  };
}
