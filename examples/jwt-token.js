// Signs a demo JWT with the TEST-ONLY key in examples/keys/ (see its README), for trying examples/jwt.yaml and
// examples/authz.yaml. Never use that key for anything real.
//
//   node examples/jwt-token.js                                  # sub alice, 10 minutes
//   node examples/jwt-token.js '{"sub":"svc-7","scope":"orders:read","tenant":"t1"}'
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';

const key = readFileSync(new URL('./keys/jwt-test.key', import.meta.url), 'utf8');
const claims = JSON.parse(process.argv[2] ?? '{"sub":"alice"}');
const { createPrivateKey } = await import('node:crypto');
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: 'ES256', kid: 'demo-1' })
  .setIssuer('https://issuer.example.test/')
  .setAudience('demo-api')
  .setIssuedAt()
  .setExpirationTime('10m')
  .sign(createPrivateKey(key));
console.log(token);
