import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log/logger.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('text logs (a terminal)', () => {
  it('stamp each line with the UTC time marked Z, whatever the host time zone', () => {
    vi.useFakeTimers({ now: Date.UTC(2024, 2, 1, 5, 6, 7), toFake: ['Date'] });
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', format: 'text', write: (l) => lines.push(l) });
    logger.info('hello', { hours: 3 });
    expect(lines).toEqual(['05:06:07Z info  hello hours=3\n']);
  });
});
