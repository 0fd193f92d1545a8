// Micro benchmark of the auth policies' per-request work: JWT verification (signature vs cache hit) and authz
// rules (plain matchers vs a CEL condition, with the per-request activation). Run `npm run build` first (it
// imports dist/). Bounded: a fixed number of iterations per scenario, a few seconds in all.
//
//   node bench/auth.js            full run
//   node bench/auth.js --quick    fewer iterations, for a smoke test
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { compileIdentity } from '../dist/stages/auth/identity.js';
import { authzStage } from '../dist/stages/authz/kind.js';
import { authzSchema } from '../dist/stages/authz/schema.js';
import { JwtVerifier } from '../dist/stages/jwt/verify.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 20_000 : 200_000;
const N_CRYPTO = QUICK ? 500 : 3_000;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** ns per call: the median of 5 bursts of n calls. */
async function time(n, fn) {
  for (let i = 0; i < Math.min(n, 2000); i++) await fn(i);
  const bursts = [];
  for (let b = 0; b < 5; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = fn(i);
      if (r instanceof Promise) await r;
    }
    bursts.push(Number(process.hrtime.bigint() - start) / n);
  }
  return median(bursts);
}

const rows = [];
function report(name, ns) {
  rows.push({ scenario: name, 'ns/op': Math.round(ns), 'ops/s': Math.round(1e9 / ns) });
}

// ---- JWT ----
const ISS = 'https://issuer.bench/';
for (const [alg, kp] of [
  ['RS256', generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ['ES256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
]) {
  const make = (cacheEntries) =>
    new JwtVerifier({
      issuers: [
        {
          issuer: ISS,
          audiences: new Set(['api']),
          algorithms: [alg],
          requiredClaims: ['sub'],
          keys: [{ kid: 'k', alg: undefined, key: kp.publicKey }],
          remote: undefined,
        },
      ],
      leeway: 30,
      maxTokenBytes: 8192,
      requireExpiry: true,
      maxAge: undefined,
      cacheEntries,
      cacheTtl: 300_000,
      identity: compileIdentity(
        { claimsToHeaders: [{ claim: 'sub', header: 'x-user' }], unknownConsumer: 'anonymous' },
        new Map(),
      ),
    });
  const token = await new SignJWT({ iss: ISS, aud: 'api', sub: 'alice', scope: 'orders:read profile' })
    .setProtectedHeader({ alg, kid: 'k' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(kp.privateKey);
  const uncached = make(0);
  report(`jwt ${alg} verify (no cache)`, await time(N_CRYPTO, () => uncached.verify(token)));
  const cached = make(10_000);
  await cached.verify(token);
  report(`jwt ${alg} cache hit`, await time(N, () => cached.verify(token)));
}

// ---- authz ----
const ctx = {
  method: 'GET',
  host: 'api.example',
  hostHeader: 'api.example',
  path: '/api/v1/orders/7',
  query: '',
  params: undefined,
  upstreamPath: '/api/v1/orders/7',
  upstreamHeaders: [],
  upstreamHost: undefined,
  clientCert: undefined,
  headers: { 'x-tenant': 't1', accept: '*/*', 'user-agent': 'bench' },
  clientAddress: () => '127.0.0.1',
  consumer: { name: 'alice', groups: ['admins', 'ops'], metadata: { tenant: 't1' } },
  claims: { sub: 'alice', scope: 'orders:read profile', level: 5 },
  route: { name: 'r' },
};
const scenarios = {
  'authz matchers (method, path glob, group)': {
    rules: [
      { action: 'deny', methods: ['DELETE'] },
      { action: 'allow', methods: ['GET'], paths: [{ glob: '/api/*/orders/**' }], groups: ['admins'] },
    ],
  },
  'authz CEL: claims.level > 2': {
    rules: [{ action: 'allow', when: 'claims.level > 2' }],
  },
  'authz CEL: header == consumer metadata': {
    rules: [{ action: 'allow', when: 'request.headers["x-tenant"] == consumer.metadata["tenant"]' }],
  },
  'authz CEL: scopes.exists + path': {
    rules: [
      {
        action: 'allow',
        when: 'request.path.startsWith("/api/") && scopes.exists(s, s == "orders:read")',
      },
    ],
  },
};
for (const [name, cfg] of Object.entries(scenarios)) {
  const stage = authzStage('bench', authzSchema.parse(cfg));
  if (stage.onRequest(ctx) !== undefined) throw new Error(`${name}: expected allow`);
  report(name, await time(N, () => stage.onRequest(ctx)));
}

console.table(rows);
console.log(
  `node ${process.version}, ${N} iterations per cached/authz scenario, ${N_CRYPTO} per signature scenario`,
);
