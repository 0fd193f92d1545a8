import { unescape as unescapeComponent } from 'node:querystring';

const AMP = 38;
const EQ = 61;

/**
 * Parses `a=1&b=2` into `into` (cleared first): `+` is a space, names and values are percent-decoded, a malformed
 * escape is kept as written, a name without `=` has the value '', and the first value of a repeated name wins.
 */
export function parseQuery(raw: string, into: Map<string, string>): void {
  into.clear();
  const len = raw.length;
  let start = 0;
  while (start < len) {
    let end = start;
    let eq = -1;
    for (; end < len; end++) {
      const c = raw.charCodeAt(end);
      if (c === AMP) break;
      if (c === EQ && eq < 0) eq = end;
    }
    if (end > start) {
      const name = decodeComponent(eq < 0 ? raw.slice(start, end) : raw.slice(start, eq));
      if (!into.has(name)) into.set(name, eq < 0 ? '' : decodeComponent(raw.slice(eq + 1, end)));
    }
    start = end + 1;
  }
}

function decodeComponent(s: string): string {
  if (s.includes('+')) s = s.replaceAll('+', ' ');
  // querystring.unescape tries decodeURIComponent and falls back to a lenient decoder on malformed input.
  return s.includes('%') ? unescapeComponent(s) : s;
}
