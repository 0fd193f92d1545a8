/**
 * Reading and checking the TLS material of a listener: certificates, keys and the client CA bundle. Validation
 * and the listener's certificate reload run the same code, so a file that a reload refuses gets the message
 * `trellis validate` would give. No sockets here: contexts are built only to let OpenSSL check what it will load.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { PathSegment } from './errors.js';
import type { ListenerConfig, ServiceConfig } from './schema.js';

export type TlsConfig = NonNullable<ListenerConfig['tls']>;

/** Certificates, keys and CA bundles are small; this keeps a wrong path (a log, /dev/zero) out of memory. */
const MAX_PEM_BYTES = 4 * 1024 * 1024;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;
const KEY_BLOCKS = new Set(['PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY', 'ENCRYPTED PRIVATE KEY']);

/** Header names the gateway sets itself: a client certificate header must not take one of them over. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'via',
  'x-request-id',
  'traceparent',
  'tracestate',
]);

/** One certificate as it will be served. */
export interface CertificateMaterial {
  /** The certificate chain (leaf first) as PEM. */
  readonly cert: string;
  /** The private key as PEM. */
  readonly key: string;
  /** The leaf. */
  readonly x509: X509Certificate;
  /** SNI names it serves, lower case: exact names and `*.suffix` wildcards. */
  readonly names: readonly string[];
}

export interface TlsMaterial {
  /** In config order; the first is the default. */
  readonly certificates: readonly CertificateMaterial[];
  /** The client CA bundle (PEM), when client certificates are asked for. */
  readonly ca: string | undefined;
  /** Files the material was read from (absolute), for the reload watcher; inline PEM has none. */
  readonly files: readonly string[];
}

/** A problem, with its path inside the listener's `tls` object. */
export interface TlsProblem {
  readonly path: PathSegment[];
  readonly message: string;
}

export type TlsInspection = { ok: true; material: TlsMaterial } | { ok: false; problems: TlsProblem[] };

/** A `cert`, `key` or `ca` value holding PEM text itself (from `${file:}` or `${env:}`) rather than a path. */
export function isInlinePem(value: string): boolean {
  return value.includes('-----BEGIN ');
}

/** The absolute file a `cert`, `key` or `ca` value names; inline PEM unchanged. */
export function resolvePemPath(value: string, baseDir: string): string {
  return isInlinePem(value) || isAbsolute(value) ? value : resolve(baseDir, value);
}

/** The listener's `tls` with every file path made absolute (validated configs carry absolute paths). */
export function resolveTlsPaths(tls: TlsConfig, baseDir: string): TlsConfig {
  const ca = tls.clientAuth.ca;
  return {
    ...tls,
    certificates: tls.certificates.map((c) => ({
      ...c,
      cert: resolvePemPath(c.cert, baseDir),
      key: resolvePemPath(c.key, baseDir),
    })),
    clientAuth: { ...tls.clientAuth, ca: ca === undefined ? undefined : resolvePemPath(ca, baseDir) },
  };
}

/**
 * Reads and checks everything a listener's `tls` names, as of `now`: files readable and PEM, keys matching their
 * certificates, certificates valid now, names covered by the certificates and not served twice, the CA bundle,
 * versions and ciphers. Every problem names the file it is about.
 */
