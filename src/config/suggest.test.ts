import { describe, expect, it } from 'vitest';
import { closestMatch, levenshtein } from './suggest.js';

describe('suggestions', () => {
  it('measures edit distance', () => {
    expect(levenshtein('prefx', 'prefix')).toBe(1);
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('', 'abc')).toBe(3);
    expect(levenshtein('abcdef', 'uvwxyz', 2)).toBe(3);
  });

  it('suggests close or case-insensitively equal candidates only', () => {
    const keys = ['exact', 'prefix', 'template', 'regex'];
    expect(closestMatch('prefx', keys)).toBe('prefix');
    expect(closestMatch('Prefix', keys)).toBe('prefix');
    expect(closestMatch('tempalte', keys)).toBe('template');
    expect(closestMatch('path', keys)).toBeUndefined();
    expect(closestMatch('ab', ['id'])).toBeUndefined();
    expect(closestMatch('timeout', ['timeouts', 'limits'])).toBe('timeouts');
  });
});
