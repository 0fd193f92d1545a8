/**
 * Reading the version a request names, from the places an API's `select` allows: pure functions over strings,
 * run once per request on the fields the API reads and nothing else.
 */

/** The first segment of a path (`/v2/orders` → `v2`), '' for `/`. */
export function firstSegment(path: string): string {
  const end = path.indexOf('/', 1);
  return end === -1 ? path.slice(1) : path.slice(1, end);
}

/** The path sent upstream without its first segment (`/v2/orders?x=1` → `/orders?x=1`, `/v2` → `/`). */
export function dropFirstSegment(upstreamPath: string, segmentLength: number): string {
  const rest = upstreamPath.slice(1 + segmentLength);
  return rest === '' || rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
}

/** The first value of query parameter `name` (decoded; `+` is a space), or undefined. */
export function queryValue(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  let from = 0;
  while (from <= query.length) {
    let end = query.indexOf('&', from);
    if (end === -1) end = query.length;
    const eq = query.indexOf('=', from);
    const keyEnd = eq === -1 || eq > end ? end : eq;
    if (decode(query.slice(from, keyEnd)) === name)
      return keyEnd === end ? '' : decode(query.slice(keyEnd + 1, end));
    from = end + 1;
  }
  return undefined;
}

function decode(s: string): string {
  if (s.indexOf('%') === -1 && s.indexOf('+') === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * The version named by a vendor media type in an Accept value, for vendor `vnd.acme`:
 * `application/vnd.acme.v2+json` → `v2`, `application/vnd.acme+json; version=2` → `2`. The first media range
 * that names one wins; undefined when none does.
 */
export function mediaTypeVersion(accept: string, vendor: string): string | undefined {
  const lower = accept.toLowerCase();
  if (lower.indexOf(vendor) === -1) return undefined;
  for (const range of accept.split(',')) {
    const parts = range.split(';');
    const type = parts[0]!.trim();
    const slash = type.indexOf('/');
    if (slash === -1) continue;
    const subtype = type.slice(slash + 1);
    if (subtype.toLowerCase().slice(0, vendor.length) !== vendor) continue;
    const rest = subtype.slice(vendor.length);
    if (rest.charCodeAt(0) === 46 /* . */) {
      const plus = rest.indexOf('+');
      const v = plus === -1 ? rest.slice(1) : rest.slice(1, plus);
      if (v !== '') return v;
      continue;
    }
    if (rest !== '' && rest.charCodeAt(0) !== 43 /* + */) continue;
    for (let i = 1; i < parts.length; i++) {
      const p = parts[i]!;
      const eq = p.indexOf('=');
      if (eq === -1 || p.slice(0, eq).trim().toLowerCase() !== 'version') continue;
      const v = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (v !== '') return v;
    }
  }
  return undefined;
}

/** `Deprecation` (RFC 9745): a structured-field Date, `@` and the Unix time in seconds. */
export function deprecationValue(iso: string): string {
  return `@${Math.floor(Date.parse(iso) / 1000)}`;
}

/** `Sunset` (RFC 8594): an HTTP-date (IMF-fixdate). */
export function sunsetValue(iso: string): string {
  return new Date(Date.parse(iso)).toUTCString();
}
