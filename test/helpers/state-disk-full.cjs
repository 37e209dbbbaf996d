// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: the first write of the state file whose content matches
// the regular expression AMP_FME_TEST_STATE_FAIL_WHEN, and every state write after it, fail with ENOSPC (written to
// /dev/full instead), as when the disk holding state.dir fills up part-way through a run. Chosen by content, not by
// count: how many writes come before it depends on the data.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
const openSync = fs.openSync;
const writeSync = fs.writeSync;
const when = new RegExp(process.env.AMP_FME_TEST_STATE_FAIL_WHEN || '$^');
const stateTemps = new Set();
let full = false;
fs.openSync = function (path) {
  const fd = openSync.apply(this, arguments);
  if (/export-events-[0-9a-f]{16}\.json\.\d+\.tmp$/.test(String(path))) stateTemps.add(fd);
  return fd;
};
fs.writeSync = function (fd, data) {
  if (stateTemps.has(fd)) {
    stateTemps.delete(fd);
    if (!full && when.test(Buffer.isBuffer(data) || data instanceof Uint8Array ? Buffer.from(data).toString('utf8') : String(data))) full = true;
    if (full) {
      const dev = openSync('/dev/full', 'w');
      try {
        return writeSync.call(this, dev, ...Array.prototype.slice.call(arguments, 1));
      } finally {
        fs.closeSync(dev);
      }
    }
  }
  return writeSync.apply(this, arguments);
};
syncBuiltinESMExports();