export function inspectTls(tls: TlsConfig, baseDir: string, now = Date.now()): TlsInspection {
  const problems: TlsProblem[] = [];
  const add = (path: PathSegment[], message: string) => problems.push({ path, message });
  const files: string[] = [];
  const certificates: CertificateMaterial[] = [];
  const served = new Map<string, { index: number; label: string }>();

  if (tls.maxVersion !== undefined && tls.maxVersion < tls.minVersion)
    add(['maxVersion'], `maxVersion ${tls.maxVersion} is below minVersion ${tls.minVersion}`);
  if (tls.ciphers !== undefined) {
    try {
      createSecureContext({ ciphers: tls.ciphers });
    } catch (err) {
      add(['ciphers'], `OpenSSL accepts no cipher in "${tls.ciphers}": ${reason(err)}`);
    }
  }

  let ca: string | undefined;
  const auth = tls.clientAuth;
  if (auth.mode !== 'none') {
    if (auth.ca === undefined) {
      add(
        ['clientAuth'],
        `clientAuth.mode ${auth.mode} needs \`ca\`: the PEM bundle of the CAs client certificates must chain to`,
      );
    } else {
      ca = readCaBundle(auth.ca, baseDir, files, (m) => add(['clientAuth', 'ca'], m));
    }
  }
  if (auth.forwardHeader !== undefined) {
    const h = auth.forwardHeader.toLowerCase();
    if (auth.mode === 'none')
      add(['clientAuth', 'forwardHeader'], 'forwardHeader needs clientAuth.mode optional or required');
    else if (RESERVED_HEADERS.has(h))
      add(['clientAuth', 'forwardHeader'], `"${h}" is a header the gateway sets itself; choose another name`);
  }

  tls.certificates.forEach((c, i) => {
    const at: PathSegment[] = ['certificates', i];
    const certSource = source(c.cert, baseDir, 'certificate');
    const keySource = source(c.key, baseDir, 'key');
    const certText = readPem(certSource, files, (m) => add([...at, 'cert'], m));
    const keyText = readPem(keySource, files, (m) => add([...at, 'key'], m));
    if (certText === undefined || keyText === undefined) return;

    const certBlocks = pemBlocks(certText).filter((b) => b.type === 'CERTIFICATE');
    if (certBlocks.length === 0) {
      add([...at, 'cert'], `${certSource.label} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
      return;
    }
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(certBlocks[0]!.text);
    } catch (err) {
      add([...at, 'cert'], `${certSource.label}: cannot parse the certificate: ${reason(err)}`);
      return;
    }
    const keyBlock = pemBlocks(keyText).find((b) => KEY_BLOCKS.has(b.type));
    if (keyBlock === undefined) {
      add([...at, 'key'], `${keySource.label} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
      return;
    }
    if (keyBlock.type === 'ENCRYPTED PRIVATE KEY' || /Proc-Type: 4,ENCRYPTED/.test(keyBlock.text)) {
      add([...at, 'key'], `${keySource.label} is encrypted; Trellis needs an unencrypted private key`);
      return;
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(keyBlock.text);
    } catch (err) {
      add([...at, 'key'], `${keySource.label}: cannot parse the private key: ${reason(err)}`);
      return;
    }
    if (!x509.checkPrivateKey(key)) {
      add([...at, 'key'], `${keySource.label} is not the private key of ${certSource.label}`);
      return;
    }
    const from = Date.parse(x509.validFrom);
    const to = Date.parse(x509.validTo);
    if (to < now) add([...at, 'cert'], `${certSource.label} expired on ${iso(to)}`);
    else if (from > now) add([...at, 'cert'], `${certSource.label} is not valid before ${iso(from)}`);

    const sans = dnsNames(x509);
    let names: string[];
    if (c.names !== undefined) {
      names = [];
      c.names.forEach((raw, k) => {
        const n = raw.toLowerCase();
        if (!sans.some((san) => covers(san, n))) {
          const has = sans.length === 0 ? 'it has no DNS names' : `its DNS names: ${sans.join(', ')}`;
          add([...at, 'names', k], `${certSource.label} is not valid for "${n}" (${has})`);
        } else if (!names.includes(n)) names.push(n);
      });
    } else {
      names = [...new Set(sans)];
      if (names.length === 0 && i > 0)
        add(
          [...at, 'cert'],
          `${certSource.label} has no DNS names, so no SNI name selects it; give \`names\` or make it the first (default) certificate`,
        );
    }
    names.forEach((n) => {
      const other = served.get(n);
      if (other !== undefined) {
        const k = c.names?.findIndex((raw) => raw.toLowerCase() === n) ?? -1;
        add(
          k >= 0 ? [...at, 'names', k] : [...at, 'cert'],
          `"${n}" is served by certificates[${other.index}] (${other.label}) and by ${certSource.label}; list \`names\` to choose`,
        );
      } else served.set(n, { index: i, label: certSource.label });
    });

    const chain = certBlocks.map((b) => b.text).join('\n');
    try {
      createSecureContext({ cert: chain, key: keyBlock.text, minVersion: tls.minVersion });
    } catch (err) {
      add([...at, 'cert'], `${certSource.label}: OpenSSL refused the certificate or key: ${reason(err)}`);
      return;
    }
    certificates.push({ cert: chain, key: keyBlock.text, x509, names });
  });

  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, material: { certificates, ca, files } };
}

