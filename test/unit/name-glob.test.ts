import { describe, expect, it } from 'vitest';
import { compileNameGlob } from '../../src/mapping/paths.js';

describe('compileNameGlob (event types and property keys: names, not paths)', () => {
  it.each([
    ['* (legacy)', 'Button Click (legacy)', true],
    ['* (legacy)', 'Button Click legacy', false],
    ['Purchase (*)', 'Purchase (iOS)', true],
    ['Purchase (*)', 'Purchase iOS', false],
    ['[Amplitude] *', '[Amplitude] Start Session', true],
    ['a|b', 'a', false],
    ['a|b', 'a|b', true],
    ['utm_*', 'utm_source', true],
    ['utm_*', 'xutm_source', false],
    ['*_{id,key}', 'user_id', true],
    ['*_{id,key}', 'user_key', true],
    ['*_{id,key}', 'user_ids', false],
    ['{a,{b,c}}d', 'cd', true],
    ['{a,{b,c}}d', 'dd', false],
    ['{a,b', '{a,b', true],
    ['{ab}x', '{ab}x', true],
    ['\\*x', '*x', true],
    ['\\*x', 'ax', false],
    ['a?c', 'a😀c', true],
    ['??', '😀', false],
    ['page/*', 'page/view/x', true],
    ['*', 'line\nbreak', true],
    ['*a*b', 'xaxxb', true],
    ['*a*b', 'xbxa', false],
    ['{*a*,b}', 'xxaxx', true],
  ])('%j matches %j: %s', (pattern, name, expected) => {
    expect(compileNameGlob(pattern)(name)).toBe(expected);
  });

  it('matches several stars against long names, and runs of unclosed braces, without backtracking for ever', () => {
    // A backtracking regex tried every way to place four stars: minutes at Amplitude's 1024 characters.
    expect(compileNameGlob('*a*a*a*a*b')('a'.repeat(1024))).toBe(false);
    expect(compileNameGlob('*a*a*a*a*b')(`${'a'.repeat(1024)}b`)).toBe(true);
    expect(compileNameGlob('{'.repeat(40))('{'.repeat(40))).toBe(true);
  });

  it('refuses a glob whose alternatives spell more than 1024 names', () => {
    expect(() => compileNameGlob('{a,b}'.repeat(11))).toThrow(/spells more than 1024 names with its \{a,b\} alternatives/);
  });
});
