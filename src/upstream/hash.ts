/**
 * String hashing for the consistent-hash balancers and request keys.
 *
 * `hashString` is MurmurHash3 (x86, 32-bit) over the string's UTF-16LE code units: two code units make one
 * 32-bit block, so there is no encoding step and no allocation. It is fast, well mixed (every input bit
 * affects every output bit through the final avalanche), and stable across processes and versions, which
 * matters because every worker of a cluster must map a key to the same endpoint.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** 32-bit unsigned hash of a string. `seed` gives independent hash functions (Maglev needs two per endpoint). */
export function hashString(s: string, seed = 0): number {
  let h = seed | 0;
  const n = s.length;
  const end = n & ~1;
  for (let i = 0; i < end; i += 2) {
    let k = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (end < n) {
    let k = s.charCodeAt(end);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  // Murmur3 mixes in the length in bytes.
  h ^= n << 1;
  return mix32(h);
}

/** MurmurHash3's finaliser: a bijection on 32-bit integers with full avalanche. Returns an unsigned value. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
