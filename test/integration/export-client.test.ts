import { spawnSync } from 'node:child_process';
import { utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readArchiveLines } from '../../src/amplitude/archive.js';
import { ExportClient, ExportWindowTooLargeError, exportWindows, type ExportArchive, type ExportedWindow } from '../../src/amplitude/export-client.js';
import { HOUR_MS, describeWindow, type HourWindow } from '../../src/amplitude/hours.js';
import { FatalRemoteError, InterruptedError, RetriableRemoteError } from '../../src/errors.js';
import { createHttp } from '../../src/http/client.js';
import { ExportStore, type ExportSource } from '../../src/sandbox/amplitude-export.js';
import { API_KEY, SECRET_KEY, exportRow, startExportSandbox, type ExportSandbox } from '../helpers/export-fixtures.js';

const DAY = Date.UTC(2024, 2, 1); // 2024-03-01T00 UTC
const hour = (h: number): number => DAY + h * HOUR_MS;
const win = (from: number, to: number): HourWindow => ({ start: hour(from), end: hour(to) });

/** Three rows in each of hours 0..23 of DAY (uploaded at :10, :20, :30), uuids numbered in order. */
function dayStore(): ExportStore {
  const store = new ExportStore();
  let n = 0;
  for (let h = 0; h < 24; h++) {
    store.add([10, 20, 30].map((m) => exportRow(n++, hour(h) + m * 60_000)));
  }
  return store;
}

async function uuidsOf(archive: ExportArchive | undefined): Promise<string[]> {
  if (!archive) return [];
  const out: string[] = [];
  for await (const c of readArchiveLines(archive.path)) {
    for (const line of c.lines) if (line) out.push((JSON.parse(line) as { uuid: string }).uuid);
  }
  return out;
}

async function collect(sb: ExportSandbox, w: HourWindow): Promise<{ windows: string[]; uuids: string[] }> {
  const windows: string[] = [];
  const uuids: string[] = [];
  for await (const part of exportWindows(sb.client(), w) as AsyncGenerator<ExportedWindow>) {
    windows.push(describeWindow(part.window));
    uuids.push(...(await uuidsOf(part.archive)));
    await part.archive?.dispose();
  }
  return { windows, uuids };
}

const expectedUuids = (from: number, to: number): string[] =>
  Array.from({ length: (to - from + 1) * 3 }, (_, i) => exportRow(from * 3 + i, 0).uuid as string);

let sb: ExportSandbox | undefined;
afterEach(async () => {
  await sb?.close();
  sb = undefined;
});

