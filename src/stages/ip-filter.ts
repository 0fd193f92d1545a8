/**
 * `ip-filter`: allow and deny lists of addresses and CIDR ranges (IPv4 and IPv6), checked against the client
 * address as the listener derives it (the peer, or through `trustedProxies` the nearest untrusted X-Forwarded-For
 * hop), never a header a client can forge. Deny wins; with an `allow` list, anything not in it is refused.
 * node:net BlockList does the matching (IPv4-mapped IPv6 addresses match IPv4 rules).
 */
import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import type { LocalReply, StageContext } from '../proxy/stage.js';
import { type PolicyKind, PolicyPhase } from './policy.js';

const cidr = z.string().refine((s) => parseCidr(s) !== undefined, {
  message: 'expected an IP address or CIDR range such as "10.0.0.0/8", "192.0.2.7" or "2001:db8::/32"',
});

const schema = z
  .strictObject({
    allow: z
      .array(cidr)
      .optional()
      .describe(
        'Addresses and CIDR ranges let through; anything else is refused. Absent: every address not denied.',
      ),
    deny: z
      .array(cidr)
      .optional()
      .describe('Addresses and CIDR ranges refused (403 client_address_denied), even when also allowed.'),
  })
  .refine((c) => (c.allow?.length ?? 0) + (c.deny?.length ?? 0) > 0, {
    message: 'expected at least one entry in "allow" or "deny"',
  })
  .describe('Refuse or admit clients by address.');

export type IpFilterConfig = z.output<typeof schema>;

/** `10.0.0.0/8`, `::1`, `2001:db8::/32` → its parts, or undefined when invalid. */
export function parseCidr(
  s: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const bits = slash < 0 ? String(max) : s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  return { address, prefix: Number(bits), family: v === 4 ? 'ipv4' : 'ipv6' };
}

export function blockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    const c = parseCidr(e);
    if (c === undefined) throw new Error(`invalid address or CIDR range "${e}"`);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return list;
}

/** Whether `address` is in `list`; an address that is not an IP (a Unix socket) is in none. */
function contains(list: BlockList, address: string): boolean {
  const v = isIP(address);
  if (v === 0) return false;
  return list.check(address, v === 4 ? 'ipv4' : 'ipv6');
}

export const ipFilterPolicy: PolicyKind<IpFilterConfig> = {
  type: 'ip-filter',
  phase: PolicyPhase.ipFilter,
  schema,
  compile(c, ctx) {
    const allow = c.allow !== undefined && c.allow.length > 0 ? blockList(c.allow) : undefined;
    const deny = c.deny !== undefined && c.deny.length > 0 ? blockList(c.deny) : undefined;
    const denied: LocalReply = {
      kind: 'error',
      code: 'client_address_denied',
      detail: `policy ${ctx.name}: client address not allowed`,
    };
    return {
      request: {
        name: ctx.name,
        onRequest: function ipFilter(sc: StageContext) {
          const address = sc.clientAddress();
          if (deny !== undefined && contains(deny, address)) return denied;
          if (allow !== undefined && !contains(allow, address)) return denied;
          return undefined;
        },
      },
    };
  },
};
