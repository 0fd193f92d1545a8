/**
 * TLS termination for one listener: the secure contexts (one per certificate, built when the config or the files
 * change, never per handshake), SNI selection, client certificate settings, and the certificate reload that swaps
 * contexts in place while open connections carry on with the ones they shook hands with.
 */
import { constants, createHash, randomBytes } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { formatConfigPath } from '../config/errors.js';
import { inspectTls, type TlsConfig } from '../config/tls.js';
import { signature, signatureSync } from '../core/file-signature.js';

/**
 * How often the certificate, key and CA files are checked (stat: mtime, size, inode). Polling, not fs.watch:
 * Kubernetes secret volumes swap a symlinked folder, editors and cert-manager replace files by rename, and
 * network or bind mounts often deliver no inotify events at all; a stat of a few files every two seconds costs
 * nothing and sees all of these. A change is acted on once it has held for one more check, so that a cert and key
 * written one after the other are read as a pair. Tests shorten the interval.
 */
export const certificateReload = { intervalMs: 2_000 };

/** ALPN protocols offered by an HTTP/1.1-only listener (`http2.enabled: false`). */
export const ALPN_PROTOCOLS: readonly string[] = ['http/1.1'];
/** ALPN protocols offered by an HTTP/2 listener: h2 preferred, HTTP/1.1 on the same port. */
export const ALPN_PROTOCOLS_H2: readonly string[] = ['h2', 'http/1.1'];

/** Client-initiated renegotiation is a CPU sink and could swap the client certificate under a cached identity. */
const SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION ?? 0;

/** The contexts of one version of the material. */
interface CertSet {
  /** The `tls` config it was built from (JSON). */
  readonly key: string;
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** Wildcard contexts by the suffix after `*.`. */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
  /** The server's own context: the first (default) certificate with every setting. */
  readonly defaultOptions: SecureContextOptions;
  readonly requestCert: boolean;
  readonly rejectUnauthorized: boolean;
  readonly files: readonly string[];
  /** stat signature of `files` when they were read. */
  readonly signature: string;
}

export class TlsMaterialError extends Error {
  override name = 'TlsMaterialError';
}

export class TlsTerminator {
  readonly #listener: string;
  readonly #log: Logger | undefined;
  /** One set of session ticket keys for the listener's life: a certificate reload does not end resumption. */
  readonly #ticketKeys = randomBytes(48);
  #cfg: TlsConfig;
  #set: CertSet;
  /** Built by `prepare` for the config an apply is about to commit. */
  #pending: CertSet | undefined;
  #server: TlsServer | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** A changed signature seen once; acted on when the next check sees it again. */
  #candidate: string | undefined;
  #closed = false;

  /** Throws TlsMaterialError when the material cannot be loaded. */
  constructor(cfg: TlsConfig, listener: string, log?: Logger) {
    this.#listener = listener;
    this.#log = log;
    this.#cfg = cfg;
    this.#set = this.#build(cfg);
  }

  /** TLS options for `https.createServer` (or, with HTTP/2, `http2.createSecureServer`). */
  serverOptions(handshakeTimeout: number, http2 = false): SecureContextOptions & Record<string, unknown> {
    const set = this.#set;
    return {
      ...set.defaultOptions,
      SNICallback: this.#sni,
      ALPNProtocols: [...(http2 ? ALPN_PROTOCOLS_H2 : ALPN_PROTOCOLS)],
      requestCert: set.requestCert,
      rejectUnauthorized: set.rejectUnauthorized,
      handshakeTimeout: handshakeTimeout > 0 ? handshakeTimeout : 120_000,
    };
  }