describe('ExportClient against the Export API emulator', () => {
  it.each([
    { method: 'stored', dataDescriptor: false, zip64: false },
    { method: 'deflate', dataDescriptor: true, zip64: false },
    { method: 'stored', dataDescriptor: true, zip64: true },
  ] as const)('downloads a day (%j) and every row comes back exactly once', async (zip) => {
    sb = await startExportSandbox({ source: dayStore(), zip, entriesPerHour: 3 });
    const archive = await sb.client().fetchWindow(win(0, 23));
    expect(archive).toBeDefined();
    expect(archive?.bytes).toBeGreaterThan(0);
    expect(archive?.path.startsWith(sb.tmpDir)).toBe(true);
    expect(archive?.path).toMatch(new RegExp(`amp-fme-export-${process.pid}-[0-9a-f]+\\.zip$`));
    const uuids = await uuidsOf(archive);
    expect([...uuids].sort()).toEqual(expectedUuids(0, 23).sort());
    expect(sb.emulator.requests).toEqual([{ start: '20240301T00', end: '20240301T23', status: 200 }]);
    await archive?.dispose();
    expect(await sb.leftovers()).toEqual([]);
  });

  it('sends only the requested hours (both ends inclusive)', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    const archive = await sb.client().fetchWindow(win(5, 6));
    expect((await uuidsOf(archive)).sort()).toEqual(expectedUuids(5, 6).sort());
    await archive?.dispose();
  });

  it('treats 404 "Raw data files were not found." as an empty window, with no file left', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    const archive = await sb.client().fetchWindow({ start: Date.UTC(2024, 3, 1), end: Date.UTC(2024, 3, 1, 23) });
    expect(archive).toBeUndefined();
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([404]);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('retries a 200 that is an empty zip, never taking it as "no data" (Amplitude says that with a 404)', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    // End-of-central-directory record only: a zip with no entries, as a proxy might answer.
    sb.emulator.faults.push({ status: 200, body: `PK\x05\x06${'\0'.repeat(18)}`, headers: { 'content-type': 'application/zip' } });
    const archive = await sb.client().fetchWindow(win(0, 0));
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([200, 200]);
    expect(archive).toBeDefined(); // the second answer, the hour's real export
    await archive?.dispose();
    expect(await sb.leftovers()).toEqual([]);
  });

  it('does not take a 404 without Amplitude\'s text for "no data": it is fatal and names the URL setting', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 404, body: 'Not found' });
    const err = await sb.client().fetchWindow(win(0, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalRemoteError);
    expect((err as Error).message).toContain('amplitude.exportBaseUrl');
    expect(sb.emulator.requests).toHaveLength(1);
  });

  it('fails at once on 403, naming both causes (credentials, region) and never the secrets', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    const secret = 'wrong-secret-key-abcdef';
    let caught: unknown;
    try {
      await sb.client({ secretKey: secret }).fetchWindow(win(0, 1));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FatalRemoteError);
    const message = (caught as Error).message;
    expect(message).toMatch(/API key/);
    expect(message).toMatch(/secret key/);
    expect(message).toContain('amplitude.region');
    expect(message).toMatch(/EU/);
    for (const s of [secret, API_KEY, SECRET_KEY, Buffer.from(`${API_KEY}:${secret}`).toString('base64')]) expect(message).not.toContain(s);
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([403]);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('reports 400 as a window too large (fetchWindow), for exportWindows to halve', async () => {
    sb = await startExportSandbox({ source: dayStore(), maxHoursPerRequest: 6 });
    await expect(sb.client().fetchWindow(win(0, 23))).rejects.toBeInstanceOf(ExportWindowTooLargeError);
    expect(sb.emulator.requests).toHaveLength(1);
  });

  it('halves a too-large window down to hours and yields the parts in hour order', async () => {
    sb = await startExportSandbox({ source: dayStore(), maxHoursPerRequest: 5 });
    const { windows, uuids } = await collect(sb, win(0, 23));
    // 24 -> 12+12 -> 6+6 per half -> 3+3 each.
    expect(windows).toEqual([
      '20240301T00..20240301T02', '20240301T03..20240301T05', '20240301T06..20240301T08', '20240301T09..20240301T11',
      '20240301T12..20240301T14', '20240301T15..20240301T17', '20240301T18..20240301T20', '20240301T21..20240301T23',
    ]);
    expect([...uuids].sort()).toEqual(expectedUuids(0, 23).sort());
    expect(uuids).toHaveLength(72);
    const asked = sb.emulator.requests.map((r) => `${r.start}..${r.end}:${r.status}`);
    expect(asked.slice(0, 4)).toEqual(['20240301T00..20240301T23:400', '20240301T00..20240301T11:400', '20240301T00..20240301T05:400', '20240301T00..20240301T02:200']);
    const halvings = sb.logger.lines.filter((l) => /halving/.test(l.message));
    expect(halvings.map((l) => l.fields?.window)).toEqual([
      '20240301T00..20240301T23', '20240301T00..20240301T11', '20240301T00..20240301T05', '20240301T06..20240301T11',
      '20240301T12..20240301T23', '20240301T12..20240301T17', '20240301T18..20240301T23',
    ]);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('yields empty parts (404) in their place among the others', async () => {
    const store = new ExportStore();
    store.add([exportRow(1, hour(0) + 1000), exportRow(2, hour(3) + 1000)]);
    sb = await startExportSandbox({ source: store, maxHoursPerRequest: 1 });
    const parts: { w: string; n: number }[] = [];
    for await (const part of exportWindows(sb.client(), win(0, 3))) {
      parts.push({ w: describeWindow(part.window), n: (await uuidsOf(part.archive)).length });
      await part.archive?.dispose();
    }
    expect(parts).toEqual([
      { w: '20240301T00', n: 1 },
      { w: '20240301T01', n: 0 },
      { w: '20240301T02', n: 0 },
      { w: '20240301T03', n: 1 },
    ]);
  });

  it.each([
    { status: 400, singleHourRequests: 1 },
    // A single hour's 504 may be a passing gateway timeout: it is asked again (retries: 2) before it is given up.
    { status: 504, singleHourRequests: 3 },
  ] as const)('a single hour that still answers $status is fatal and points to the S3 export', async ({ status, singleHourRequests }) => {
    sb = await startExportSandbox({ source: dayStore(), hugeHours: [hour(2)], tooLargeStatus: status });
    const client = sb.client({ retries: 2 });
    const seen: string[] = [];
    let caught: unknown;
    try {
      for await (const part of exportWindows(client, win(0, 3))) {
        seen.push(describeWindow(part.window));
        await part.archive?.dispose();
      }
    } catch (err) {
      caught = err;
    }
    expect(seen).toEqual(['20240301T00..20240301T01']);
    expect(caught).toBeInstanceOf(FatalRemoteError);
    const message = (caught as Error).message;
    expect(message).toContain('20240301T02');
    expect(message).toMatch(/S3/);
    expect((caught as FatalRemoteError).code).toBe('EXPORT_HOUR_TOO_LARGE');
    if (status === 504) expect(message).toContain('answered 504 3 times');
    expect(sb.emulator.requests.map((r) => `${r.start}..${r.end}:${r.status}`)).toEqual([
      `20240301T00..20240301T03:${status}`,
      '20240301T00..20240301T01:200',
      `20240301T02..20240301T03:${status}`,
      ...Array.from({ length: singleHourRequests }, () => `20240301T02..20240301T02:${status}`),
    ]);
    // The windows of several hours are halved at once, with no retry; only the single hour's 504s are retried.
    expect(sb.logger.lines.filter((l) => l.level === 'warn')).toHaveLength(singleHourRequests - 1);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('retries a single hour that answers 504 once (a passing gateway timeout), then delivers it', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 504, body: 'Gateway Timeout', headers: { 'retry-after': '0' } });
    const { windows, uuids } = await collect(sb, win(2, 2));
    expect(windows).toEqual(['20240301T02']);
    expect([...uuids].sort()).toEqual(expectedUuids(2, 2).sort());
    expect(sb.emulator.requests.map((r) => `${r.start}..${r.end}:${r.status}`)).toEqual(['20240301T02..20240301T02:504', '20240301T02..20240301T02:200']);
    const warns = sb.logger.lines.filter((l) => l.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]?.fields?.window).toBe('20240301T02');
    expect(String(warns[0]?.fields?.reason)).toContain('504');
    expect(sb.logger.lines.some((l) => /halving/.test(l.message))).toBe(false);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('gives a single hour that answers 504 to every attempt up as too large after retries+1 requests', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 504, body: 'Gateway Timeout' }, 100);
    const client = sb.client({ retries: 3 });
    const fetched = await client.fetchWindow(win(2, 2)).catch((e: unknown) => e);
    expect(fetched).toBeInstanceOf(ExportWindowTooLargeError);
    expect((fetched as ExportWindowTooLargeError).status).toBe(504);
    expect(sb.emulator.requests).toHaveLength(4);
    sb.emulator.requests.length = 0;
    const err = await (async () => {
      for await (const part of exportWindows(client, win(2, 2))) await part.archive?.dispose();
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalRemoteError);
    expect((err as FatalRemoteError).code).toBe('EXPORT_HOUR_TOO_LARGE');
    expect((err as Error).message).toContain('answered 504 4 times');
    expect((err as Error).message).toContain('--skip-to 20240301T03');
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([504, 504, 504, 504]);
    expect(sb.logger.lines.filter((l) => l.level === 'warn')).toHaveLength(6);
  });

  it('stops promptly while waiting to ask a single hour that answered 504 again', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 504, body: 'Gateway Timeout', headers: { 'retry-after': '3600' } }, 100);
    const ac = new AbortController();
    // Retry-After (an hour) is capped by the policy's maxDelayMs (60 s here): the stop must end the wait.
    const client = new ExportClient({
      http: await createHttp({ timeoutMs: 5_000 }),
      baseUrl: sb.server.url,
      apiKey: API_KEY,
      secretKey: SECRET_KEY,
      retry: { retries: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
      logger: sb.logger,
      tmpDir: sb.tmpDir,
    });
    setTimeout(() => ac.abort(new Error('stop requested')), 50);
    const started = Date.now();
    const err = await (async () => {
      for await (const part of exportWindows(client, win(2, 2), ac.signal)) await part.archive?.dispose();
    })().catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([504]);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('a 403 names the region to check when the region picks the host, and the base URL when the config pins it', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    const refused = async (o: { region?: 'us' | 'eu'; baseUrlConfigured?: boolean }): Promise<string> => {
      const client = new ExportClient({ http: await createHttp({ timeoutMs: 5_000 }), baseUrl: sb!.server.url, apiKey: API_KEY, secretKey: 'not-the-secret', retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1 }, tmpDir: sb!.tmpDir, ...o });
      const err = await client.fetchWindow(win(0, 0)).catch((e: unknown) => e);
      expect((err as FatalRemoteError).code).toBe('AMPLITUDE_AUTH');
      return (err as Error).message;
    };
    expect(await refused({ region: 'eu' })).toMatch(/or the project is in the other data region than the configured amplitude\.region "eu" \(a US project must use amplitude\.region "us"\)\.$/);
    expect(await refused({ region: 'eu', baseUrlConfigured: true })).toMatch(
      /or amplitude\.exportBaseUrl \(http:\/\/127\.0\.0\.1:\d+\) is not the Export API host of the project's data region \(amplitude\.region, "eu", has no effect while it is set\)\.$/,
    );
  });

  it('retries a 200 whose body is an HTML error page, then succeeds', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 200, body: '<!DOCTYPE html><html><body>Upstream error</body></html>', headers: { 'content-type': 'text/html' } });
    sb.emulator.faults.push({ status: 200, body: '' });
    const archive = await sb.client().fetchWindow(win(0, 0));
    expect((await uuidsOf(archive)).sort()).toEqual(expectedUuids(0, 0).sort());
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([200, 200, 200]);
    const retries = sb.logger.lines.filter((l) => l.level === 'warn');
    expect(retries).toHaveLength(2);
    expect(String(retries[0]?.fields?.reason)).toMatch(/not a zip/);
    expect(retries[0]?.fields?.window).toBe('20240301T00');
    await archive?.dispose();
    expect(await sb.leftovers()).toEqual([]);
  });

  it('retries a truncated zip (a 200 that ends cleanly but short), then succeeds', async () => {
    sb = await startExportSandbox({ source: dayStore(), zip: { method: 'deflate', zip64: true } });
    sb.emulator.faults.push({ status: 200, truncateAt: 300 });
    const archive = await sb.client().fetchWindow(win(0, 23));
    expect(await uuidsOf(archive)).toHaveLength(72);
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([200, 200]);
    expect(String(sb.logger.lines.find((l) => l.level === 'warn')?.fields?.reason)).toMatch(/cannot be read/);
    await archive?.dispose();
    expect(await sb.leftovers()).toEqual([]);
  });

  it('never takes a non-zip 200 for an empty window: it fails once retries run out', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 200, body: 'OK' }, 10);
    const err = await sb.client({ retries: 2 }).fetchWindow(win(0, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriableRemoteError);
    expect((err as Error).message).toMatch(/not a zip.*gave up after 3 attempts/);
    expect(sb.emulator.requests).toHaveLength(3);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('retries 429 (honouring Retry-After), 500, 503 and 408 (a proxy timing the request out), then succeeds', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 429, body: 'Too many requests', headers: { 'retry-after': '2' } });
    sb.emulator.faults.push({ status: 503, body: 'Service Unavailable' });
    sb.emulator.faults.push({ status: 500, body: 'Internal Server Error' });
    sb.emulator.faults.push({ status: 408, body: 'Request Timeout' });
    const archive = await sb.client().fetchWindow(win(0, 1));
    expect(await uuidsOf(archive)).toHaveLength(6);
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([429, 503, 500, 408, 200]);
    const warns = sb.logger.lines.filter((l) => l.level === 'warn');
    // Retry-After (2 s) is above the test policy's 5 ms cap: the delay sits at the cap.
    expect(warns[0]?.fields?.delayMs).toBe(5);
    expect(String(warns[0]?.fields?.reason)).toContain('429');
    await archive?.dispose();
  });

  it('retries a connection reset, then succeeds', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 0, reset: true });
    const archive = await sb.client().fetchWindow(win(0, 0));
    expect(await uuidsOf(archive)).toHaveLength(3);
    expect(sb.emulator.requests.map((r) => r.status)).toEqual([0, 200]);
    expect(String(sb.logger.lines.find((l) => l.level === 'warn')?.fields?.reason)).toMatch(/network error/);
    await archive?.dispose();
    expect(await sb.leftovers()).toEqual([]);
  });

  it('removes temp files when every attempt fails', async () => {
    sb = await startExportSandbox({ source: dayStore(), zip: { method: 'stored' } });
    sb.emulator.faults.push({ status: 200, truncateAt: 1000 }, 5);
    await expect(sb.client({ retries: 2 }).fetchWindow(win(0, 23))).rejects.toBeInstanceOf(RetriableRemoteError);
    expect(sb.emulator.requests).toHaveLength(3);
    expect(await sb.leftovers()).toEqual([]);
  });

  it('stops when the signal is aborted, leaving no temp file', async () => {
    sb = await startExportSandbox({ source: dayStore() });
    sb.emulator.faults.push({ status: 503 }, 100);
    const ac = new AbortController();
    const client = sb.client({ retries: 100 });
    setTimeout(() => ac.abort(new Error('stop requested')), 30);
    await expect(client.fetchWindow(win(0, 0), ac.signal)).rejects.toThrow(/stop requested|abort/i);
    expect(await sb.leftovers()).toEqual([]);
  });
});

