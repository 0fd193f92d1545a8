/**
 * The RateLimit-Policy and RateLimit fields of draft-ietf-httpapi-ratelimit-headers (draft 10/11): structured
 * field lists of quota policies, `"name";q=<quota>;w=<window s>`, and of the current service limit,
 * `"name";r=<remaining>;t=<seconds>`.
 */

/** A structured-field string (RFC 8941 §3.3.3): printable ASCII, `"` and `\` escaped. */
export function sfString(s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

/**
 * One quota-policy item. The window is a whole number of seconds in the field, so a limit over a period that is
 * not one is advertised as the nearest whole-second window with the quota scaled to it.
 */
export function policyItem(id: string, requests: number, perMs: number): string {
  const w = Math.max(1, Math.round(perMs / 1000));
  const q = w * 1000 === perMs ? requests : Math.max(1, Math.floor((requests * w * 1000) / perMs));
  return `${sfString(id)};q=${q};w=${w}`;
}

/** One service-limit item: what is left, and the seconds until it changes (rounded up). */
export function limitItem(quotedId: string, remaining: number, ms: number): string {
  return `${quotedId};r=${remaining};t=${Math.ceil(ms / 1000)}`;
}

/** Retry-After in whole seconds, at least 1: a client told 0 would retry at once and be refused again. */
export function retryAfter(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}
