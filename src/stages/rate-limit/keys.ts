import { hash } from 'node:crypto';
import type { StageContext } from '../../proxy/stage.js';
import { compileCelString } from '../authz/cel.js';
import { RequestFacts } from '../authz/facts.js';

/** What a limit counts by. */
export type KeyConfig =
  | 'consumer'
  | 'client-ip'
  | 'route'
  | 'global'
  | { readonly header: string }
  | { readonly cel: string };

/** Longer keys (header values) are hashed, so a flood of huge values cannot fill memory or Redis. */
const MAX_KEY = 128;

/**
 * A request's key under `k`, compiled once. Keys that fall back to the client address (an anonymous request
 * under `consumer`, a request without the header under `header`) start with a newline, which neither a consumer
 * name nor a header value can hold: the two never share a bucket.
 */
export function keyReader(k: KeyConfig): (ctx: StageContext) => string {
  if (k === 'client-ip') return (ctx) => ctx.clientAddress();
  if (k === 'global') return () => '';
  if (k === 'route') return (ctx) => ctx.route?.name ?? '';
  if (k === 'consumer') {
    return (ctx) => {
      const c = ctx.consumer;
      return c !== undefined ? c.name : '\n' + ctx.clientAddress();
    };
  }
  if ('cel' in k) {
    const run = compileCelString(k.cel);
    return (ctx) => {
      const v = run(new RequestFacts(ctx));
      if (typeof v !== 'string') return '\n' + ctx.clientAddress();
      return v.length <= MAX_KEY ? v : '#' + hash('sha256', v, 'base64url');
    };
  }
  const name = k.header.toLowerCase();
  return (ctx) => {
    const v = ctx.headers[name];
    if (v === undefined || v === '') return '\n' + ctx.clientAddress();
    const s = typeof v === 'string' ? v : v.join(', ');
    return s.length <= MAX_KEY ? s : '#' + hash('sha256', s, 'base64url');
  };
}

/** `consumer`, `client-ip`, `header:x-tenant`: the key kind in state identities and docs. */
export function keyName(k: KeyConfig): string {
  if (typeof k === 'string') return k;
  return 'cel' in k ? `cel:${k.cel}` : `header:${k.header.toLowerCase()}`;
}