describe('downloads left by killed runs', () => {
  /** A pid no process has: that of a child that has exited. */
  const deadPid = (): number => {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    return Number(child.stdout);
  };

  it('are removed by the next run once an hour old; live, recent, own and foreign files are left', async () => {
    sb = await startExportSandbox({ source: new ExportStore() });
    const dead = deadPid();
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR_MS);
    const file = (name: string, bytes: number, old: boolean): string => {
      const f = path.join(sb!.tmpDir, name);
      writeFileSync(f, Buffer.alloc(bytes));
      if (old) utimesSync(f, twoHoursAgo, twoHoursAgo);
      return name;
    };
    file(`amp-fme-export-${dead}-0123456789ab.zip`, 1500, true);
    const keep = [
      file(`amp-fme-export-${dead}-ba9876543210.zip`, 10, false), // dead, but changed within the hour
      file(`amp-fme-export-${process.pid}-0123456789ab.zip`, 10, true), // this process
      file(`amp-fme-export-${process.ppid}-0123456789ab.zip`, 10, true), // a live process
      file(`amp-fme-export-${dead}-0123456789ab.zip.txt`, 10, true), // not a download
      file(`other-${dead}.zip`, 10, true),
    ];
    const removed = await sb.client().removeStaleDownloads();
    expect(removed).toEqual({ files: 1, bytes: 1500 });
    expect((await sb.leftovers()).sort()).toEqual(keep.sort());
    expect(sb.logger.lines.some((l) => l.level === 'info' && l.message.includes('removed 1 export download(s) left by killed runs'))).toBe(true);
    expect(await sb.client().removeStaleDownloads()).toEqual({ files: 0, bytes: 0 });
  });
});

