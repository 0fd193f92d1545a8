/**
 * `cors`: Cross-Origin Resource Sharing (the Fetch standard's CORS protocol) at the gateway. A preflight (OPTIONS
 * with Origin and Access-Control-Request-Method) is answered here, 204 or 403, and never reaches the upstream nor
 * asks for credentials (the policy runs in the `cors` phase, before authentication). Actual requests go on as
 * they are (the browser, not the server, enforces CORS) and their responses get the CORS fields, the upstream's
 * own Access-Control-* fields replaced: the policy is the one authority.
 */
import { z } from 'zod';
import { duration, headerName, httpMethod } from '../../config/primitives.js';
import type { LocalReply, ResponseStage, StageContext } from '../../proxy/stage.js';
import { type PolicyCompileContext, type PolicyKind, PolicyPhase, type PolicyStages } from '../policy.js';
import { OriginMatcher, parseOrigin } from './origins.js';

const origin = z.string().refine((s) => s === '*' || typeof parseOrigin(s) !== 'string', {
  error: (iss) => {
    const r = parseOrigin(String(iss.input));
    return typeof r === 'string' ? r : 'invalid origin';
  },
});

const schema = z
  .strictObject({
    origins: z
      .array(origin)
      .min(1)
      .describe(
        'Origins allowed to read responses: exact (`https://app.example.com`, `http://localhost:3000`), a pattern for any subdomain (`https://*.example.com`: not example.com itself), or `*` (any origin; not with `credentials`).',
      ),
    methods: z
      .array(z.union([httpMethod, z.literal('*')]))
      .min(1)
      .default(['GET', 'HEAD', 'POST'])
      .describe(
        'Methods a preflight may ask for (GET, HEAD and POST never need one). `*`: any (not with `credentials`).',
      ),
    headers: z
      .array(z.union([headerName, z.literal('*')]))
      .default([])
      .describe(
        'Request headers a preflight may ask for (`Access-Control-Request-Headers`), such as `authorization`, `content-type`, `x-api-key`. `*`: any, Authorization included (not with `credentials`).',
      ),
    exposeHeaders: z
      .array(headerName)
      .default([])
      .describe(
        'Response headers the page may read beyond the CORS-safelisted ones (`Access-Control-Expose-Headers`).',
      ),
    credentials: z
      .boolean()
      .default(false)
      .describe(
        'Let pages send cookies and HTTP authentication (`Access-Control-Allow-Credentials: true`). Needs explicit origins, methods and headers: the Fetch standard ignores `*` with credentials, so Trellis refuses it.',
      ),
    maxAge: duration
      .prefault('10m')
      .describe(
        'How long a browser may cache a preflight answer (`Access-Control-Max-Age`, whole seconds; browsers cap it, Chromium at 2h). 0: not cached.',
      ),
  })
  .refine((c) => !c.credentials || !c.origins.includes('*'), {
    path: ['origins'],
    message:
      'origins "*" cannot be used with credentials: true (browsers refuse it); list the origins that may send credentials',
  })
  .refine((c) => !c.credentials || !c.methods.includes('*'), {
    path: ['methods'],
    message:
      'methods "*" cannot be used with credentials: true (browsers take it literally); list the methods',
  })
  .refine((c) => !c.credentials || !c.headers.includes('*'), {
    path: ['headers'],
    message:
      'headers "*" cannot be used with credentials: true (browsers take it literally); list the headers',
  })
  .describe(
    'Cross-origin requests from browsers: preflights answered at the gateway, CORS fields on responses.',
  );

export type CorsConfig = z.output<typeof schema>;

export const corsPolicy: PolicyKind<CorsConfig> = {
  type: 'cors',
  phase: PolicyPhase.cors,
  schema,
  compile: compileCors,
};

/** Fetch's CORS-safelisted methods: a preflight never needs to list them. */
const SAFELISTED_METHODS = new Set(['GET', 'HEAD', 'POST']);
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';

