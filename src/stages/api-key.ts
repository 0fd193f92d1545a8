/**
 * `api-key`: the consumer whose `credentials.apiKeys` holds the SHA-256 of the key the request carries, in a
 * header or a query parameter. The key is hashed once and looked up by its digest in a Map built when the config
 * loaded; the raw key is never kept. A lookup by SHA-256 leaks nothing an attacker can use: its timing depends on
 * the hash of the guess, not on how close the guess is to a real key (so no constant-time compare is needed after
 * the Map has matched all 64 hex digits).
 */
import { z } from 'zod';
import { headerName } from '../config/primitives.js';
import type { LocalReply, StageContext } from '../proxy/stage.js';
import { authnFields, compileIdentity, headerValue, removeHeader, validateAuthn } from './authn.js';
import { apiKeyDigestHex } from './credentials.js';
import { type PolicyKind, PolicyPhase } from './policy.js';

const schema = z
  .strictObject({
    header: headerName
      .optional()
      .describe('Read the key from this request header. Absent with `query` absent: `x-api-key`.'),
    query: z
      .string()
      .regex(/^[A-Za-z0-9._~-]{1,64}$/, {
        message: 'expected a query parameter name of letters, digits, . _ ~ -',
      })
      .optional()
      .describe(
        'Read the key from this query parameter (when the header is absent); it is removed before the request goes upstream.',
      ),
    hideCredential: z
      .boolean()
      .default(true)
      .describe('Remove the key header before the request goes upstream (the query parameter always is).'),
    ...authnFields,
  })
  .describe(
    'Authenticate by API key: a consumer is whoever holds a key whose hash is in `consumers[].credentials.apiKeys`.',
  );

export type ApiKeyConfig = z.output<typeof schema>;

/** The value of query parameter `name` (decoded), and the query without it; undefined when absent. */
export function takeQueryParam(query: string, name: string): { value: string; rest: string } | undefined {
  if (query === '') return undefined;
  // Most queries hold the name verbatim or not at all: without it and without escapes there is nothing to take.
  if (!query.includes(name) && !query.includes('%') && !query.includes('+')) return undefined;
  let value: string | undefined;
  let rest = '';
  let kept = 0;
  const n = query.length;
  let start = 0;
  while (start <= n) {
    let end = query.indexOf('&', start);
    if (end === -1) end = n;
    let eq = query.indexOf('=', start);
    if (eq === -1 || eq > end) eq = end;
    if (keyIs(query, start, eq, name)) {
      value ??= decodeComponent(eq === end ? '' : query.slice(eq + 1, end));
      // every occurrence goes: none may reach the upstream
    } else {
      const part = query.slice(start, end);
      rest = kept++ === 0 ? part : `${rest}&${part}`;
    }
    start = end + 1;
  }
  return value === undefined ? undefined : { value, rest };
}

/** Whether query[start, end) names `name`, as written or once decoded. */
function keyIs(query: string, start: number, end: number, name: string): boolean {
  let escaped = false;
  for (let i = start; i < end; i++) {
    const c = query.charCodeAt(i);
    if (c === 37 /* % */ || c === 43 /* + */) {
      escaped = true;
      break;
    }
  }
  if (!escaped) return end - start === name.length && query.startsWith(name, start);
  return decodeComponent(query.slice(start, end)) === name;
}

/** application/x-www-form-urlencoded decoding of one component; a malformed escape leaves it as written. */
function decodeComponent(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export const apiKeyPolicy: PolicyKind<ApiKeyConfig> = {
  type: 'api-key',
  phase: PolicyPhase.authn,
  schema,
  validate: validateAuthn,
  compile(c, ctx) {
    const header = c.header?.toLowerCase() ?? (c.query === undefined ? 'x-api-key' : undefined);
    const query = c.query;
    const hide = c.hideCredential;
    const keys = ctx.credentials.apiKeys;
    const identity = compileIdentity(c, ctx.consumers, ctx.source);
    const anonymous = identity.anonymous;
    const where = [header && `header ${header}`, query && `query parameter ${query}`]
      .filter(Boolean)
      .join(' or ');
    const challenge = { 'www-authenticate': `ApiKey realm="${ctx.name}"` };
    const missing: LocalReply = {
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: no API key (expected in ${where})`,
      headers: challenge,
    };
    const unknown: LocalReply = {
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: API key not recognized`,
      headers: challenge,
    };
    const expired: LocalReply = {
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: API key expired`,
      headers: challenge,
    };
    return {
      request: {
        name: ctx.name,
        onRequest: function apiKey(sc: StageContext): LocalReply | undefined {
          identity.strip(sc);
          let key: string | undefined;
          if (header !== undefined) {
            key = headerValue(sc, header);
            if (key !== undefined && hide) removeHeader(sc.upstreamHeaders, header);
          }
          if (query !== undefined) {
            const q = takeQueryParam(sc.query, query);
            if (q !== undefined) {
              key ??= q.value;
              sc.query = q.rest;
              const at = sc.upstreamPath.indexOf('?');
              const path = at === -1 ? sc.upstreamPath : sc.upstreamPath.slice(0, at);
              sc.upstreamPath = q.rest === '' ? path : `${path}?${q.rest}`;
            }
          }
          if (key === undefined || key === '') {
            if (anonymous === undefined) return missing;
            identity.acceptAnonymous(sc);
            return undefined;
          }
          const entry = keys.get(apiKeyDigestHex(key));
          if (entry === undefined) return unknown;
          if (entry.expiresAt <= Date.now()) return expired;
          identity.accept(sc, entry.consumer);
          return undefined;
        },
      },
    };
  },
};