describe('Export API emulator', () => {
  it('rejects malformed and oversized ranges with 400, and bad auth with 403', async () => {
    const source: ExportSource = () => [];
    sb = await startExportSandbox({ source });
    const auth = `Basic ${Buffer.from(`${API_KEY}:${SECRET_KEY}`).toString('base64')}`;
    const get = async (q: string, headers: Record<string, string> = { authorization: auth }): Promise<[number, string]> => {
      const res = await fetch(`${sb?.server.url}/api/2/export?${q}`, { headers });
      return [res.status, await res.text()];
    };
    expect((await get('start=2024031T00&end=20240301T01'))[0]).toBe(400);
    expect((await get('start=20240301T1&end=20240301T01'))[0]).toBe(400);
    expect((await get('start=20240230T00&end=20240301T01'))[0]).toBe(400);
    expect((await get('start=20240301T05&end=20240301T04'))[0]).toBe(400);
    expect((await get('start=20230101T00&end=20240102T00'))[0]).toBe(400);
    expect(await get('start=20240301T00&end=20240301T01')).toEqual([404, 'Raw data files were not found.']);
    expect(await get('start=20240301T00&end=20240301T01', {})).toEqual([403, 'Invalid API Key']);
  });

  it('names entries like Amplitude (hour not padded, partitions not sequential), several per hour', async () => {
    const store = new ExportStore().add(Array.from({ length: 10 }, (_, i) => exportRow(i, Date.UTC(2021, 1, 22, 7, i))));
    sb = await startExportSandbox({ source: store, entriesPerHour: 3, projectId: 4242 });
    const archive = await sb.client().fetchWindow({ start: Date.UTC(2021, 1, 22, 7), end: Date.UTC(2021, 1, 22, 7) });
    const entries = new Set<string>();
    for await (const c of readArchiveLines(archive?.path ?? '')) entries.add(c.entry);
    expect(entries.size).toBe(3);
    for (const e of entries) expect(e).toMatch(/^4242\/4242_2021-02-22_7#\d+\.json\.gz$/);
    const partitions = [...entries].map((e) => Number(/#(\d+)/.exec(e)?.[1])).sort((a, b) => a - b);
    expect(partitions[1]! - partitions[0]!).toBeGreaterThan(1);
    expect((await uuidsOf(archive)).sort()).toEqual(Array.from({ length: 10 }, (_, i) => exportRow(i, 0).uuid as string).sort());
    await archive?.dispose();
  });

  it('spreads a big hour over bounded entries', async () => {
    const rows = Array.from({ length: 2500 }, (_, i) => JSON.stringify(exportRow(i, Date.UTC(2024, 0, 1, 0, 0, i % 60))));
    sb = await startExportSandbox({ source: (h) => (h === Date.UTC(2024, 0, 1) ? rows : []), entriesPerHour: 2, maxRowsPerEntry: 300 });
    const archive = await sb.client().fetchWindow({ start: Date.UTC(2024, 0, 1), end: Date.UTC(2024, 0, 1, 5) });
    const perEntry = new Map<string, number>();
    for await (const c of readArchiveLines(archive?.path ?? '')) perEntry.set(c.entry, (perEntry.get(c.entry) ?? 0) + c.lines.filter(Boolean).length);
    expect([...perEntry.values()].every((n) => n <= 300)).toBe(true);
    expect([...perEntry.values()].reduce((a, b) => a + b, 0)).toBe(2500);
    await archive?.dispose();
  });
});
