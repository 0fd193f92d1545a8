/**
 * @pm's automaton against a plain search: it finds a phrase exactly when one occurs (case-insensitively for
 * ASCII), and the one it reports ends first in the value (the longest of those), as the trie walk did.
 */
import { describe, expect, test } from 'vitest';
import { PhraseMatcher } from './pm.js';

/** The phrase ending first in `s` (the longest of those ending there), by brute force. */
function naive(phrases: readonly string[], s: string): string | undefined {
  const lower = s.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const ps = phrases.map((p) => p.toLowerCase()).filter((p) => p !== '');
  for (let end = 1; end <= lower.length; end++) {
    let best: string | undefined;
    for (const p of ps)
      if (lower.slice(0, end).endsWith(p) && (best === undefined || p.length > best.length)) best = p;
    if (best !== undefined) return best;
  }
  return undefined;
}

describe('PhraseMatcher', () => {
  test('finds what a plain search finds, on random phrases and values', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const alphabet = 'abcAB/.<\\x00\xe9\xff;';
    const word = (max: number) => {
      let w = '';
      for (let i = 0, n = 1 + rnd(max); i < n; i++) w += alphabet[rnd(alphabet.length)];
      return w;
    };
    for (let round = 0; round < 300; round++) {
      const phrases = Array.from({ length: 1 + rnd(8) }, () => word(4));
      const pm = new PhraseMatcher(phrases);
      for (let k = 0; k < 20; k++) {
        const s = word(24);
        expect(pm.find(s), `${JSON.stringify(phrases)} in ${JSON.stringify(s)}`).toBe(naive(phrases, s));
      }
    }
  });

  test('CRS-like lists: case-insensitive, characters outside every phrase, many distinct characters', () => {
    const pm = new PhraseMatcher(['/etc/passwd', 'cmd.exe', 'Union Select']);
    expect(pm.find('GET /ETC/PASSWD')).toBe('/etc/passwd');
    expect(pm.find('a union select b')).toBe('union select');
    expect(pm.find('nothing here \u4e2d')).toBeUndefined();
    // More distinct characters than one byte of classes holds (CJK: no case).
    const wide = new PhraseMatcher(
      Array.from({ length: 300 }, (_, i) => `${String.fromCharCode(0x4e00 + i)}!`),
    );
    expect(wide.find('x\u4e05!')).toBe('\u4e05!');
    expect(wide.find('x\u4e05?')).toBeUndefined();
  });
});
