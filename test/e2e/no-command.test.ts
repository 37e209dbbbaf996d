import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';
import { logLines, runCli } from '../helpers/world.js';

/**
 * A command line that lost its command (`npx amp-fme $COMMAND` with the variable empty, say) is a usage error:
 * exit 2, and under cron one JSON line, like any other flag mistake. Commander shows the help for it.
 */
describe('amp-fme without a command', () => {
  it('under cron: exit 2 and one JSON error line naming the commands, not the help text and exit 0', async () => {
    const r = await runCli([], tempDir('no-command'));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(logLines(r.stderr)).toEqual([
      expect.objectContaining({ level: 'error', message: expect.stringMatching(/^give one of the commands export-events, push-impressions, retry, sandbox, demo/), exitCode: 2 }),
    ]);
  });

  it('on a terminal: the help, and exit 2 all the same', async () => {
    const r = await runCli([], tempDir('no-command-tty'), {}, { terminal: true });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/Usage: amp-fme \[options\] \[command\]/);
  });

  it('help asked for is no error: exit 0', async () => {
    const dir = tempDir('no-command-help');
    for (const args of [['--help'], ['help'], ['help', 'export-events'], ['-V']]) expect((await runCli(args, dir)).code, args.join(' ')).toBe(0);
  });
});
