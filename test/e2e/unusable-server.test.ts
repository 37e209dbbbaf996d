import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHourArg } from '../../src/amplitude/hours.js';
import { generateExportRows } from '../../src/sandbox/generate.js';
import { logLines, runCli, startWorld, type World } from '../helpers/world.js';

/**
 * A base URL that reaches a server amp-fme cannot talk to: an HTTPS proxy whose certificate Node does not trust (a
 * self-signed one, a TLS-inspecting proxy's), or a port where something other than HTTP answers. No retry fixes
 * either: the run stops (exit 1) with a message naming what to check, not as "a bug in amp-fme" with a stack trace.
 */
const TLS = join(__dirname, '../fixtures/tls');

let world: World | undefined;
const closers: (() => void)[] = [];
afterEach(async () => {
  await world?.close();
  world = undefined;
  for (const close of closers.splice(0)) close();
});

/** An HTTPS server with a self-signed certificate that would accept every request (202). */
async function selfSignedServer(): Promise<string> {
  const server = https.createServer({ key: readFileSync(join(TLS, 'self-signed.key.pem')), cert: readFileSync(join(TLS, 'self-signed.cert.pem')) }, (_req, res) => {
    res.writeHead(202).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A TCP server that answers every request with an SSH banner: not HTTP. */
async function notHttpServer(): Promise<string> {
  const server = net.createServer((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH_9.6\r\n')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A plain-HTTP server that would accept every request (202), for an https:// URL given by mistake. */
async function plainHttpServer(): Promise<string> {
  const server = http.createServer((_req, res) => res.writeHead(202).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function exportOneHour(config: Record<string, Record<string, unknown>>) {
  world = await startWorld();
  world.store.add(generateExportRows(parseHourArg('20240301T05', 'start'), 5, { users: 5 }));
  // device_id: every generated row has one, so each hour has events to send.
  world.writeConfig({ exportEvents: { identities: [{ trafficType: 'user', from: 'device_id' }] }, ...config });
  const r = await runCli(['export-events', '--start', '20240301T05', '--end', '20240301T05'], world.dir);
  const error = logLines(r.stderr).find((l) => l.level === 'error');
  return { r, error };
}

describe('a base URL that reaches a server amp-fme cannot talk to', () => {
  it('fme.eventsBaseUrl behind a certificate Node does not trust: exit 1, says so and how to trust the CA', async () => {
    const url = await selfSignedServer();
    const { r, error } = await exportOneHour({ fme: { eventsBaseUrl: `${url}/api` } });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
    expect(error?.code).toBe('TLS_CERTIFICATE');
    expect(error?.message).toMatch(new RegExp(`^FME events API: the TLS certificate of ${url.replace(/\./g, '\\.')} is not trusted \\(DEPTH_ZERO_SELF_SIGNED_CERT`));
    expect(error?.message).toMatch(/NODE_EXTRA_CA_CERTS/);
  });

  it('amplitude.exportBaseUrl behind a certificate Node does not trust: the same, for the Export API, not retried', async () => {
    const url = await selfSignedServer();
    const { r, error } = await exportOneHour({ amplitude: { exportBaseUrl: url } });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
    expect(error?.code).toBe('TLS_CERTIFICATE');
    expect(error?.message).toMatch(/^Amplitude export of 20240301T05: the TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted/);
    expect(logLines(r.stderr).filter((l) => /retrying/.test(l.message))).toEqual([]);
  });

  it('fme.eventsBaseUrl at a port where something else than HTTP answers: exit 1, names the URL to check', async () => {
    const url = await notHttpServer();
    const { r, error } = await exportOneHour({ fme: { eventsBaseUrl: `${url}/api` } });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
    expect(error?.code).toBe('NOT_HTTP');
    expect(error?.message).toMatch(new RegExp(`^FME events API: ${url.replace(/\./g, '\\.')} did not answer in HTTP \\(HPE_`));
    expect(world?.fme.count).toBe(0);
  });

  it('fme.eventsBaseUrl with https:// at a plain-HTTP port: exit 1 at once, names the URL and the scheme to check', async () => {
    const url = await plainHttpServer();
    const { r, error } = await exportOneHour({ fme: { eventsBaseUrl: `${url}/api` } });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/a bug in amp-fme|\n\s+at /);
    expect(error?.code).toBe('NOT_TLS');
    expect(error?.message).toMatch(new RegExp(`^FME events API: ${url.replace(/\./g, '\\.')} did not answer in TLS .*http:// or https://`));
    expect(logLines(r.stderr).filter((l) => /retrying/.test(l.message))).toEqual([]);
  });
});
