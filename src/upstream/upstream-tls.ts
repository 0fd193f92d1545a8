/**
 * The client side of TLS to a service's endpoints: one secure context per service TLS config (CA bundle, client
 * certificate), built when the config or its files change, never per connection. New connections use the current
 * context; open ones keep the one they shook hands with.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import { formatConfigPath } from '../config/errors.js';
import { inspectUpstreamTls, type UpstreamTlsConfig } from '../config/tls.js';
import { signature, signatureSync } from '../core/file-signature.js';

/** How often the CA, certificate and key files are checked for changes (tests shorten it). */
export const upstreamCertificateReload = { intervalMs: 2_000 };

export class UpstreamTlsError extends Error {
  override name = 'UpstreamTlsError';
}

export class UpstreamTls {
  readonly config: UpstreamTlsConfig;
  /** The context new connections use. */
  context: SecureContext;
  /** Bumped on every rebuild, so that a connector built on an older context knows it is stale. */
  generation = 0;
  readonly #files: readonly string[];
  #signature: string;
  #candidate: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onError: ((message: string) => void) | undefined;

  /** Throws UpstreamTlsError when the files cannot be loaded. */
  constructor(config: UpstreamTlsConfig, onError?: (message: string) => void) {
    this.config = config;
    this.#onError = onError;
    const { context, files } = build(config);
    this.context = context;
    this.#files = files;
    this.#signature = signatureSync(files);
    if (files.length > 0) this.#schedule();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#check().finally(() => this.#schedule());
    }, upstreamCertificateReload.intervalMs);
    this.#timer.unref();
  }

  /** A change is acted on once it held for one more check, so a certificate and key written apart are read as a pair. */
  async #check(): Promise<void> {
    const sig = await signature(this.#files);
    if (this.#closed || sig === this.#signature) {
      this.#candidate = undefined;
      return;
    }
    if (sig !== this.#candidate) {
      this.#candidate = sig;
      return;
    }
    this.#candidate = undefined;
    this.#signature = sig;
    try {
      this.context = build(this.config).context;
      this.generation++;
    } catch (err) {
      this.#onError?.(
        `changed upstream TLS files refused; the previous ones stay in use: ${(err as Error).message}`,
      );
    }
  }
}

/** A secure context for `config` as it is now (health checks, which are rebuilt with their service). Throws. */
export function upstreamSecureContext(config: UpstreamTlsConfig): SecureContext {
  return build(config).context;
}

function build(config: UpstreamTlsConfig): { context: SecureContext; files: readonly string[] } {
  const { problems, material } = inspectUpstreamTls(config, process.cwd());
  if (material === undefined)
    throw new UpstreamTlsError(
      problems.map((p) => `tls.${formatConfigPath(p.path)}: ${p.message}`).join('; '),
    );
  const context = createSecureContext({
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    minVersion: config.minVersion,
    maxVersion: config.maxVersion ?? 'TLSv1.3',
  });
  return { context, files: material.files };
}
