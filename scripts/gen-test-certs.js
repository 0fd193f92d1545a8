#!/usr/bin/env node
// Generates TEST-ONLY certificates and keys (ECDSA P-256) for the TLS tests and examples/certs/.
//
//   node scripts/gen-test-certs.js <out-dir> [--years N]
//
// Nothing made here may ever protect real traffic: the private keys are committed (examples/certs/) or written to
// temp folders, and every subject says "TEST ONLY". Uses @peculiar/x509 (a devDependency) on Node's WebCrypto.
//
// What it writes (each `<name>.crt` with its `<name>.key`):
//   ca                two test CAs; `other-ca` signs a client certificate that `ca` does not trust
//   other-ca
//   api               server: DNS api.example.test (an exact name)
//   api-rotated       server: the same name, another key and serial (for rotation tests)
//   wildcard          server: DNS *.example.test
//   multi             server: DNS a.multi.test, b.multi.test
//   default           server: DNS localhost, IP 127.0.0.1 and ::1, URI spiffe://trellis.test/gateway
//   expired           server: DNS expired.example.test, expired yesterday
//   future            server: DNS future.example.test, valid only from half the validity on
//   wrong.key         a key that belongs to no certificate
//   client            client: URI spiffe://trellis.test/ns/default/sa/client, DNS client.example.test,
//                     email client@example.test, signed by `ca`
//   client-other-ca   client: the same names, signed by `other-ca`
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 24 * 3600 * 1000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const TRUST_DOMAIN = 'trellis.test';

/**
 * Writes the fixtures into `dir` (created if needed). `years` is the validity of the certificates meant to be
 * valid; the committed examples use a long one so that they do not expire under the project.
 */
export async function generateTestCerts(dir, { years = 50 } = {}) {
  mkdirSync(dir, { recursive: true });
  const now = Date.now();
  const valid = { notBefore: new Date(now - DAY), notAfter: new Date(now + years * 365 * DAY) };
  let serial = 1;

  const write = async (name, cert, keys) => {
    writeFileSync(join(dir, `${name}.crt`), `${cert.toString('pem')}\n`);
    if (keys) writeFileSync(join(dir, `${name}.key`), await keyPem(keys));
  };

  const ca = await makeCa('Trellis Test CA (TEST ONLY)', valid, serial++);
  await write('ca', ca.cert, ca.keys);
  const otherCa = await makeCa('Other Test CA (TEST ONLY)', valid, serial++);
  await write('other-ca', otherCa.cert, otherCa.keys);

  const server = async (name, cn, sans, times = valid) => {
    const leaf = await makeLeaf(ca, cn, sans, SERVER_AUTH, times, serial++);
    await write(name, leaf.cert, leaf.keys);
  };
  const dns = (value) => ({ type: 'dns', value });
  await server('api', 'api.example.test', [dns('api.example.test')]);
  await server('api-rotated', 'api.example.test (rotated)', [dns('api.example.test')]);
  await server('wildcard', '*.example.test', [dns('*.example.test')]);
  await server('multi', 'a.multi.test', [dns('a.multi.test'), dns('b.multi.test')]);
  await server('default', 'localhost', [
    dns('localhost'),
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
    { type: 'url', value: `spiffe://${TRUST_DOMAIN}/gateway` },
  ]);
  await server('expired', 'expired.example.test', [dns('expired.example.test')], {
    notBefore: new Date(now - 30 * DAY),
    notAfter: new Date(now - DAY),
  });
  await server('future', 'future.example.test', [dns('future.example.test')], {
    notBefore: new Date(now + (years * 365 * DAY) / 2),
    notAfter: new Date(now + years * 365 * DAY),
  });
  writeFileSync(join(dir, 'wrong.key'), await keyPem(await newKeys()));

  const clientSans = [
    { type: 'url', value: `spiffe://${TRUST_DOMAIN}/ns/default/sa/client` },
    dns('client.example.test'),
    { type: 'email', value: 'client@example.test' },
  ];
  const client = await makeLeaf(ca, 'client-1', clientSans, CLIENT_AUTH, valid, serial++);
  await write('client', client.cert, client.keys);
  const stranger = await makeLeaf(otherCa, 'client-1', clientSans, CLIENT_AUTH, valid, serial++);
  await write('client-other-ca', stranger.cert, stranger.keys);

  writeFileSync(
    join(dir, 'README.md'),
    '# TEST-ONLY certificates\n\n' +
      'Made by `node scripts/gen-test-certs.js <this folder>` (ECDSA P-256: two test CAs, server and client ' +
      'certificates; the script says which is which). Their private keys are public: use them for tests and ' +
      'examples only, never to protect real traffic.\n',
  );
}

function newKeys() {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
}

async function keyPem(keys) {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const lines = der
    .toString('base64')
    .match(/.{1,64}/g)
    .join('\n');
  return `-----BEGIN PRIVATE KEY-----\n${lines}\n-----END PRIVATE KEY-----\n`;
}

/** A positive serial: a counter, then random bytes so that two runs never repeat one under the same CA name. */
function serialHex(n) {
  const tail = Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex');
  return `${n.toString(16).padStart(2, '0')}${tail}`;
}

async function makeCa(cn, times, n) {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(n),
    name: `O=Trellis Tests, CN=${cn}`,
    ...times,
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

async function makeLeaf(ca, cn, sans, usage, times, n) {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(n),
    subject: `O=Trellis Tests, OU=TEST ONLY, CN=${cn}`,
    issuer: ca.cert.subject,
    ...times,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { cert, keys };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const yearsAt = args.indexOf('--years');
  const years = yearsAt >= 0 ? Number(args.splice(yearsAt, 2)[1]) : 50;
  if (args.length !== 1 || !Number.isInteger(years) || years < 1) {
    process.stderr.write('usage: node scripts/gen-test-certs.js <out-dir> [--years N]\n');
    process.exit(2);
  }
  const dir = resolve(args[0]);
  await generateTestCerts(dir, { years });
  process.stdout.write(`test-only certificates written to ${dir}\n`);
}
