// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: the first state or retry-progress write after a dead-letter
// file was created fails (ENOSPC), i.e. the write that names the new file (DeadLetterWriter.onCreated); later ones go
// through, as on a disk that had filled up for a moment.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
let created = false;
let failed = false;
const openSync = fs.openSync;
fs.openSync = function (path) {
  const fd = openSync.apply(this, arguments);
  if (/[\\/]dead-letters[\\/][^\\/]+\.ndjson$/.test(String(path))) created = true;
  return fd;
};
const renameSync = fs.renameSync;
fs.renameSync = function (from, to) {
  if (created && !failed && /(export-events-[0-9a-f]{16}\.json|\.retry-progress\.json)$/.test(String(to))) {
    failed = true;
    throw Object.assign(new Error(`ENOSPC: no space left on device, rename '${from}' -> '${to}'`), { code: 'ENOSPC', syscall: 'rename' });
  }
  return renameSync.apply(this, arguments);
};
syncBuiltinESMExports();