  /** The server these contexts serve. */
  attach(server: TlsServer): void {
    this.#server = server;
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      this.#log?.debug(
        { listener: this.#listener, client: socket.remoteAddress, code: err.code, err: err.message },
        'TLS handshake failed',
      );
    });
  }

  /** Starts checking the files for changes (once the listener is bound). */
  watch(): void {
    if (this.#timer === undefined) this.#schedule();
  }

  /** Builds the contexts of a new config before an apply swaps (throws when its material is bad). */
  prepare(cfg: TlsConfig): void {
    this.#pending = JSON.stringify(cfg) === this.#set.key ? undefined : this.#build(cfg);
  }

  /** Serves `cfg` from now on: the prepared contexts, or nothing to do when it did not change. */
  commit(cfg: TlsConfig): void {
    const key = JSON.stringify(cfg);
    if (key === this.#set.key) return;
    let next = this.#pending?.key === key ? this.#pending : undefined;
    this.#pending = undefined;
    if (next === undefined) {
      try {
        next = this.#build(cfg);
      } catch (err) {
        this.#log?.error(
          { listener: this.#listener, err: (err as Error).message },
          'TLS settings could not be applied; the previous certificates keep serving',
        );
        return;
      }
    }
    this.#cfg = cfg;
    this.#swap(next);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** Exact name, then the wildcard one label up, then the server's default context (the first certificate). */
  readonly #sni = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const set = this.#set;
    let name = servername.toLowerCase();
    if (name.endsWith('.')) name = name.slice(0, -1);
    let ctx = set.exact.get(name);
    if (ctx === undefined) {
      const dot = name.indexOf('.');
      if (dot > 0) ctx = set.wildcard.get(name.slice(dot + 1));
    }
    cb(null, ctx);
  };

  #build(cfg: TlsConfig): CertSet {
    const key = JSON.stringify(cfg);
    const inspected = inspectTls(cfg, process.cwd());
    if (!inspected.ok) {
      const why = inspected.problems.map((p) => `tls.${formatConfigPath(p.path)}: ${p.message}`);
      throw new TlsMaterialError(why.join('; '));
    }
    const m = inspected.material;
    const auth = cfg.clientAuth;
    const ca = auth.mode === 'none' ? undefined : m.ca;
    const base: SecureContextOptions = {
      minVersion: cfg.minVersion,
      maxVersion: cfg.maxVersion ?? 'TLSv1.3',
      ciphers: cfg.ciphers,
      ca,
      honorCipherOrder: true,
      secureOptions: SECURE_OPTIONS,
      ticketKeys: this.#ticketKeys,
      // Sessions resume only under the same client certificate policy.
      sessionIdContext: createHash('sha256')
        .update(`${auth.mode}\n${ca ?? ''}`)
        .digest('hex')
        .slice(0, 32),
    };
    const exact = new Map<string, SecureContext>();
    const wildcard = new Map<string, SecureContext>();
    for (const c of m.certificates) {
      const ctx = createSecureContext({ ...base, cert: c.cert, key: c.key });
      for (const n of c.names) {
        if (n.startsWith('*.')) wildcard.set(n.slice(2), ctx);
        else exact.set(n, ctx);
      }
    }
    const first = m.certificates[0]!;
    const files = [...new Set(m.files)];
    return {
      key,
      exact,
      wildcard,
      defaultOptions: { ...base, cert: first.cert, key: first.key },
      requestCert: auth.mode !== 'none',
      rejectUnauthorized: auth.mode === 'required',
      files,
      signature: signatureSync(files),
    };
  }

  #swap(next: CertSet): void {
    this.#set = next;
    this.#candidate = undefined;
    const server = this.#server;
    if (server === undefined) return;
    // New handshakes use these; open connections keep the context they shook hands with.
    server.setSecureContext(next.defaultOptions);
    const s = server as TlsServer & { requestCert: boolean; rejectUnauthorized: boolean };
    s.requestCert = next.requestCert;
    s.rejectUnauthorized = next.rejectUnauthorized;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#check().finally(() => this.#schedule());
    }, certificateReload.intervalMs);
    this.#timer.unref();
  }

  /** One poll: rebuild from the files when their signature changed and then held for one more check. */
  async #check(): Promise<void> {
    const set = this.#set;
    if (set.files.length === 0) return;
    const sig = await signature(set.files);
    if (this.#closed || set !== this.#set) return;
    if (sig === set.signature) {
      this.#candidate = undefined;
      return;
    }
    if (sig !== this.#candidate) {
      this.#candidate = sig;
      return;
    }
    let next: CertSet;
    try {
      next = this.#build(this.#cfg);
    } catch (err) {
      this.#log?.error(
        { listener: this.#listener, err: (err as Error).message },
        'changed TLS files refused; the previous certificates keep serving',
      );
      // Not again until the files change once more.
      this.#set = { ...set, signature: sig };
      this.#candidate = undefined;
      return;
    }
    this.#swap(next);
    this.#log?.info({ listener: this.#listener, files: next.files }, 'TLS certificates reloaded from disk');
  }
}
