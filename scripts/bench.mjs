#!/usr/bin/env node
/**
 * amp-fme benchmark (`npm run bench`): generates realistic data once, runs the real CLI against loopback
 * emulators and prints one table. See README "Performance".
 *
 *   node scripts/bench.mjs [--events N[,N...]] [--impressions N[,N...]] [--only export|impressions]
 *                          [--quick] [--runs N] [--profile DIR] [--workers N]
 *
 * - export-events: N Amplitude export rows (full 55-key rows, nested properties, 4 gzip entries per hour,
 *   50,000 rows per hour, 10-hour windows) are written ONCE to zip files (cached in $TMPDIR/amp-fme-bench),
 *   served as they are by the export emulator (so zip building is not timed) to
 *   `amp-fme export-events --start .. --end .. --json`, which sends to an FME emulator that only counts.
 * - push-impressions: N webhook impressions as a gzip'd NDJSON file and a gzip'd JSON array file, pushed
 *   to the Batch API emulator (count-only).
 * - floor: a separate Node process that only reads the same input (unzip + gunzip + split + JSON.parse for
 *   exports; read + gunzip + JSON.parse for impressions): how fast this machine goes before any mapping or
 *   sending.
 * The emulators run in this process, the CLI in its own (its CPU time and peak RSS are its alone), but on
 * a 2-core machine they still compete for the cores: the figures are end to end, emulators included.
 * `--events 1000000,3000000` runs both sizes and prints the RSS ratio (memory must not grow with input).
 * Each case runs the floor and the CLI alternately, `--runs N` times each (default 2; 1 with --quick), and
 * keeps the fastest of each side: on a shared machine one run can be slowed by a third, and both sides get
 * the same treatment, measured close together in time. Peak RSS is the highest of the CLI's runs.
 * `--profile DIR` runs the CLI with `node --cpu-prof --cpu-prof-dir DIR`.
 * `--workers N` sets pushImpressions.workers (decode threads; default: the CLI's own choice).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGunzip, createGzip, gzip } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const BIN = join(ROOT, 'bin', 'amp-fme.js');
const gzipAsync = promisify(gzip);

const KEYS = { apiKey: 'bench-amp-api-key-0123', secretKey: 'bench-amp-secret-key-0123', sdkKey: 'bench-fme-sdk-key-0123' };
const HOUR_MS = 3_600_000;
const ROWS_PER_HOUR = 50_000;
const ENTRIES_PER_HOUR = 4;
const WINDOW_HOURS = 10;
// 2024-03-01T00:00Z: far enough in the past that the explicit range is settled (no lag applies).
const FIRST_HOUR = Date.UTC(2024, 2, 1, 0);
// Bump when the generated data changes, so stale cached archives are not reused.
const DATA_VERSION = 1;

// ---------------------------------------------------------------------------------------------- args

function parseArgs(argv) {
  const opts = { events: [1_000_000], impressions: [1_000_000], only: undefined, quick: false, runs: undefined, profile: undefined, workers: undefined, child: undefined };
  const sizes = (v, flag) => {
    const list = String(v ?? '').split(',').map((s) => Number(s.replace(/_/g, '')));
    if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${flag} takes a positive integer (or a comma list)`);
    return list;
  };
  const count = (v, flag, min) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} takes one integer of ${min} or more`);
    return n;
  };
  let explicitEvents = false;
  let explicitImpressions = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--events') (opts.events = sizes(argv[++i], a)), (explicitEvents = true);
    else if (a === '--impressions') (opts.impressions = sizes(argv[++i], a)), (explicitImpressions = true);
    else if (a === '--only') opts.only = argv[++i];
    else if (a === '--quick') opts.quick = true;
    else if (a === '--runs') opts.runs = count(argv[++i], a, 1);
    else if (a === '--profile') opts.profile = resolve(argv[++i] ?? '');
    else if (a === '--workers') opts.workers = count(argv[++i], a, 0);
    else if (a === '--floor-export' || a === '--floor-impressions') opts.child = { kind: a, files: argv.slice(i + 1) }, (i = argv.length);
    else throw new Error(`unknown argument ${a}`);
  }
  if (opts.only !== undefined && opts.only !== 'export' && opts.only !== 'impressions') throw new Error('--only takes export or impressions');
  if (opts.quick) {
    if (!explicitEvents) opts.events = [20_000];
    if (!explicitImpressions) opts.impressions = [20_000];
  }
  opts.runs ??= opts.quick ? 1 : 2;
  return opts;
}

// ------------------------------------------------------------------------------------------- helpers

const fmt = (n) => Math.round(n).toLocaleString('en-US');
const mb = (kb) => (kb / 1024).toFixed(0);

function cacheDir() {
  const dir = join(tmpdir(), 'amp-fme-bench');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs a command to completion; stdout and stderr collected. */
