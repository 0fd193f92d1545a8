/**
 * The verified client certificate of a TLS connection, read once per connection (cached on the socket) and only
 * when something asks: a plain TLS request pays nothing for it.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { parseSubjectAltName } from '../config/tls.js';

/** What later policy stages may rely on: set only when the certificate chained to the listener's CA. */
export interface ClientCertificate {
  /** RFC 4514 form, most specific first: `CN=client-1,OU=Payments,O=Example`. */
  readonly subject: string;
  /** The issuer, in the same form. */
  readonly issuer: string;
  /** subjectAltName DNS names. */
  readonly dns: readonly string[];
  /** subjectAltName URIs: a SPIFFE ID (`spiffe://trust-domain/...`) is one. */
  readonly uris: readonly string[];
  /** subjectAltName e-mail addresses. */
  readonly emails: readonly string[];
  /** SHA-256 of the DER certificate, lower-case hex without separators. */
  readonly sha256: string;
  /** Serial number, upper-case hex. */
  readonly serialNumber: string;
  readonly validFrom: Date;
  readonly validTo: Date;
}

const kCert = Symbol('trellis.clientCert');
const kForward = Symbol('trellis.clientCertForward');

type CertSocket = Socket & {
  encrypted?: boolean;
  authorized?: boolean;
  getPeerX509Certificate?: () => X509Certificate | undefined;
  getX509Certificate?: () => X509Certificate | undefined;
  /** null: looked, there is none. */
  [kCert]?: ClientCertificate | null;
  [kForward]?: string | null;
};

/**
 * The connection's client certificate when one was presented and verified against the listener's CA; undefined
 * on plain HTTP, without a certificate, and (mode optional) with one that did not verify.
 */
export function clientCertOf(socket: Socket): ClientCertificate | undefined {
  const s = socket as CertSocket;
  let cert = s[kCert];
  if (cert === undefined) {
    cert = s.encrypted === true && s.authorized === true ? readPeer(s) : null;
    s[kCert] = cert;
  }
  return cert ?? undefined;
}

/** The value of the forwarded client certificate header for this connection, or undefined without one. */
export function forwardedClientCert(socket: Socket): string | undefined {
  const s = socket as CertSocket;
  let value = s[kForward];
  if (value === undefined) {
    const cert = clientCertOf(socket);
    value = cert === undefined ? null : formatForwardedClientCert(cert, localUri(s));
    s[kForward] = value;
  }
  return value ?? undefined;
}

/**
 * Envoy's x-forwarded-client-cert element: `By=<our URI SAN>;Hash=<sha256>;Subject="<subject>";URI=<uri>;DNS=<dns>`
 * (one URI= and DNS= pair per name). A value with `,` `;` `=` `"` `\` or spaces is a quoted string with `"` and
 * `\` escaped by a backslash; bytes outside printable ASCII become `\XX` in the subject (RFC 4514) and `%XX`
 * elsewhere, so the header never carries a control character.
 */
export function formatForwardedClientCert(cert: ClientCertificate, by: string | undefined): string {
  const parts: string[] = [];
  if (by !== undefined) parts.push(`By=${element(ascii(by, '%'), false)}`);
  parts.push(`Hash=${cert.sha256}`);
  parts.push(`Subject=${element(ascii(cert.subject, '\\'), true)}`);
  for (const u of cert.uris) parts.push(`URI=${element(ascii(u, '%'), false)}`);
  for (const d of cert.dns) parts.push(`DNS=${element(ascii(d, '%'), false)}`);
  return parts.join(';');
}

function readPeer(s: CertSocket): ClientCertificate | null {
  const x = s.getPeerX509Certificate?.();
  if (x === undefined) return null;
  const dns: string[] = [];
  const uris: string[] = [];
  const emails: string[] = [];
  for (const e of parseSubjectAltName(x.subjectAltName)) {
    if (e.type === 'DNS') dns.push(e.value);
    else if (e.type === 'URI') uris.push(e.value);
    else if (e.type === 'email') emails.push(e.value);
  }
  return Object.freeze({
    subject: rfc4514(x.subject),
    issuer: rfc4514(x.issuer),
    dns: Object.freeze(dns),
    uris: Object.freeze(uris),
    emails: Object.freeze(emails),
    sha256: x.fingerprint256.replaceAll(':', '').toLowerCase(),
    serialNumber: x.serialNumber.toUpperCase(),
    validFrom: new Date(x.validFrom),
    validTo: new Date(x.validTo),
  });
}

/** The first URI SAN of the certificate this connection was served with (the gateway's identity), if any. */
function localUri(s: CertSocket): string | undefined {
  const own = s.getX509Certificate?.();
  return parseSubjectAltName(own?.subjectAltName).find((e) => e.type === 'URI')?.value;
}

/**
 * Node prints names one attribute per line, least specific first, values escaped as RFC 2253 says (a newline
 * inside a value is `\0A`): reversed and joined with commas, that is RFC 4514.
 */
function rfc4514(name: string): string {
  return name.split('\n').reverse().join(',');
}

/** `value` with every character outside printable ASCII written as escaped UTF-8 bytes (`\C3\A9` or `%C3%A9`). */
function ascii(value: string, mark: '\\' | '%'): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  let out = '';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (code >= 0x20 && code <= 0x7e) out += ch;
    else
      for (const b of Buffer.from(ch, 'utf8'))
        out += `${mark}${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function element(value: string, quote: boolean): string {
  if (!quote && !/[,;="\\ ]/.test(value)) return value;
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
