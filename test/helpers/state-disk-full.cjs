// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: the state file's writes succeed
// AMP_FME_TEST_STATE_WRITES_OK times, then fail with ENOSPC (the temp file opened on /dev/full), as when the disk
// holding state.dir fills up part-way through a run.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
const openSync = fs.openSync;
let left = Number(process.env.AMP_FME_TEST_STATE_WRITES_OK || 0);
fs.openSync = function (path, flags, mode) {
  if (/export-events-[0-9a-f]{16}\.json\.\d+\.tmp$/.test(String(path)) && left-- <= 0) return openSync.call(this, '/dev/full', flags, mode);
  return openSync.apply(this, arguments);
};
syncBuiltinESMExports();
