// Preloaded into the CLI (NODE_OPTIONS=--require) by a test: a deprecation warning, as a dependency would emit
// one, in the middle of a run (Node emits it on the next tick after the run's first line on stderr).
const write = process.stderr.write.bind(process.stderr);
let emitted = false;
process.stderr.write = (...args) => {
  if (!emitted) {
    emitted = true;
    process.emitWarning('Buffer() is deprecated due to security and usability issues.', 'DeprecationWarning', 'DEP0005');
  }
  return write(...args);
};