function run(cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

const HAVE_TIME = existsSync('/usr/bin/time');

/**
 * Runs `node args` and measures its wall time, CPU time and peak RSS: with GNU time when present (exact
 * maximum RSS), otherwise by polling /proc/<pid>/status VmHWM (the kernel's own high-water mark).
 */
async function measureNode(nodeArgs, options) {
  const started = process.hrtime.bigint();
  const ownCpu = process.cpuUsage();
  let result;
  let peakKb = 0;
  let cpuS;
  if (HAVE_TIME) {
    const timeFile = join(options.cwd ?? tmpdir(), `time-${process.pid}-${Date.now()}.txt`);
    result = await run('/usr/bin/time', ['-f', '%M %U %S', '-o', timeFile, process.execPath, ...nodeArgs], options);
    const [rss, user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    rmSync(timeFile, { force: true });
    peakKb = rss;
    cpuS = user + sys;
  } else {
    const child = spawn(process.execPath, nodeArgs, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // The process has just exited.
      }
    }, 50);
    const [code, signal] = await once(child, 'close');
    clearInterval(poll);
    result = { code, signal, stdout, stderr };
  }
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const own = process.cpuUsage(ownCpu);
  // CPU this process (the emulators) used meanwhile: it competes with the CLI for the cores.
  const emulatorCpuS = (own.user + own.system) / 1e6;
  return { ...result, wallMs, peakKb, cpuS, emulatorCpuS };
}

/** One floor child process (see floorExport, floorImpressions). */
async function measureFloor(args) {
  const floor = await measureNode([fileURLToPath(import.meta.url), ...args], { cwd: tmpdir() });
  if (floor.code !== 0) throw new Error(`floor run ${args[0]} failed: ${floor.stderr}`);
  return { floor, floorResult: JSON.parse(floor.stdout) };
}

/**
 * The floor and the CLI (`runCli`, resolving to `{ cli, summary, check }`) run alternately, `opts.runs`
 * times each; the fastest run of each side is kept, with the highest peak RSS of the CLI's runs.
 */
async function alternate(opts, floorArgs, runCli) {
  let floor;
  let cli;
  let peakKb = 0;
  for (let i = 0; i < opts.runs; i++) {
    const f = await measureFloor(floorArgs);
    if (!floor || f.floorResult.ms < floor.floorResult.ms) floor = f;
    const c = await runCli();
    peakKb = Math.max(peakKb, c.cli.peakKb);
    if (!cli || c.cli.wallMs < cli.cli.wallMs) cli = c;
  }
  return { ...floor, ...cli, peakKb };
}

async function startEmulators(routes) {
  const { startServer } = await import(join(DIST, 'sandbox/server.js'));
  return startServer(routes);
}

// ------------------------------------------------------------------------------------ export-events

/** `187520/187520_2024-03-01_5#101.json.gz`, like the Export API (hour not padded). */
function entryName(hourMs, partition) {
  const d = new Date(hourMs);
  const day = d.toISOString().slice(0, 10);
  return `187520/187520_${day}_${d.getUTCHours()}#${partition}.json.gz`;
}

/**
 * Plans the export of `events` rows: hours of ROWS_PER_HOUR rows (the last one shorter), cut into windows
 * of WINDOW_HOURS hours, one zip file per window. Returns the windows with their file and expected counts,
 * generating files that are not cached yet.
 */
