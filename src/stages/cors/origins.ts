/**
 * Allowed origins, compiled once: exact origins in a Set, `https://*.example.com` patterns as (scheme, suffix,
 * port) triples checked with string operations only (no regular expression), and `*`.
 */

/** `scheme://host[:port]`, the way a browser serializes an Origin; `*.` may lead the host. */
const ORIGIN = /^(https?):\/\/(\*\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/;

const DEFAULT_PORT: Record<string, string> = { http: '80', https: '443' };

/** The config's origin in the form a browser sends it (lower case, default port dropped), or why it is not one. */
export function parseOrigin(
  s: string,
): { origin: string; wildcard: boolean; scheme: string; host: string; port: string } | string {
  const m = ORIGIN.exec(s.toLowerCase());
  if (m === null) {
    return 'expected "*", an origin such as "https://app.example.com" or "http://localhost:3000" (no path), or a pattern such as "https://*.example.com"';
  }
  const scheme = m[1]!;
  const wildcard = m[2] !== undefined;
  const host = m[3]!;
  let port = m[4] ?? '';
  if (port !== '' && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is out of range`;
  if (port === DEFAULT_PORT[scheme]) port = '';
  if (wildcard && host.split('.').length < 2) {
    return `"${s}" would match every host under a top-level domain; name at least a second-level domain`;
  }
  const origin = `${scheme}://${wildcard ? '*.' : ''}${host}${port === '' ? '' : `:${port}`}`;
  return { origin, wildcard, scheme, host, port };
}

interface Pattern {
  /** `https://` */
  readonly prefix: string;
  /** `.example.com` or `.example.com:8443` */
  readonly suffix: string;
}

export class OriginMatcher {
  readonly any: boolean;
  readonly #exact = new Set<string>();
  readonly #patterns: Pattern[] = [];

  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    for (const o of origins) {
      if (o === '*') continue;
      const p = parseOrigin(o);
      if (typeof p === 'string') throw new Error(`origin "${o}": ${p}`);
      if (p.wildcard)
        this.#patterns.push({
          prefix: `${p.scheme}://`,
          suffix: `.${p.host}${p.port === '' ? '' : `:${p.port}`}`,
        });
      else this.#exact.add(p.origin);
    }
  }

  /** Whether a request's Origin value is allowed. Compares as browsers send it: lower case, no default port. */
  allows(origin: string): boolean {
    if (this.any) return true;
    if (this.#exact.has(origin)) return true;
    for (const p of this.#patterns) {
      if (
        origin.length > p.prefix.length + p.suffix.length &&
        origin.startsWith(p.prefix) &&
        origin.endsWith(p.suffix)
      ) {
        // What the `*` stands for: one or more DNS labels, never a port, path or user part.
        const sub = origin.slice(p.prefix.length, origin.length - p.suffix.length);
        if (/^[a-z0-9-]+(?:\.[a-z0-9-]+)*$/.test(sub)) return true;
      }
    }
    return false;
  }
}
