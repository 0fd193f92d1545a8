/**
 * SecLang transformations. Values are byte strings (one char per byte, latin1), as ModSecurity sees bytes: a
 * CRS pattern such as `\xc0\xae` means bytes, and `utf8toUnicode` turns UTF-8 sequences into `%uXXXX`.
 */
import { createHash } from 'node:crypto';

export type Transform = (s: string) => string;

const HEX = /^[0-9a-fA-F]$/;
const isHex = (c: string | undefined) => c !== undefined && HEX.test(c);

function urlDecode(s: string): string {
  if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '+') out += ' ';
    else if (c === '%' && isHex(s[i + 1]) && isHex(s[i + 2])) {
      out += String.fromCharCode(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out += c;
  }
  return out;
}

/** urlDecode plus IIS-style `%uXXXX` (kept to its low byte, as ModSecurity does without a unicode map). */
function urlDecodeUni(s: string): string {
  if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '+') out += ' ';
    else if (c === '%') {
      if ((s[i + 1] === 'u' || s[i + 1] === 'U') && [2, 3, 4, 5].every((k) => isHex(s[i + k]))) {
        const code = Number.parseInt(s.slice(i + 2, i + 6), 16);
        // Full-width ASCII (U+FF01..U+FF5E) maps to ASCII, as IIS does.
        out += String.fromCharCode(code >= 0xff01 && code <= 0xff5e ? code - 0xfee0 : code & 0xff);
        i += 5;
      } else if (isHex(s[i + 1]) && isHex(s[i + 2])) {
        out += String.fromCharCode(Number.parseInt(s.slice(i + 1, i + 3), 16));
        i += 2;
      } else out += c;
    } else out += c;
  }
  return out;
}

const ENTITIES: Record<string, string> = {
  quot: '"',
  amp: '&',
  lt: '<',
  gt: '>',
  nbsp: '\xa0',
  apos: "'",
  colon: ':',
  lpar: '(',
  rpar: ')',
  sol: '/',
  bsol: '\\',
  tab: '\t',
  newline: '\n',
  semi: ';',
  comma: ',',
  period: '.',
  excl: '!',
  quest: '?',
  num: '#',
  equals: '=',
  plus: '+',
  grave: '`',
};

function htmlEntityDecode(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(
    /&(?:#[xX]([0-9a-fA-F]{1,8});?|#([0-9]{1,10});?|([a-zA-Z]{2,8});)/g,
    (m, hex, dec, name) => {
      if (hex !== undefined) return String.fromCharCode(Number.parseInt(hex, 16) & 0xff);
      if (dec !== undefined) return String.fromCharCode(Number(dec) & 0xff);
      const e = ENTITIES[(name as string).toLowerCase()];
      return e ?? m;
    },
  );
}

function jsDecode(s: string): string {
  if (s.indexOf('\\') < 0) return s;
  return s.replace(
    /\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|([\s\S]))/g,
    (_m, u: string, x: string, o: string, c: string) => {
      if (u !== undefined) {
        const code = Number.parseInt(u, 16);
        return String.fromCharCode(code >= 0xff01 && code <= 0xff5e ? code - 0xfee0 : code & 0xff);
      }
      if (x !== undefined) return String.fromCharCode(Number.parseInt(x, 16));
      if (o !== undefined) return String.fromCharCode(Number.parseInt(o, 8) & 0xff);
      switch (c) {
        case 'a':
          return '\x07';
        case 'b':
          return '\b';
        case 'f':
          return '\f';
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case 'v':
          return '\v';
        default:
          return c;
      }
    },
  );
}

function cssDecode(s: string): string {
  if (s.indexOf('\\') < 0) return s;
  return s.replace(/\\(?:([0-9a-fA-F]{1,6})\s?|(\n)|([\s\S]))/g, (_m, hex: string, nl: string, c: string) => {
    if (hex !== undefined) {
      const code = Number.parseInt(hex, 16);
      return String.fromCharCode(code >= 0xff01 && code <= 0xff5e ? code - 0xfee0 : code & 0xff);
    }
    if (nl !== undefined) return '';
    return c;
  });
}

/** Undoes the evasions a Windows or Unix shell allows: `c^a"t`, `\c\a\t`, `cat,/etc`, `cat  /etc` → `cat /etc`. */
// What cmdLine changes besides case: without any of these (and nothing to lowercase), the value is as it was.
const CMDLINE_WORK = /[\\"'^,;\t\r\n]| {2}| [/(]/;

function cmdLine(s: string): string {
  if (!CMDLINE_WORK.test(s) && s.toLowerCase() === s) return s;
  let out = '';
  let space = false;
  for (let i = 0; i < s.length; i++) {
    let c = s[i]!;
    if (c === '\\' || c === '"' || c === "'" || c === '^') continue;
    if (c === ' ' || c === ',' || c === ';' || c === '\t' || c === '\r' || c === '\n') {
      if (!space) {
        // A blank before `/` or `(` goes: `cat /x` stays, but `foo (` becomes `foo(`.
        space = true;
        out += ' ';
      }
      continue;
    }
    if ((c === '/' || c === '(') && space) out = out.slice(0, -1);
    space = false;
    c = c.toLowerCase();
    out += c;
  }
  return out;
}

// \s covers vertical tab and no-break space too.
const WS = /[\s\xa0]+/g;

function normalisePath(s: string, win: boolean): string {
  let p = win && s.indexOf('\\') >= 0 ? s.replace(/\\/g, '/') : s;
  if (p === '') return p;
  // No `.`/`..` segment and no empty one: nothing to do (most values).
  if (p[0] !== '.' && p.indexOf('/.') < 0 && p.indexOf('//') < 0) return p;
  const abs = p[0] === '/';
  const trail = p.endsWith('/') || p.endsWith('/.') || p.endsWith('/..');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(seg);
  }
  p = (abs ? '/' : '') + out.join('/');
  if (trail && !p.endsWith('/')) p += '/';
  return p;
}