async function prepareExport(events) {
  const { generateExportRows } = await import(join(DIST, 'sandbox/generate.js'));
  const { ZipWriter } = await import(join(DIST, 'sandbox/zip-writer.js'));
  const hours = Math.ceil(events / ROWS_PER_HOUR);
  const rowsIn = (h) => Math.min(ROWS_PER_HOUR, events - h * ROWS_PER_HOUR);
  const windows = [];
  for (let w = 0; w * WINDOW_HOURS < hours; w++) {
    const first = w * WINDOW_HOURS;
    const last = Math.min(hours, first + WINDOW_HOURS) - 1;
    const sizes = [];
    for (let h = first; h <= last; h++) sizes.push(rowsIn(h));
    const file = join(cacheDir(), `export-v${DATA_VERSION}-h${first}-${sizes.join('_')}.zip`);
    const meta = `${file}.json`;
    if (!existsSync(file) || !existsSync(meta)) {
      process.stderr.write(`bench: generating ${file} (${fmt(sizes.reduce((a, b) => a + b, 0))} rows), cached for later runs\n`);
      let expected = 0;
      let rows = 0;
      const tmp = `${file}.tmp`;
      const out = createWriteStream(tmp);
      const zip = new ZipWriter({ method: 'stored', date: new Date(FIRST_HOUR) }, out);
      for (let h = first; h <= last; h++) {
        const hourMs = FIRST_HOUR + h * HOUR_MS;
        const lines = [];
        for (const row of generateExportRows(hourMs, rowsIn(h), { seed: 42, users: 20_000 })) {
          if (row.user_id !== null && row.event_type !== 'get_treatment') expected++;
          rows++;
          lines.push(JSON.stringify(row));
        }
        // Level 6 is gzip's default, as Amplitude's files; entries compress in parallel on zlib's pool.
        const per = Math.ceil(lines.length / ENTRIES_PER_HOUR);
        const parts = [];
        for (let i = 0; i < lines.length; i += per) parts.push(gzipAsync(`${lines.slice(i, i + per).join('\n')}\n`, { level: 6 }));
        let n = 0;
        for (const p of parts) await zip.addEntry(entryName(hourMs, 101 + 37 * n++), await p);
      }
      await zip.finish();
      out.end();
      await once(out, 'finish');
      renameSync(tmp, file);
      writeFileSync(meta, JSON.stringify({ rows, expected }));
    }
    const { rows, expected } = JSON.parse(readFileSync(meta, 'utf8'));
    windows.push({ start: FIRST_HOUR + first * HOUR_MS, end: FIRST_HOUR + last * HOUR_MS, file, rows, expected });
  }
  return windows;
}

const hourArg = (ms) => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '');

