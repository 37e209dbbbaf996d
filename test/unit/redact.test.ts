import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/validate.js';
import { dropCutWord, redact, registerSecret } from '../../src/http/redact.js';

describe('redact', () => {
  // A key with characters JSON and URLs escape, and a second key that holds the first.
  const odd = 'k3y"with\\odd/chars&=';
  const outer = 'prefix-k3y-inner-key-suffix';
  registerSecret(odd);
  registerSecret('k3y-inner-key');
  registerSecret(outer);

  it('masks a secret as it is, escaped in JSON (once or twice) and URL-encoded', () => {
    const once = JSON.stringify({ key: odd });
    const twice = JSON.stringify({ detail: once });
    const url = `user_id=u1&api_key=${encodeURIComponent(odd)}`;
    for (const text of [odd, once, twice, url]) {
      const out = redact(text);
      expect(out).toContain('***');
      expect(out).not.toContain('k3y');
    }
  });

  it('masks a secret that holds another one whole', () => {
    expect(redact(`a ${outer} b`)).toBe('a *** b');
  });

  it('drops the last word of text cut off mid-way, which may be the first part of a key', () => {
    expect(dropCutWord('{"authorization":"Basic YW1wLWFwaS1r')).toBe('{"authorization":"Basic ');
    expect(dropCutWord('{"error":"bad request"}')).toBe('{"error":"bad request"}');
  });

  it('leaves text without secrets alone, and short values are never secrets', () => {
    registerSecret('abc');
    expect(redact('abc and some text')).toBe('abc and some text');
  });
});

describe('configuration messages do not echo a key pasted into the wrong field', () => {
  it('names the field and the length, not the value', () => {
    const key = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const { problems } = validateConfig({ fme: { eventsBaseUrl: key }, amplitude: { region: key } });
    const text = JSON.stringify(problems);
    expect(text).not.toContain(key.slice(0, 10));
    expect(problems.map((p) => p.path).sort()).toEqual(['amplitude.region', 'fme.eventsBaseUrl']);
    expect(problems.find((p) => p.path === 'amplitude.region')?.message).toMatch(/32-character value that looks like a key \(not shown\)/);
  });

  it('still shows values that are not key-like, so a typo can be seen', () => {
    const { problems } = validateConfig({ fme: { eventsBaseUrl: 'htps//events.split.io' }, amplitude: { region: 'mars' }, pushImpressions: { identity: 'user_properties_identifier' } });
    const text = problems.map((p) => p.message).join('\n');
    for (const shown of ['"htps//events.split.io"', '"mars"', '"user_properties_identifier"']) expect(text).toContain(shown);
  });
});

describe('redact and URLs with credentials', () => {
  it('masks the user information of any URL, a short password too, and leaves other @s alone', () => {
    expect(redact('POST http://bob:pw1@proxy.local:3128/batch failed')).toBe('POST http://***@proxy.local:3128/batch failed');
    expect(redact('"https://token@eu.proxy/api"')).toBe('"https://***@eu.proxy/api"');
    // A raw @ in the password: the host is after the last one, as URL parsers read it; no part of the password shows.
    expect(redact('POST https://bob:p@ss@proxy.local/batch and mail ops@example.com')).toBe('POST https://***@proxy.local/batch and mail ops@example.com');
    expect(redact('mail ops@example.com; see https://example.com/a?who=ops@example.com')).toBe('mail ops@example.com; see https://example.com/a?who=ops@example.com');
  });
});
