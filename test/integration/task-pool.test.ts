import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createTaskPool, type TaskPool } from '../../src/workers/task-pool.js';
import { tempDir } from '../helpers/temp-dir.js';

// Worker threads run JavaScript: the fixture worker uses the compiled serveTasks (`npm test` builds first).
const SERVE_TASKS = new URL('../../dist/workers/serve-tasks.js', import.meta.url).href;

type Output = { input: number; thread: 'worker' | 'calling' };

/**
 * A worker that starts only when the test opens its gate (a shared Int32 set to 1), as a slow start would,
 * then serves tasks like a real one, saying which thread ran them.
 */
function gatedWorker(): URL {
  const script = join(tempDir('gated-worker'), 'gated.mjs');
  writeFileSync(
    script,
    [
      "import { workerData } from 'node:worker_threads';",
      `import { serveTasks } from ${JSON.stringify(SERVE_TASKS)};`,
      'Atomics.wait(new Int32Array(workerData.gate), 0, 0);',
      "serveTasks(() => null, (_state, input) => ({ input, thread: 'worker' }), () => []);",
      '',
    ].join('\n'),
  );
  return pathToFileURL(script);
}

let pool: TaskPool<number, Output> | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('task pool', () => {
  it('runs tasks on the calling thread while its worker is still starting, and on the worker once it is ready', async () => {
    const gate = new Int32Array(new SharedArrayBuffer(4));
    pool = createTaskPool<number, Output>({
      threads: 1,
      workerUrl: gatedWorker(),
      workerData: { gate: gate.buffer },
      inline: (input) => ({ input, thread: 'calling' }),
      what: 'testing',
      setting: 'test.workers',
    });
    // Tasks queued to a worker that has not started would wait for it, and the run with them.
    const early = Promise.all([1, 2, 3, 4, 5].map((i) => (pool as TaskPool<number, Output>).run(i, [])));
    const outcome = await Promise.race([early, new Promise((r) => setTimeout(() => r('still waiting for the worker after 5 s'), 5000))]);
    expect(outcome).toEqual([1, 2, 3, 4, 5].map((input) => ({ input, thread: 'calling' })));

    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await pool.started();
    expect(await pool.run(6, [])).toEqual({ input: 6, thread: 'worker' });
  });
});