async function benchExport(events, opts) {
  const windows = await prepareExport(events);
  const rows = windows.reduce((a, w) => a + w.rows, 0);
  const expected = windows.reduce((a, w) => a + w.expected, 0);

  const { createExportEmulator } = await import(join(DIST, 'sandbox/amplitude-export.js'));
  const { createFmeEventsEmulator } = await import(join(DIST, 'sandbox/fme-events.js'));
  // One run: fresh emulators and a fresh state folder (a second run must not find the hours delivered).
  const runCli = async () => {
    const exportApi = createExportEmulator({
      apiKey: KEYS.apiKey,
      secretKey: KEYS.secretKey,
      source: () => [],
      prebuiltArchive: (start, end) => windows.find((w) => w.start === start && w.end === end)?.file,
    });
    const fme = createFmeEventsEmulator({ sdkKey: KEYS.sdkKey, countOnly: true, validate: false });
    const server = await startEmulators([exportApi.route, fme.route]);
    const dir = mkdtempSync(join(tmpdir(), 'amp-fme-bench-run-'));
    try {
      const config = {
        amplitude: { exportBaseUrl: server.url },
        fme: { eventsBaseUrl: `${server.url}/api` },
        exportEvents: { windowHours: WINDOW_HOURS },
        http: { retries: 2, retryBaseDelayMs: 10, retryMaxDelayMs: 100 },
      };
      writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify(config, null, 2));
      const nodeFlags = opts.profile ? ['--cpu-prof', '--cpu-prof-dir', opts.profile] : [];
      const args = [...nodeFlags, BIN, 'export-events', '--start', hourArg(windows[0].start), '--end', hourArg(windows.at(-1).end), '--json', '--quiet'];
      const cli = await measureNode(args, {
        cwd: dir,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, AMPLITUDE_API_KEY: KEYS.apiKey, AMPLITUDE_SECRET_KEY: KEYS.secretKey, FME_SDK_KEY: KEYS.sdkKey },
      });
      if (cli.code !== 0) throw new Error(`export-events exited ${cli.code}: ${cli.stderr.slice(-2000)}`);
      const summary = JSON.parse(cli.stdout);
      const problems = [];
      if (summary.eventsRead !== rows) problems.push(`read ${summary.eventsRead} rows, expected ${rows}`);
      if (summary.fmeEventsSent !== expected) problems.push(`sent ${summary.fmeEventsSent} FME events, expected ${expected}`);
      if (fme.count !== expected) problems.push(`FME emulator counted ${fme.count} events, expected ${expected}`);
      if (problems.length > 0) throw new Error(`export-events benchmark is wrong: ${problems.join('; ')}`);
      return { cli, summary, check: `${fmt(fme.count)} FME events counted = expected` };
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  const best = await alternate(opts, ['--floor-export', ...windows.map((w) => w.file)], runCli);
  if (best.floorResult.rows !== rows) throw new Error(`export floor read ${best.floorResult.rows} rows, expected ${rows}`);
  return {
    name: 'export-events',
    items: rows,
    unit: 'events',
    wallMs: best.cli.wallMs,
    cliPerSecond: best.summary.eventsPerSecond,
    cpuS: best.cli.cpuS,
    emulatorCpuS: best.cli.emulatorCpuS,
    peakKb: best.peakKb,
    floorPerSecond: rows / (best.floorResult.ms / 1000),
    floorPeakKb: best.floor.peakKb,
    check: best.check,
  };
}

/** Child process: the export floor (unzip, gunzip, split lines, JSON.parse), nothing else. */
async function floorExport(files) {
  const { readArchiveLines } = await import(join(DIST, 'amplitude/archive.js'));
  const started = process.hrtime.bigint();
  let rows = 0;
  for (const file of files) {
    for await (const chunk of readArchiveLines(file)) {
      for (const line of chunk.lines) {
        if (line.length === 0) continue;
        if (JSON.parse(line) !== null) rows++;
      }
    }
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ rows, ms }));
}

// --------------------------------------------------------------------------------- push-impressions

/** A gzip file written with backpressure: `write` resolves when the stream can take more. */
function gzipStream(path) {
  const gz = createGzip({ level: 6 });
  const file = createWriteStream(path);
  gz.pipe(file);
  return {
    write: (text) => (gz.write(text) ? Promise.resolve() : once(gz, 'drain')),
    end: () => {
      gz.end();
      return once(file, 'finish');
    },
  };
}

async function prepareImpressions(count) {
  const { generateWebhookImpressions } = await import(join(DIST, 'sandbox/generate.js'));
  const base = join(cacheDir(), `impressions-v${DATA_VERSION}-${count}`);
  const ndjson = `${base}.ndjson.gz`;
  const array = `${base}.json.gz`;
  if (!existsSync(ndjson) || !existsSync(array)) {
    process.stderr.write(`bench: generating ${base}.{ndjson,json}.gz (${fmt(count)} impressions each), cached for later runs\n`);
    // Impressions from the last few days: inside Amplitude's 7-day dedupe window, as a replay would be.
    const to = Date.now() - 3_600_000;
    const gen = () => generateWebhookImpressions(count, { seed: 11, users: 20_000, from: to - 3 * 86_400_000, to });
    // Streamed to disk: a 3M dump does not fit in one string.
    const nd = gzipStream(`${ndjson}.tmp`);
    const arr = gzipStream(`${array}.tmp`);
    await arr.write('[\n');
    let first = true;
    for (const imp of gen()) {
      const line = JSON.stringify(imp);
      await nd.write(`${line}\n`);
      await arr.write(first ? line : `,\n${line}`);
      first = false;
    }
    await arr.write('\n]\n');
    await Promise.all([nd.end(), arr.end()]);
    renameSync(`${ndjson}.tmp`, ndjson);
    renameSync(`${array}.tmp`, array);
  }
  return { ndjson, array };
}

