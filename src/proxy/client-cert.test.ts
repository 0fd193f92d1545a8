import { describe, expect, test } from 'vitest';
import { type ClientCertificate, formatForwardedClientCert } from './client-cert.js';

const cert = (over: Partial<ClientCertificate> = {}): ClientCertificate => ({
  subject: 'CN=client-1,O=Example',
  issuer: 'CN=CA',
  dns: [],
  uris: [],
  emails: [],
  sha256: 'ab'.repeat(32),
  serialNumber: '01',
  validFrom: new Date(0),
  validTo: new Date(0),
  ...over,
});

describe('the forwarded client certificate header', () => {
  test("Envoy's x-forwarded-client-cert element: By, Hash, Subject, then every URI and DNS name", () => {
    const v = formatForwardedClientCert(
      cert({ uris: ['spiffe://td/ns/a/sa/b'], dns: ['a.test', 'b.test'], emails: ['x@y.test'] }),
      'spiffe://td/gateway',
    );
    expect(v).toBe(
      `By=spiffe://td/gateway;Hash=${'ab'.repeat(32)};Subject="CN=client-1,O=Example";URI=spiffe://td/ns/a/sa/b;DNS=a.test;DNS=b.test`,
    );
    expect(formatForwardedClientCert(cert(), undefined)).toBe(
      `Hash=${'ab'.repeat(32)};Subject="CN=client-1,O=Example"`,
    );
  });

  test('special characters are quoted and escaped; nothing outside printable ASCII gets through', () => {
    const v = formatForwardedClientCert(
      cert({
        subject: 'CN=Bob\\+Al=ice\\;é,O=Acme\\, \\"Inc\\"',
        uris: ['spiffe://td/a;b=c'],
        dns: ['x\r\ny.test'],
      }),
      undefined,
    );
    expect(v).toBe(
      `Hash=${'ab'.repeat(32)};Subject="CN=Bob\\\\+Al=ice\\\\;\\\\C3\\\\A9,O=Acme\\\\, \\\\\\"Inc\\\\\\"";URI="spiffe://td/a;b=c";DNS=x%0D%0Ay.test`,
    );
    expect(v).toMatch(/^[\x20-\x7e]*$/);
  });
});