export type UpstreamTlsConfig = NonNullable<ServiceConfig['tls']>;

/** What a service's upstream TLS settings load: PEM text for the client side of the handshake. */
export interface UpstreamTlsMaterial {
  /** The CA bundle; undefined: the system's CAs. */
  readonly ca: string | undefined;
  /** The client certificate chain and its key, for endpoints that ask (mTLS). */
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /** Files read (absolute), for the reload check. */
  readonly files: readonly string[];
}

/** A service's `tls` with every file path made absolute. */
export function resolveUpstreamTlsPaths(tls: UpstreamTlsConfig, baseDir: string): UpstreamTlsConfig {
  const abs = (v: string | undefined) => (v === undefined ? undefined : resolvePemPath(v, baseDir));
  return { ...tls, ca: abs(tls.ca), cert: abs(tls.cert), key: abs(tls.key) };
}

/**
 * Reads and checks a service's upstream TLS files: the CA bundle parses, the client certificate and key parse,
 * belong together and are valid now, versions are in order. Validation and the upstream pools run this same code.
 */
export function inspectUpstreamTls(
  tls: UpstreamTlsConfig,
  baseDir: string,
  now = Date.now(),
): { problems: TlsProblem[]; material: UpstreamTlsMaterial | undefined } {
  const problems: TlsProblem[] = [];
  const add = (path: PathSegment[], message: string) => problems.push({ path, message });
  const files: string[] = [];
  if (tls.maxVersion !== undefined && tls.maxVersion < tls.minVersion)
    add(['maxVersion'], `maxVersion ${tls.maxVersion} is below minVersion ${tls.minVersion}`);
  const ca = tls.ca === undefined ? undefined : readCaBundle(tls.ca, baseDir, files, (m) => add(['ca'], m));
  let cert: string | undefined;
  let key: string | undefined;
  if (tls.cert !== undefined && tls.key !== undefined) {
    const certSource = source(tls.cert, baseDir, 'certificate');
    const keySource = source(tls.key, baseDir, 'key');
    const certText = readPem(certSource, files, (m) => add(['cert'], m));
    const keyText = readPem(keySource, files, (m) => add(['key'], m));
    if (certText !== undefined && keyText !== undefined) {
      const certBlocks = pemBlocks(certText).filter((b) => b.type === 'CERTIFICATE');
      const keyBlock = pemBlocks(keyText).find((b) => KEY_BLOCKS.has(b.type));
      let x509: X509Certificate | undefined;
      let keyObject: KeyObject | undefined;
      if (certBlocks.length === 0)
        add(['cert'], `${certSource.label} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
      else {
        try {
          x509 = new X509Certificate(certBlocks[0]!.text);
        } catch (err) {
          add(['cert'], `${certSource.label}: cannot parse the certificate: ${reason(err)}`);
        }
      }
      if (keyBlock === undefined)
        add(['key'], `${keySource.label} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
      else if (keyBlock.type === 'ENCRYPTED PRIVATE KEY' || /Proc-Type: 4,ENCRYPTED/.test(keyBlock.text))
        add(['key'], `${keySource.label} is encrypted; Trellis needs an unencrypted private key`);
      else {
        try {
          keyObject = createPrivateKey(keyBlock.text);
        } catch (err) {
          add(['key'], `${keySource.label}: cannot parse the private key: ${reason(err)}`);
        }
      }
      if (x509 !== undefined && keyObject !== undefined) {
        if (!x509.checkPrivateKey(keyObject))
          add(['key'], `${keySource.label} is not the private key of ${certSource.label}`);
        else {
          const to = Date.parse(x509.validTo);
          const from = Date.parse(x509.validFrom);
          if (to < now) add(['cert'], `${certSource.label} expired on ${iso(to)}`);
          else if (from > now) add(['cert'], `${certSource.label} is not valid before ${iso(from)}`);
          cert = certBlocks.map((b) => b.text).join('\n');
          key = keyBlock!.text;
        }
      }
    }
  }
  if (problems.length > 0) return { problems, material: undefined };
  return { problems, material: { ca, cert, key, files: [...new Set(files)] } };
}

/** Whether a certificate DNS name (exact or `*.suffix`) covers an SNI name (exact or `*.suffix`). */
export function covers(san: string, name: string): boolean {
  if (san === name) return true;
  if (!san.startsWith('*.') || name.startsWith('*.')) return false;
  const dot = name.indexOf('.');
  return dot > 0 && name.slice(dot + 1) === san.slice(2);
}

/** The DNS names of a certificate's subjectAltName, lower case. */
export function dnsNames(x509: X509Certificate): string[] {
  return parseSubjectAltName(x509.subjectAltName)
    .filter((e) => e.type === 'DNS')
    .map((e) => e.value.toLowerCase());
}

/**
 * Node's subjectAltName text → entries. Entries are `TYPE:value` separated by ", "; a value with special
 * characters is a JSON string (Node ≥ 17.3 quotes those, so a comma inside a name cannot forge an entry).
 */
export function parseSubjectAltName(text: string | undefined): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  if (text === undefined || text === '') return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      end++;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        value = text.slice(colon + 2, end - 1);
      }
    } else {
      end = text.indexOf(', ', colon + 1);
      if (end < 0) end = text.length;
      value = text.slice(colon + 1, end);
    }
    out.push({ type, value });
    i = end + 2;
  }
  return out;
}

