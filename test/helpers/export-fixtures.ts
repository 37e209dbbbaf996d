import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ExportClient } from '../../src/amplitude/export-client.js';
import { createHttp } from '../../src/http/client.js';
import { createMemoryLogger } from '../../src/log/logger.js';
import { createExportEmulator, type ExportEmulator, type ExportEmulatorOptions } from '../../src/sandbox/amplitude-export.js';
import { startServer, type RunningServer } from '../../src/sandbox/server.js';

export const API_KEY = 'test-api-key-0123456789';
export const SECRET_KEY = 'test-secret-key-9876543210';

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `2024-03-01 05:10:00.123000`: the Export API's time format (UTC, space separator). */
export function amplitudeTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}000`;
}

/** An exported row with the keys amp-fme reads; `uploadMs` decides the upload hour. */
export function exportRow(n: number, uploadMs: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    uuid: `00000000-0000-4000-8000-${pad(n, 12)}`,
    $insert_id: `ins-${n}`,
    event_type: n % 3 === 0 ? '[Amplitude] Start Session' : 'Purchase Completed',
    user_id: n % 5 === 0 ? null : `user-${n}`,
    device_id: `device-${n}`,
    amplitude_id: 1000 + n,
    event_time: amplitudeTime(uploadMs - 60_000),
    server_upload_time: amplitudeTime(uploadMs),
    event_properties: { n, price: n * 1.5, tags: ['a', 'ü'] },
    user_properties: {},
    session_id: -1,
    app: 187520,
    ...extra,
  };
}

export interface ExportSandbox {
  server: RunningServer;
  emulator: ExportEmulator;
  tmpDir: string;
  logger: ReturnType<typeof createMemoryLogger>;
  client(overrides?: { apiKey?: string; secretKey?: string; retries?: number }): ExportClient;
  /** Temp files left in `tmpDir`. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

/** Starts the Export emulator on 127.0.0.1 and gives clients for it with tiny retry delays. */
export async function startExportSandbox(options: Omit<ExportEmulatorOptions, 'apiKey' | 'secretKey'>): Promise<ExportSandbox> {
  const emulator = createExportEmulator({ apiKey: API_KEY, secretKey: SECRET_KEY, ...options });
  const server = await startServer([emulator.route]);
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'amp-fme-export-test-'));
  const logger = createMemoryLogger();
  const http = await createHttp({ timeoutMs: 5_000 });
  return {
    server,
    emulator,
    tmpDir,
    logger,
    client: (o = {}) =>
      new ExportClient({
        http,
        baseUrl: server.url,
        apiKey: o.apiKey ?? API_KEY,
        secretKey: o.secretKey ?? SECRET_KEY,
        retry: { retries: o.retries ?? 4, baseDelayMs: 1, maxDelayMs: 5 },
        logger,
        tmpDir,
        region: 'us',
      }),
    leftovers: () => readdir(tmpDir),
    close: async () => {
      await server.close();
      await rm(tmpDir, { recursive: true, force: true });
    },
  };
}
