import { describe, expect, test } from 'vitest';
import { parseBasic, VerifiedCache, VerifyLimiter } from './basic-auth.js';
import { hashPassword, parsePasswordHash } from './credentials.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('parseBasic', () => {
  test('user and password; the password may hold colons', () => {
    expect(parseBasic(`Basic ${b64('dave:pa:ss')}`)).toEqual({ username: 'dave', password: 'pa:ss' });
    expect(parseBasic(`basic ${b64('dave:')}`)).toEqual({ username: 'dave', password: '' });
  });

  test('malformed: undefined', () => {
    for (const v of ['Bearer x', 'Basic', 'Basic !!!', `Basic ${b64('no-colon')}`, `Basic ${b64(':nouser')}`])
      expect(parseBasic(v), v).toBeUndefined();
  });
});

describe('VerifyLimiter', () => {
  test('runs `max` at once, queues `queue` more, refuses the rest, and hands slots on in order', async () => {
    const l = new VerifyLimiter(1, 1);
    const a = l.acquire();
    const b = l.acquire();
    expect(a).toBeInstanceOf(Promise);
    expect(b).toBeInstanceOf(Promise);
    expect(l.acquire()).toBeUndefined();
    expect([l.active, l.queued]).toEqual([1, 1]);
    let bStarted = false;
    void b!.then(() => (bStarted = true));
    l.release();
    await Promise.resolve();
    expect(bStarted).toBe(true);
    expect([l.active, l.queued]).toEqual([1, 0]);
    l.release();
    expect(l.active).toBe(0);
  });
});

describe('VerifiedCache', () => {
  const hash = parsePasswordHash(hashPassword('x', { ln: 10 }));
  if (typeof hash === 'string') throw new Error(hash);

  test('keyed by an HMAC of the credential, never the credential itself', () => {
    const c = new VerifiedCache(2);
    const id = c.id('Basic abc');
    expect(id).not.toContain('abc');
    expect(new VerifiedCache(2).id('Basic abc')).not.toBe(id); // a key of its own per cache
  });

  test('entries expire, and the least recently used goes first beyond the size', () => {
    const c = new VerifiedCache(2);
    const r = (t: number) => ({ username: 'u', hash, expiresAt: t });
    c.set('a', r(100));
    c.set('b', r(100));
    expect(c.get('a', 50)).toBeDefined(); // a is now the most recent
    c.set('c', r(100));
    expect(c.get('b', 50)).toBeUndefined();
    expect(c.get('a', 50)).toBeDefined();
    expect(c.get('c', 100)).toBeUndefined(); // expired
    expect(c.entries).toBe(1);
  });
});
