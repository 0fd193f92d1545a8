/**
 * @detectXSS, written for Trellis in the spirit of libinjection: read the input as an HTML fragment (from the
 * text state, and as if it continued a double-quoted, single-quoted or unquoted attribute value) and flag what a
 * browser would run: a script-capable tag, an event-handler attribute, or a URL attribute with a script scheme.
 */

const TAGS = new Set([
  'script',
  'iframe',
  'frame',
  'frameset',
  'object',
  'embed',
  'applet',
  'svg',
  'math',
  'style',
  'link',
  'meta',
  'base',
  'form',
  'isindex',
  'xml',
  'xss',
  'vmlframe',
  'import',
  'template',
]);
const URL_ATTRS = new Set([
  'href',
  'src',
  'action',
  'formaction',
  'data',
  'xlink:href',
  'background',
  'lowsrc',
  'dynsrc',
  'poster',
  'codebase',
  'srcdoc',
  'values',
  'from',
  'to',
  'by',
]);

/** Decodes entities and drops the characters browsers ignore inside a scheme (`jav&#x09;ascript:`). */
function normalizeValue(v: string): string {
  return (
    v
      .replace(/&#[xX]([0-9a-fA-F]+);?/g, (_m, h: string) =>
        String.fromCharCode(Number.parseInt(h, 16) & 0xffff),
      )
      .replace(/&#([0-9]+);?/g, (_m, d: string) => String.fromCharCode(Number(d) & 0xffff))
      .replace(/&colon;/gi, ':')
      .replace(/&tab;|&newline;/gi, '')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: browsers skip control characters in a scheme
      .replace(/[\x00-\x20\x7f]+/g, '')
      .toLowerCase()
  );
}

function badUrl(v: string): boolean {
  const n = normalizeValue(v);
  return (
    n.startsWith('javascript:') ||
    n.startsWith('vbscript:') ||
    n.startsWith('livescript:') ||
    n.startsWith('data:text/html') ||
    n.startsWith('data:image/svg') ||
    n.startsWith('data:application/x') ||
    n.includes('expression(')
  );
}

const isSpace = (c: string | undefined) =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '/';
const isNameChar = (c: string | undefined) => c !== undefined && /[^\s/>="'`<]/.test(c);

/** Attributes from `i` until `>` or the end: -1 when one is dangerous, else the index after the tag. */
function scanAttributes(s: string, i: number, tag: string): number {
  const n = s.length;
  while (i < n) {
    while (i < n && isSpace(s[i])) i++;
    if (i >= n) return n;
    if (s[i] === '>') return i + 1;
    let name = '';
    while (i < n && isNameChar(s[i])) name += s[i++];
    if (name === '') {
      i++;
      continue;
    }
    name = name.toLowerCase();
    while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n')) i++;
    let value = '';
    if (s[i] === '=') {
      i++;
      while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n')) i++;
      const q = s[i];
      if (q === '"' || q === "'" || q === '`') {
        const end = s.indexOf(q, i + 1);
        value = s.slice(i + 1, end < 0 ? n : end);
        i = end < 0 ? n : end + 1;
      } else {
        while (i < n && !/[\s>]/.test(s[i]!)) value += s[i++];
      }
    }
    if (name.startsWith('on') && name.length > 2) return -1;
    if (URL_ATTRS.has(name) && badUrl(value)) return -1;
    if (name === 'style' && /expression\s*\(|url\s*\(\s*['"]?\s*javascript:/i.test(value)) return -1;
    if (tag === 'meta' && name === 'http-equiv') return -1;
  }
  return n;
}

const XML_NAME = /^[a-z_][a-z0-9_.-]*$/;

/**
 * Whether a tag named `name` (lower case, as the HTML tokenizer reads it: up to a blank, `/` or `>`) can run
 * script by itself. A name with a colon is a namespaced element (`<x:script>`, VML, `<t:set>`) only when both
 * sides are names: `<https://example.com/guide>` (a markdown autolink, tag name `https:`) and
 * `<mailto:jane@example.com>` are URLs in angle brackets, inert elements in a browser.
 */
function scriptTag(name: string): boolean {
  if (TAGS.has(name) || name.startsWith('svg')) return true;
  const colon = name.indexOf(':');
  if (colon < 0) return false;
  return XML_NAME.test(name.slice(0, colon)) && XML_NAME.test(name.slice(colon + 1));
}

/** Whether `s`, read from the HTML text state, holds something that runs script. */
function scanText(s: string): boolean {
  let i = s.indexOf('<');
  while (i >= 0 && i < s.length) {
    let j = i + 1;
    if (s[j] === '/') j++;
    if (s[j] === '!' || s[j] === '?') {
      // <!-- --> and <!DOCTYPE> and <?xml?> hide nothing runnable by themselves; conditional comments can.
      if (/^<!--\s*\[if/i.test(s.slice(i, i + 12))) return true;
      i = s.indexOf('<', j);
      continue;
    }
    // A tag starts with a letter, and its name runs to a blank, `/` or `>`: `<scr<script>` is one element named
    // `scr<script`, as a browser reads it.
    if (!/[A-Za-z]/.test(s[j] ?? '')) {
      i = s.indexOf('<', i + 1);
      continue;
    }
    const start = j;
    while (j < s.length && !/[\s/>]/.test(s[j]!)) j++;
    const tag = s.slice(start, j).toLowerCase();
    if (scriptTag(tag)) return true;
    const end = scanAttributes(s, j, tag);
    if (end < 0) return true;
    // A tag left open (an unclosed quote ran to the end) is read again from its next `<`: the page around an
    // echoed value can close that quote.
    i = s.indexOf('<', end < s.length ? end : i + 1);
  }
  return false;
}

/** Whether `input` would run script in an HTML page that echoes it. */
export function detectXss(input: string): boolean {
  if (input.length < 3) return false;
  if (input.indexOf('<') >= 0 && scanText(input)) return true;
  // As if continuing an attribute value: `" onmouseover="alert(1)`, `' autofocus onfocus=...`.
  for (const q of ['"', "'", '`']) {
    const at = input.indexOf(q);
    if (at >= 0 && scanAttributes(input, at + 1, '') < 0) return true;
  }
  // An unquoted attribute value continues until a blank: `x onerror=alert(1)`.
  const sp = input.search(/[\s/]/);
  if (sp > 0 && /[\s/]on[a-z]+\s*=/i.test(input) && scanAttributes(input, sp, '') < 0) return true;
  // A URL attribute's whole value: `javascript:alert(1)`.
  return badUrl(input) && /[(`]/.test(input);
}
