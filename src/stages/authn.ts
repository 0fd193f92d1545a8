/**
 * What the first-party authentication kinds (api-key, basic-auth, mtls) share: the `anonymous` consumer, the
 * upstream identity headers (client-sent headers of those names are always removed first), and small header
 * helpers over the flat upstream list.
 */
import { z } from 'zod';
import { headerName, name } from '../config/primitives.js';
import { didYouMean } from '../config/suggest.js';
import type { StageContext } from '../proxy/stage.js';
import type { Consumer, PolicyValidateContext } from './policy.js';

export const authnFields = {
  anonymous: name
    .optional()
    .describe(
      'A consumer (in `consumers`) that requests without any credential go on as. Absent: they get 401. A credential that is present but wrong is always 401.',
    ),
  upstreamHeaders: z
    .strictObject({
      consumer: headerName.optional().describe('Send the consumer name upstream in this header.'),
      groups: headerName
        .optional()
        .describe("Send the consumer's groups upstream, comma-separated, in this header."),
    })
    .optional()
    .describe(
      'Tell the upstream who called. A header of these names sent by the client is always removed first, so a client can never pose as a consumer.',
    ),
};

export interface AuthnConfig {
  anonymous?: string | undefined;
  upstreamHeaders?: { consumer?: string | undefined; groups?: string | undefined } | undefined;
}

/** Checks `anonymous` names a consumer. */
export function validateAuthn(c: AuthnConfig, ctx: PolicyValidateContext): void {
  if (c.anonymous !== undefined && !ctx.consumers.has(c.anonymous))
    ctx.issue(['anonymous'], `unknown consumer "${c.anonymous}"${didYouMean(c.anonymous, ctx.consumers)}`);
}

/** Removes every field named `lower` (lower case) from a flat [name, value, ...] list, in place. */
export function removeHeader(list: string[], lower: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (list[i] === lower) list.splice(i, 2);
}

/** The first value of request header `lower` as received, or undefined. */
export function headerValue(ctx: StageContext, lower: string): string | undefined {
  const v = ctx.headers[lower];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The compiled identity side of an authentication policy: strips the identity headers, then sets the consumer
 * and its headers. `strip` runs first in every request (whatever the outcome), `accept` on success.
 */
export interface Identity {
  readonly anonymous: Consumer | undefined;
  strip(ctx: StageContext): void;
  accept(ctx: StageContext, consumer: Consumer): void;
  /**
   * No credential of this policy's kind, and it has `anonymous`: the request goes on as the consumer an earlier
   * authentication policy of the route identified, else as `anonymous`. So several authentication policies that
   * each name an `anonymous` consumer accept any one of their credentials.
   */
  acceptAnonymous(ctx: StageContext): void;
}

export function compileIdentity(
  c: AuthnConfig,
  consumers: ReadonlyMap<string, Consumer>,
  source: string,
): Identity {
  let anonymous: Consumer | undefined;
  if (c.anonymous !== undefined) {
    anonymous = consumers.get(c.anonymous);
    if (anonymous === undefined) throw new Error(`${source}.anonymous: unknown consumer "${c.anonymous}"`);
  }
  const consumerHeader = c.upstreamHeaders?.consumer?.toLowerCase();
  const groupsHeader = c.upstreamHeaders?.groups?.toLowerCase();
  if (consumerHeader === undefined && groupsHeader === undefined) {
    return {
      anonymous,
      strip() {},
      accept(ctx, consumer) {
        ctx.consumer = consumer;
      },
      acceptAnonymous(ctx) {
        ctx.consumer ??= anonymous;
      },
    };
  }
  return {
    anonymous,
    acceptAnonymous(ctx) {
      // Re-accepted, so that this policy's identity headers (stripped above) carry the consumer too.
      const c = ctx.consumer ?? anonymous;
      if (c !== undefined) this.accept(ctx, c);
    },
    strip(ctx) {
      const list = ctx.upstreamHeaders;
      if (consumerHeader !== undefined) removeHeader(list, consumerHeader);
      if (groupsHeader !== undefined) removeHeader(list, groupsHeader);
    },
    accept(ctx, consumer) {
      ctx.consumer = consumer;
      const list = ctx.upstreamHeaders;
      if (consumerHeader !== undefined) list.push(consumerHeader, consumer.name);
      if (groupsHeader !== undefined && consumer.groups.length > 0)
        list.push(groupsHeader, consumer.groups.join(','));
    },
  };
}
