import { describe, expect, test } from 'vitest';
import { blockList, parseCidr } from './ip-filter.js';

describe('ip-filter', () => {
  test('parses addresses and CIDR ranges of both families, and refuses the rest', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('192.0.2.7')).toEqual({ address: '192.0.2.7', prefix: 32, family: 'ipv4' });
    expect(parseCidr('2001:db8::/32')).toEqual({ address: '2001:db8::', prefix: 32, family: 'ipv6' });
    expect(parseCidr('::1')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0/8', 'example.com', '10.0.0.0/', '10.0.0.0/-1', ''])
      expect(parseCidr(bad), bad).toBeUndefined();
  });

  test('matches IPv4, IPv6 and IPv4-mapped IPv6 addresses', () => {
    const list = blockList(['10.0.0.0/8', '2001:db8::/32']);
    expect(list.check('10.200.1.1', 'ipv4')).toBe(true);
    expect(list.check('11.0.0.1', 'ipv4')).toBe(false);
    expect(list.check('::ffff:10.1.2.3', 'ipv6')).toBe(true);
    expect(list.check('2001:db8:1::5', 'ipv6')).toBe(true);
    expect(list.check('2001:db9::5', 'ipv6')).toBe(false);
  });
});
