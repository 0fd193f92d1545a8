/**
 * Request path normalization before routing (RFC 3986 §6.2.2): percent-encoded unreserved characters are
 * decoded, other percent-encodings get upper-case hex, and dot segments are removed (§5.2.4). Without it
 * `/public/../admin` or `/%61dmin` would route differently from what the upstream serves. The normalized path is
 * also what goes upstream, so the gateway and the service agree. Runs of slashes become one (`//admin` is
 * `/admin`, as nginx's merge_slashes does), since many servers treat them so. Encoded slashes (`%2F`) stay
 * encoded.
 *
 * Returns the same string when nothing changes (the common case costs three indexOf calls), or null for a
 * malformed percent-encoding.
 */
export function normalizePath(path: string): string | null {
  const hasPercent = path.indexOf('%') !== -1;
  if (!hasPercent && path.indexOf('/.') === -1 && path.indexOf('//') === -1) return path;
  let p = path;
  if (hasPercent) {
    const decoded = decodeUnreserved(p);
    if (decoded === null) return null;
    p = decoded;
  }
  if (p.indexOf('//') !== -1) p = p.replace(/\/{2,}/g, '/');
  return p.indexOf('/.') === -1 ? p : removeDotSegments(p);
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    (c >= 48 && c <= 57) ||
    c === 45 ||
    c === 46 ||
    c === 95 ||
    c === 126
  );
}

const HEX = '0123456789ABCDEF';

function decodeUnreserved(p: string): string | null {
  let out = '';
  let last = 0;
  for (let i = p.indexOf('%'); i !== -1; i = p.indexOf('%', i)) {
    const hi = hexValue(p.charCodeAt(i + 1));
    const lo = hexValue(p.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    const c = hi * 16 + lo;
    out += p.slice(last, i);
    out += isUnreserved(c) ? String.fromCharCode(c) : `%${HEX[hi]}${HEX[lo]}`;
    i += 3;
    last = i;
  }
  return out + p.slice(last);
}

/** RFC 3986 §5.2.4 for an absolute path. */
export function removeDotSegments(p: string): string {
  const segments = p.split('/');
  const out: string[] = [];
  // segments[0] is '' (the path starts with '/').
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return `/${out.join('/')}`;
}
