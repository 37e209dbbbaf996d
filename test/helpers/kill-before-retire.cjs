// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: SIGKILLs it just before it renames a state file
// `<file>.taken-over`, i.e. between writing the new keys' state and retiring the old one, as a crash would.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
const renameSync = fs.renameSync;
fs.renameSync = function (from, to) {
  if (String(to).endsWith('.taken-over')) process.kill(process.pid, 'SIGKILL');
  return renameSync.apply(this, arguments);
};
syncBuiltinESMExports();
