import { describe, expect, test } from 'vitest';
import type { ClientCertificate } from '../proxy/client-cert.js';
import { compileConsumers, normalizeFingerprint } from './consumers.js';
import { consumerOfCert } from './mtls.js';

const cert = (over: Partial<ClientCertificate> = {}): ClientCertificate => ({
  subject: 'CN=client-1,O=Example',
  issuer: 'CN=CA',
  dns: ['client.example.test'],
  uris: ['spiffe://example.test/ns/a/sa/client'],
  emails: [],
  sha256: 'ab'.repeat(32),
  serialNumber: '01',
  validFrom: new Date(0),
  validTo: new Date(0),
  ...over,
});

describe('consumerOfCert', () => {
  const { credentials } = compileConsumers([
    {
      name: 'by-fp',
      groups: [],
      metadata: {},
      credentials: { mtls: { fingerprints: [`sha256:${'AB:'.repeat(31)}AB`] } },
    },
    {
      name: 'by-uri',
      groups: [],
      metadata: {},
      credentials: { mtls: { sans: ['spiffe://example.test/ns/a/sa/client'] } },
    },
    {
      name: 'by-subject',
      groups: [],
      metadata: {},
      credentials: { mtls: { subjects: ['CN=other,O=Example'] } },
    },
  ]);

  test('fingerprint first (any spelling), then a SAN, then the subject', () => {
    expect(normalizeFingerprint('AB:CD')).toBe('abcd');
    expect(consumerOfCert(credentials.mtls, cert())?.name).toBe('by-fp');
    expect(consumerOfCert(credentials.mtls, cert({ sha256: '00'.repeat(32) }))?.name).toBe('by-uri');
    expect(
      consumerOfCert(
        credentials.mtls,
        cert({ sha256: '00'.repeat(32), uris: [], subject: 'CN=other,O=Example' }),
      )?.name,
    ).toBe('by-subject');
    expect(consumerOfCert(credentials.mtls, cert({ sha256: '00'.repeat(32), uris: [] }))).toBeUndefined();
  });
});
