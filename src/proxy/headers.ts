/**
 * Header handling for proxied messages (RFC 9110 §7.6): hop-by-hop fields are removed in both directions,
 * including every field named in `Connection`.
 */

/** Fields that describe one connection, never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'transfer-encoding',
  'upgrade',
]);

/** Field names a `Connection` header lists, other than the keep-alive/close options. */
export function connectionTokens(value: string): string[] | undefined {
  // The usual values name no field: skip the split.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return undefined;
  }
  let out: string[] | undefined;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (out ??= []).push(t);
  }
  return out;
}

/**
 * Removes the fields named in `names` (lower case) from a flat [name, value, ...] list, in place. The list's names
 * are lower case already unless `namesAreLower` is false (response headers keep the upstream's case).
 */
export function removeFields(list: string[], names: readonly string[], namesAreLower = true): void {
  if (names.length === 0) return;
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (names.includes(namesAreLower ? list[r]! : list[r]!.toLowerCase())) continue;
    list[w] = list[r]!;
    list[w + 1] = list[r + 1]!;
    w += 2;
  }
  list.length = w;
}

/**
 * Response headers from undici's raw Buffer list to a flat string list for `writeHead`, without hop-by-hop
 * fields. Names keep the upstream's case (clients see what the service sent).
 */
export function responseHeaders(raw: readonly Buffer[], requestId: string): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  let echoedId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') connection = raw[i + 1]!.toString('latin1');
      continue;
    }
    if (lower === 'x-request-id') echoedId = true;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  // The client learns its request id, once: the upstream's echo if it sent one, else ours.
  if (!echoedId) out.push('x-request-id', requestId);
  if (connection !== undefined) {
    const tokens = connectionTokens(connection);
    if (tokens) removeFields(out, tokens, false);
  }
  return out;
}

/** The `Link` values of a 103 Early Hints response. */
export function linkValues(raw: readonly Buffer[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 4 && raw[i]!.toString('latin1').toLowerCase() === 'link') {
      out.push(raw[i + 1]!.toString('latin1'));
    }
  }
  return out;
}

/** Trailers from undici's raw list to an object for `res.addTrailers`. */
export function trailerObject(raw: ReadonlyArray<Buffer | string>): Record<string, string> {
  const out: Record<string, string> = {};
  const str = (x: Buffer | string) => (typeof x === 'string' ? x : x.toString('latin1'));
  for (let i = 0; i < raw.length; i += 2) out[str(raw[i]!)] = str(raw[i + 1]!);
  return out;
}

/** A request id we keep from the client: short, printable, no separators that could break logs. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:/+=@-]{1,128}$/;
export function isSaneRequestId(v: string): boolean {
  return SANE_REQUEST_ID.test(v);
}

/** Quotes a value for a Forwarded (RFC 7239) parameter. */
export function forwardedQuote(v: string): string {
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** The `for=` value of a client address in Forwarded: IPv6 in brackets and quoted. */
export function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}
