import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { formatHour, HOUR_MS } from '../../src/amplitude/hours.js';
import { createExportEmulator, ExportStore } from '../../src/sandbox/amplitude-export.js';
import { createFmeEventsEmulator } from '../../src/sandbox/fme-events.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';
import { FAST_HTTP, KEYS, runCli } from '../helpers/world.js';
import { tempDir } from '../helpers/temp-dir.js';

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** `Sun Nov  6 08:49:37 1994`: RFC 9110's obsolete asctime form of an HTTP date, GMT though it names no zone. */
function asctime(ms: number): string {
  const d = new Date(ms);
  const utc = d.toUTCString(); // "Sun, 06 Nov 1994 08:49:37 GMT"
  return `${utc.slice(0, 3)} ${utc.slice(8, 11)} ${String(d.getUTCDate()).padStart(2, ' ')} ${utc.slice(17, 25)} ${d.getUTCFullYear()}`;
}

describe("Amplitude's Date header in asctime form (a proxy in front of the Export API)", () => {
  it('is read as GMT under a TZ east of UTC: a right clock is not taken for one 5.5 hours ahead', async () => {
    const store = new ExportStore();
    const hour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - 5 * HOUR_MS; // settled (lag 3 h)
    const at = new Date(hour + 60_000).toISOString().replace('T', ' ').replace('Z', '');
    store.add([{ uuid: 'u1', event_type: 'A', user_id: 'user-1', event_time: at, server_upload_time: at }]);
    const exportApi = createExportEmulator({ apiKey: KEYS.amplitudeApiKey, secretKey: KEYS.amplitudeSecretKey, source: store });
    const fme = createFmeEventsEmulator({ sdkKey: KEYS.fmeSdkKey });
    // Sets the header and lets the emulators answer: Node then sends no Date of its own.
    const dateRoute = (_req: IncomingMessage, res: ServerResponse): boolean => {
      res.setHeader('date', asctime(Date.now()));
      return false;
    };
    server = await startServer([dateRoute, exportApi.route, fme.route]);
    const dir = tempDir('asctime');
    writeFileSync(
      join(dir, 'amp-fme.config.json'),
      JSON.stringify({ amplitude: { exportBaseUrl: server.url }, fme: { eventsBaseUrl: `${server.url}/api` }, http: FAST_HTTP }),
    );
    const r = await runCli(['export-events', '--since-last-run', '--start', formatHour(hour), '--json'], dir, { TZ: 'Asia/Kolkata' });
    expect(r.stderr).not.toContain('ahead of Amplitude');
    expect(r.code, r.stderr).toBe(0);
    expect(fme.events.map((e) => e.key)).toEqual(['user-1']);
  });
});