interface Source {
  /** A path (absolute) or inline PEM text. */
  readonly value: string;
  readonly inline: boolean;
  /** How messages name it: `certificate file "/etc/trellis/api.crt"`. */
  readonly label: string;
}

function source(value: string, baseDir: string, what: string): Source {
  if (isInlinePem(value)) return { value, inline: true, label: `the inline ${what} (PEM text)` };
  const path = resolvePemPath(value, baseDir);
  return { value: path, inline: false, label: `${what} file "${path}"` };
}

function readPem(src: Source, files: string[], fail: (message: string) => void): string | undefined {
  if (src.inline) return src.value;
  files.push(src.value);
  try {
    const st = statSync(src.value);
    if (!st.isFile()) {
      fail(`${src.label} is not a regular file`);
      return undefined;
    }
    if (st.size > MAX_PEM_BYTES) {
      fail(`${src.label} is larger than 4 MiB; expected a PEM file`);
      return undefined;
    }
    return readFileSync(src.value, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : reason(err);
    fail(`cannot read ${src.label}: ${why}`);
    return undefined;
  }
}

function readCaBundle(
  value: string,
  baseDir: string,
  files: string[],
  fail: (message: string) => void,
): string | undefined {
  const src = source(value, baseDir, 'CA');
  const text = readPem(src, files, fail);
  if (text === undefined) return undefined;
  const blocks = pemBlocks(text).filter((b) => b.type === 'CERTIFICATE');
  if (blocks.length === 0) {
    fail(`${src.label} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    return undefined;
  }
  for (const [k, b] of blocks.entries()) {
    try {
      new X509Certificate(b.text);
    } catch (err) {
      fail(`${src.label}: certificate ${k + 1} of ${blocks.length} does not parse: ${reason(err)}`);
      return undefined;
    }
  }
  return blocks.map((b) => b.text).join('\n');
}

function pemBlocks(text: string): { type: string; text: string }[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({ type: m[1]!, text: `${m[0]}\n` }));
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