async function benchImpressions(count, opts) {
  const files = await prepareImpressions(count);
  const results = [];
  const { createAmplitudeIngestionEmulator } = await import(join(DIST, 'sandbox/amplitude-ingestion.js'));
  for (const [label, file] of [['ndjson.gz', files.ndjson], ['json.gz', files.array]]) {
    const runCli = async () => {
      // Counts events without parsing them (validate: false): it shares the 2 cores with the CLI.
      const ingestion = createAmplitudeIngestionEmulator({ apiKey: KEYS.apiKey, validate: false });
      const server = await startEmulators([ingestion.route]);
      const dir = mkdtempSync(join(tmpdir(), 'amp-fme-bench-run-'));
      try {
        const config = {
          amplitude: { ingestionBaseUrl: server.url },
          pushImpressions: { api: 'batch', ...(opts.workers !== undefined ? { workers: opts.workers } : {}) },
          http: { retries: 2, retryBaseDelayMs: 10, retryMaxDelayMs: 100 },
        };
        writeFileSync(join(dir, 'amp-fme.config.json'), JSON.stringify(config, null, 2));
        const nodeFlags = opts.profile ? ['--cpu-prof', '--cpu-prof-dir', opts.profile] : [];
        const cli = await measureNode([...nodeFlags, BIN, 'push-impressions', file, '--json', '--quiet'], {
          cwd: dir,
          env: { PATH: process.env.PATH, HOME: process.env.HOME, AMPLITUDE_API_KEY: KEYS.apiKey },
        });
        if (cli.code !== 0) throw new Error(`push-impressions exited ${cli.code}: ${cli.stderr.slice(-2000)}`);
        const summary = JSON.parse(cli.stdout);
        const problems = [];
        if (summary.impressionsRead !== count) problems.push(`read ${summary.impressionsRead} impressions, expected ${count}`);
        if (summary.eventsSent !== count) problems.push(`sent ${summary.eventsSent} events, expected ${count}`);
        // Nothing is deduplicated here: an event sent twice would make the count too high.
        if (ingestion.count !== count) problems.push(`Batch emulator received ${ingestion.count} events, expected ${count}`);
        if (problems.length > 0) throw new Error(`push-impressions benchmark is wrong: ${problems.join('; ')}`);
        return { cli, summary, check: `${fmt(ingestion.count)} events received = expected` };
      } finally {
        await server.close();
        rmSync(dir, { recursive: true, force: true });
      }
    };

    const best = await alternate(opts, ['--floor-impressions', file], runCli);
    if (best.floorResult.records !== count) throw new Error(`impressions floor read ${best.floorResult.records} records, expected ${count}`);
    results.push({
      name: `push-impressions ${label}`,
      items: count,
      unit: 'impressions',
      wallMs: best.cli.wallMs,
      cliPerSecond: best.summary.impressionsPerSecond,
      cpuS: best.cli.cpuS,
      emulatorCpuS: best.cli.emulatorCpuS,
      peakKb: best.peakKb,
      floorPerSecond: count / (best.floorResult.ms / 1000),
      floorPeakKb: best.floor.peakKb,
      check: best.check,
    });
  }
  return results;
}

/**
 * Child process: the impressions floor: read, gunzip, JSON.parse each record (NDJSON lines; for a JSON
 * array, the whole-file parse would not stream, so the array's elements are parsed one per line, which is
 * how the generated file is laid out).
 */
async function floorImpressions(file) {
  const started = process.hrtime.bigint();
  let records = 0;
  let pending = '';
  const take = (line) => {
    let s = line.trim();
    if (s === '' || s === '[' || s === ']') return;
    if (s.endsWith(',')) s = s.slice(0, -1);
    if (JSON.parse(s) !== null) records++;
  };
  const gunzip = createReadStream(file).pipe(createGunzip({ chunkSize: 64 * 1024 }));
  gunzip.setEncoding('utf8');
  for await (const text of gunzip) {
    const all = pending + text;
    let start = 0;
    let nl = all.indexOf('\n');
    while (nl !== -1) {
      take(all.slice(start, nl));
      start = nl + 1;
      nl = all.indexOf('\n', start);
    }
    pending = all.slice(start);
  }
  take(pending);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ records, ms }));
}