function compileCors(cfg: CorsConfig, ctx: PolicyCompileContext): PolicyStages {
  if (
    cfg.credentials &&
    (cfg.origins.includes('*') || cfg.methods.includes('*') || cfg.headers.includes('*'))
  ) {
    throw new Error(`${ctx.source}: "*" cannot be used with credentials: true`);
  }
  const name = ctx.name;
  const origins = new OriginMatcher(cfg.origins);
  // With `*` and no credentials every response is the same whatever the Origin: no Vary needed.
  const varies = !origins.any || cfg.credentials;
  const anyMethod = cfg.methods.includes('*');
  const methods = new Set(cfg.methods.filter((m) => m !== '*'));
  const anyHeader = cfg.headers.includes('*');
  const headers = new Set(cfg.headers.filter((h) => h !== '*').map((h) => h.toLowerCase()));
  const allowMethods = [...methods].join(', ');
  const allowHeaders = [...headers].join(', ');
  const expose = cfg.exposeHeaders.join(', ');
  const maxAge = String(Math.floor(cfg.maxAge / 1000));

  const refuse = (detail: string): LocalReply => ({
    kind: 'error',
    code: 'cors_origin_not_allowed',
    detail: `policy ${name}: ${detail}`,
    headers: { vary: PREFLIGHT_VARY },
  });

  const preflight = (sc: StageContext, o: string, method: string): LocalReply => {
    if (!origins.allows(o)) return refuse(`origin ${JSON.stringify(o)} is not allowed`);
    if (!anyMethod && !methods.has(method) && !SAFELISTED_METHODS.has(method)) {
      return refuse(`method ${JSON.stringify(method)} is not allowed`);
    }
    const asked = sc.headers['access-control-request-headers'];
    const askedList = typeof asked === 'string' ? asked : '';
    if (!anyHeader && askedList !== '') {
      for (const h of askedList.split(',')) {
        const t = h.trim().toLowerCase();
        if (t !== '' && !headers.has(t)) return refuse(`request header ${JSON.stringify(t)} is not allowed`);
      }
    }
    const h: Record<string, string> = {
      'access-control-allow-origin': origins.any && !cfg.credentials ? '*' : o,
      'access-control-allow-methods': anyMethod ? method : allowMethods || method,
      vary: PREFLIGHT_VARY,
      'content-length': '0',
    };
    const allowHeadersValue = anyHeader ? askedList : allowHeaders;
    if (allowHeadersValue !== '') h['access-control-allow-headers'] = allowHeadersValue;
    if (cfg.credentials) h['access-control-allow-credentials'] = 'true';
    if (cfg.maxAge > 0) h['access-control-max-age'] = maxAge;
    return { kind: 'response', status: 204, headers: h, body: '' };
  };

  const response: ResponseStage = {
    name: `cors:${name}`,
    onResponse: function addCorsHeaders(_status, out, sc) {
      const o = sc.headers.origin;
      if (o === undefined) {
        if (varies) addVary(out);
        return;
      }
      // The preflight answer this policy made carries its own fields.
      if (sc.method === 'OPTIONS' && sc.headers['access-control-request-method'] !== undefined) return;
      removeCorsFields(out);
      if (varies) addVary(out);
      if (!origins.allows(o)) return;
      out.push('access-control-allow-origin', origins.any && !cfg.credentials ? '*' : o);
      if (cfg.credentials) out.push('access-control-allow-credentials', 'true');
      if (expose !== '') out.push('access-control-expose-headers', expose);
    },
  };

  return {
    request: {
      name: `cors:${name}`,
      onRequest: function answerPreflight(sc) {
        if (sc.method !== 'OPTIONS') return undefined;
        const h = sc.headers;
        const o = h.origin;
        const method = h['access-control-request-method'];
        // An OPTIONS request that is not a CORS preflight is the upstream's.
        if (o === undefined || typeof method !== 'string') return undefined;
        return preflight(sc, o, method);
      },
    },
    response,
  };
}

/** Drops the upstream's Access-Control-Allow-* and -Expose-Headers fields (names in any case). */
function removeCorsFields(out: string[]): void {
  for (let i = 0; i < out.length; ) {
    const n = out[i]!;
    if (n.length >= 27 && /^access-control-(allow-|expose-headers$)/i.test(n)) out.splice(i, 2);
    else i += 2;
  }
}

/** Adds Origin to the response's Vary (one field, merged with the upstream's). */
function addVary(out: string[]): void {
  for (let i = 0; i < out.length; i += 2) {
    const n = out[i]!;
    if (n.length === 4 && n.toLowerCase() === 'vary') {
      const v = out[i + 1]!;
      if (v.trim() === '*' || /(^|,)\s*origin\s*(,|$)/i.test(v)) return;
      out[i + 1] = v === '' ? 'Origin' : `${v}, Origin`;
      return;
    }
  }
  out.push('vary', 'Origin');
}