function removeComments(s: string, replace: boolean): string {
  // C comments, and `--`/`#` to the end of the value, as the SQL/shell ones CRS meets.
  let out = s.replace(/\/\*[\s\S]*?(?:\*\/|$)/g, replace ? ' ' : '').replace(/<!--[\s\S]*?(?:-->|$)/g, '');
  if (!replace) out = out.replace(/(?:--|#)[^\n]*/g, '');
  return out;
}

function utf8toUnicode(s: string): string {
  if (!/[\x80-\xff]/.test(s)) return s;
  let out = '';
  const b = Buffer.from(s, 'latin1');
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let n = 0;
    let cp = 0;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    if ((c & 0xe0) === 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) === 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) === 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    let ok = i + n < b.length + 0 && i + n <= b.length - 1 + 1;
    for (let k = 1; k <= n && ok; k++) {
      const cc = b[i + k];
      if (cc === undefined || (cc & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    out += `%u${cp.toString(16).padStart(4, '0')}`;
    i += n + 1;
  }
  return out;
}

function hexDecode(s: string): string {
  let out = '';
  for (let i = 0; i + 1 < s.length; i += 2)
    out += String.fromCharCode(Number.parseInt(s.slice(i, i + 2), 16) || 0);
  return out;
}

function base64Decode(s: string): string {
  return Buffer.from(s.trim(), 'base64').toString('latin1');
}

function sqlHexDecode(s: string): string {
  return s.replace(/0x((?:[0-9a-fA-F]{2})+)/g, (_m, h: string) => hexDecode(h));
}

/**
 * A pure function of a string with a bounded memory of its last answers, for work that the same values of an
 * API's traffic ask for again and again (CRS hashes every request's User-Agent, 901318; @detectSQLi runs on every
 * argument). Two generations of at most `entries` values up to `maxLength` characters: when the young one
 * fills, it replaces the old one, so memory stays bounded whatever the traffic.
 */
export function remembered<T>(fn: (s: string) => T, entries = 256, maxLength = 1024): (s: string) => T {
  let young = new Map<string, { r: T }>();
  let old = new Map<string, { r: T }>();
  return (s) => {
    if (s.length > maxLength) return fn(s);
    let box = young.get(s);
    if (box !== undefined) return box.r;
    box = old.get(s) ?? { r: fn(s) };
    if (young.size >= entries) {
      old = young;
      young = new Map();
    }
    young.set(s, box);
    return box.r;
  };
}

function escapeSeqDecode(s: string): string {
  return jsDecode(s);
}

export const TRANSFORMS: Readonly<Record<string, Transform>> = {
  none: (s) => s,
  lowercase: (s) => s.toLowerCase(),
  uppercase: (s) => s.toUpperCase(),
  urlDecode,
  urlDecodeUni,
  urlEncode: (s) => encodeURIComponent(s),
  htmlEntityDecode,
  jsDecode,
  cssDecode,
  escapeSeqDecode,
  cmdLine,
  compressWhitespace: (s) => s.replace(WS, ' '),
  removeWhitespace: (s) => s.replace(WS, ''),
  removeNulls: (s) => (s.indexOf('\0') < 0 ? s : s.replace(/\0/g, '')),
  replaceNulls: (s) => (s.indexOf('\0') < 0 ? s : s.replace(/\0/g, ' ')),
  removeComments: (s) => removeComments(s, false),
  removeCommentsChar: (s) => s.replace(/\/\*|\*\/|--|#|<!--|-->/g, ''),
  replaceComments: (s) => removeComments(s, true),
  normalisePath: (s) => normalisePath(s, false),
  normalizePath: (s) => normalisePath(s, false),
  normalisePathWin: (s) => normalisePath(s, true),
  normalizePathWin: (s) => normalisePath(s, true),
  base64Decode,
  base64DecodeExt: base64Decode,
  base64Encode: (s) => Buffer.from(s, 'latin1').toString('base64'),
  hexDecode,
  hexEncode: remembered((s) => Buffer.from(s, 'latin1').toString('hex')),
  sqlHexDecode,
  utf8toUnicode,
  length: (s) => String(s.length),
  trim: (s) => s.trim(),
  trimLeft: (s) => s.trimStart(),
  trimRight: (s) => s.trimEnd(),
  sha1: remembered((s) => createHash('sha1').update(s, 'latin1').digest().toString('latin1')),
  md5: remembered((s) => createHash('md5').update(s, 'latin1').digest().toString('latin1')),
};