// -------------------------------------------------------------------------------------------- table

function printTable(results, opts) {
  const head = ['run', 'items', 'wall s', 'items/s (wall)', 'items/s (CLI)', 'CLI cpu s', 'emulators cpu s', 'peak RSS MB', 'floor items/s', 'vs floor', 'floor RSS MB'];
  const rows = results.map((r) => {
    const perSecond = r.items / (r.wallMs / 1000);
    return [
      r.name,
      fmt(r.items),
      (r.wallMs / 1000).toFixed(1),
      fmt(perSecond),
      fmt(r.cliPerSecond),
      r.cpuS === undefined ? 'n/a' : r.cpuS.toFixed(1),
      r.emulatorCpuS.toFixed(1),
      mb(r.peakKb),
      fmt(r.floorPerSecond),
      `${((perSecond / r.floorPerSecond) * 100).toFixed(0)}%`,
      mb(r.floorPeakKb),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [
    `amp-fme benchmark: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average ${opts.loadAtStart.toFixed(2)} at start, best of ${opts.runs} run${opts.runs === 1 ? '' : 's'} per figure${opts.quick ? ', --quick (smoke run: sizes too small for speed figures)' : ''}`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  // Memory must not grow with input: compare the peak RSS of the largest run with the smallest, per kind.
  for (const kind of ['export-events', 'push-impressions ndjson.gz', 'push-impressions json.gz']) {
    const runs = results.filter((r) => r.name === kind);
    if (runs.length < 2) continue;
    const small = runs.reduce((a, b) => (b.items < a.items ? b : a));
    const big = runs.reduce((a, b) => (b.items > a.items ? b : a));
    out.push(`${kind}: peak RSS ${mb(big.peakKb)} MB at ${fmt(big.items)} vs ${mb(small.peakKb)} MB at ${fmt(small.items)} (${(((big.peakKb - small.peakKb) / small.peakKb) * 100).toFixed(0)}%)`);
  }
  out.push(
    'items/s (wall): items / wall time of the CLI process (start-up included); items/s (CLI): its own summary.',
    `Floor and CLI run alternately, ${opts.runs} time(s) each; each side's fastest run is shown, with the CLI's highest peak RSS.`,
    'vs floor: wall items/s / floor items/s, the floor being a lone Node process that only unzips, gunzips and JSON.parses the same input.',
    `Emulators run in the benchmark process, the CLI in its own; on ${cpus().length} cores they compete for CPU.`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
  for (const r of results) process.stderr.write(`bench: ${r.name} ${fmt(r.items)}: ${r.check}\n`);
}

// --------------------------------------------------------------------------------------------- main

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${err.message} (see README, "Performance")\n`);
    process.exit(1);
  }
  opts.loadAtStart = loadavg()[0];
  if (opts.child?.kind === '--floor-export') return floorExport(opts.child.files);
  if (opts.child?.kind === '--floor-impressions') return floorImpressions(opts.child.files[0]);
  if (!existsSync(join(DIST, 'cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm run bench does)');
  if (opts.profile) mkdirSync(opts.profile, { recursive: true });
  const results = [];
  if (opts.only !== 'impressions') {
    for (const n of opts.events) results.push(await benchExport(n, opts));
  }
  if (opts.only !== 'export') {
    const help = await run(process.execPath, [BIN, 'push-impressions', '--help']);
    // An unknown command's --help shows the program's help (exit 0): look for the command's own usage.
    if (help.code !== 0 || !help.stdout.includes('push-impressions [options]')) {
      process.stderr.write('bench: push-impressions is not available in this build: skipped\n');
    } else {
      for (const n of opts.impressions) results.push(...(await benchImpressions(n, opts)));
    }
  }
  printTable(results, opts);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  process.exit(1);
});
