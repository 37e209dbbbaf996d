// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: SIGKILLs it when it is about to record progress (rename a
// state or retry-progress temp file into place) after it has fsync'd a dead-letter file, i.e. a kill -9 (or power
// cut) landing while the progress write is still under way, after the dead letters it covers are on disk.
// KILL_AT_PROGRESS_WRITE=n: at the n-th progress write from that fsync on (default 1), the earlier ones going through.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
const deadLetterFds = new Set();
let synced = false;
let writesToGo = Number(process.env.KILL_AT_PROGRESS_WRITE ?? 1);
const openSync = fs.openSync;
fs.openSync = function (path) {
  const fd = openSync.apply(this, arguments);
  if (/[\\/]dead-letters[\\/][^\\/]+\.ndjson$/.test(String(path))) deadLetterFds.add(fd);
  return fd;
};
const fsyncSync = fs.fsyncSync;
fs.fsyncSync = function (fd) {
  const r = fsyncSync.apply(this, arguments);
  if (deadLetterFds.has(fd)) synced = true;
  return r;
};
const renameSync = fs.renameSync;
fs.renameSync = function (from, to) {
  if (synced && /\.tmp$/.test(String(from)) && /(export-events-[0-9a-f]{16}\.json|\.retry-progress\.json)$/.test(String(to)) && --writesToGo <= 0) process.kill(process.pid, 'SIGKILL');
  return renameSync.apply(this, arguments);
};
syncBuiltinESMExports();
