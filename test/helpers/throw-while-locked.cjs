// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: once the run has taken a lock, an error nobody catches,
// as a bug or a library callback (got's) would throw one. It carries got-like request options with the Export API's
// Basic credentials and an api_key body, which Node's default report (util.inspect of the error) would print.
// AMP_FME_TEST_THROW=rejection makes it an unhandled promise rejection instead of an uncaught exception.
const fs = require('node:fs');
const { syncBuiltinESMExports } = require('node:module');
const openSync = fs.openSync;
let thrown = false;
fs.openSync = function (path, flags) {
  const fd = openSync.apply(this, arguments);
  if (!thrown && flags === 'wx' && String(path).endsWith('.lock')) {
    thrown = true;
    const { AMPLITUDE_API_KEY: key, AMPLITUDE_SECRET_KEY: secret } = process.env;
    const err = Object.assign(new Error('boom'), {
      options: {
        headers: { authorization: `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}` },
        body: JSON.stringify({ api_key: key }),
      },
    });
    if (process.env.AMP_FME_TEST_THROW === 'rejection') setImmediate(() => void Promise.reject(err));
    else setImmediate(() => {
      throw err;
    });
  }
  return fd;
};
syncBuiltinESMExports();
