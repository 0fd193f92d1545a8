/**
 * @detectSQLi, written for Trellis in the spirit of libinjection: tokenize the input as SQL, fold the tokens into
 * a short fingerprint of token types, and match the fingerprint against shapes that only injected SQL makes. The
 * input is tokenized three times: as it is, and as if it continued a single- or a double-quoted string (the
 * context of `id='<input>'`), which is where most injections start.
 *
 * Token types: `s` string, `1` number, `n` name, `k` keyword, `E` statement verb (select, insert, ...), `U`
 * union, `&` logic operator (and, or, xor, &&, ||), `o` other operator, `f` function name (a name followed by
 * `(`), `v` variable (@x), `c` comment, and the punctuation `(`, `)`, `,`, `;`.
 */

const VERBS = new Set([
  'select',
  'insert',
  'update',
  'delete',
  'drop',
  'create',
  'alter',
  'truncate',
  'exec',
  'execute',
  'declare',
  'shutdown',
  'grant',
  'revoke',
  'replace',
  'merge',
  'call',
  'waitfor',
  'handler',
]);
const KEYWORDS = new Set([
  'from',
  'where',
  'into',
  'values',
  'table',
  'database',
  'order',
  'group',
  'by',
  'having',
  'limit',
  'offset',
  'join',
  'inner',
  'outer',
  'left',
  'right',
  'as',
  'case',
  'when',
  'then',
  'else',
  'end',
  'null',
  'distinct',
  'all',
  'top',
  'delay',
  'procedure',
  'information_schema',
  'char',
  'varchar',
  'nvarchar',
  'cast',
  'convert',
  'exists',
  'set',
]);
const LOGIC = new Set(['and', 'or', 'xor', '&&', '||']);
const WORD_OPS = new Set([
  'like',
  'rlike',
  'regexp',
  'not',
  'is',
  'in',
  'between',
  'div',
  'mod',
  'sounds',
  'collate',
]);
/** Functions that benign text rarely calls and injections often do. */
const DANGEROUS_FUNCTIONS = new Set([
  'sleep',
  'benchmark',
  'pg_sleep',
  'load_file',
  'extractvalue',
  'updatexml',
  'version',
  'database',
  'user',
  'current_user',
  'system_user',
  'char',
  'concat',
  'concat_ws',
  'group_concat',
  'ascii',
  'substring',
  'substr',
  'mid',
  'hex',
  'unhex',
  'if',
  'ifnull',
  'count',
  'length',
  'utl_inaddr',
  'dbms_pipe',
  'xp_cmdshell',
  'waitfor',
  'md5',
  'sha1',
  'floor',
  'rand',
  'exp',
  'name_const',
  'row',
  'json_keys',
  'gtid_subset',
]);

const isDigit = (c: number) => c >= 48 && c <= 57;
const isWord = (c: number) =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95 || c === 36 || c === 46 || c > 127;

interface Token {
  readonly type: string;
  readonly value: string;
}

/** Tokens of `s`, which starts inside a string quoted with `quote` when given. At most `max` tokens. */
export function tokenize(s: string, quote: string | undefined, max = 8): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = s.length;
  if (quote !== undefined) {
    const end = s.indexOf(quote);
    out.push({ type: 's', value: end < 0 ? s : s.slice(0, end) });
    if (end < 0) return out;
    i = end + 1;
  }
  while (i < n && out.length < max) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (c <= 32 || c === 0xa0) {
      i++;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') {
      let j = i + 1;
      while (j < n) {
        if (s[j] === '\\') j += 2;
        else if (s[j] === ch && s[j + 1] === ch) j += 2;
        else if (s[j] === ch) break;
        else j++;
      }
      out.push({ type: ch === '`' ? 'n' : 's', value: s.slice(i + 1, Math.min(j, n)) });
      i = j + 1;
      continue;
    }
    if ((ch === '/' && s[i + 1] === '*') || (ch === '-' && s[i + 1] === '-') || ch === '#') {
      out.push({ type: 'c', value: '' });
      if (ch === '/') {
        // MySQL runs `/*! ... */` comments: look inside them.
        if (s[i + 2] === '!') {
          i += 3;
          while (i < n && isDigit(s.charCodeAt(i))) i++;
          out.pop();
          continue;
        }
        const end = s.indexOf('*/', i + 2);
        i = end < 0 ? n : end + 2;
      } else {
        const end = s.indexOf('\n', i);
        i = end < 0 ? n : end + 1;
      }
      continue;
    }
    if (ch === '(' || ch === ')' || ch === ',' || ch === ';') {
      out.push({ type: ch, value: ch });
      i++;
      continue;
    }
    if (ch === '@') {
      let j = i + 1;
      while (j < n && (s[j] === '@' || isWord(s.charCodeAt(j)))) j++;
      out.push({ type: 'v', value: s.slice(i, j) });
      i = j;
      continue;
    }
    if (isDigit(c) || (ch === '.' && isDigit(s.charCodeAt(i + 1)))) {
      let j = i + 1;
      if (ch === '0' && (s[j] === 'x' || s[j] === 'X' || s[j] === 'b' || s[j] === 'B')) j++;
      while (j < n && (isWord(s.charCodeAt(j)) || s[j] === '.')) j++;
      out.push({ type: '1', value: s.slice(i, j) });
      i = j;
      continue;
    }
    if (isWord(c)) {
      let j = i + 1;
      while (j < n && isWord(s.charCodeAt(j))) j++;
      const word = s.slice(i, j);
      const lw = word.toLowerCase();
      let k = j;
      while (k < n && s.charCodeAt(k) <= 32) k++;
      let type = 'n';
      if (lw === 'union') type = 'U';
      else if (VERBS.has(lw)) type = 'E';
      else if (LOGIC.has(lw)) type = '&';
      else if (WORD_OPS.has(lw)) type = 'o';
      else if (s[k] === '(') type = 'f';
      else if (KEYWORDS.has(lw)) type = 'k';
      out.push({ type, value: lw });
      i = j;
      continue;
    }
    // Operators: one or two characters.
    const two = s.slice(i, i + 2);
    if (two === '&&' || two === '||') {
      out.push({ type: '&', value: two });
      i += 2;
      continue;
    }
    if (['<=', '>=', '!=', '<>', ':=', '<<', '>>'].includes(two)) {
      out.push({ type: 'o', value: two });
      i += 2;
      continue;
    }
    if ('=<>!+-*/%^|&~'.includes(ch)) {
      out.push({ type: 'o', value: ch });
      i++;
      continue;
    }
    // Anything else (letters of other scripts are words above): a name of its own, so it breaks a shape.
    out.push({ type: 'n', value: ch });
    i++;
  }
  return out;
}

/** Adjacent operators fold into one (`= -1` is `o1`); a unary sign before a number is part of it. */
function fold(tokens: Token[]): Token[] {
  const out: Token[] = [];
  for (const t of tokens) {
    const prev = out[out.length - 1];
    if (prev !== undefined && prev.type === 'o' && t.type === 'o') continue;
    if (
      t.type === '1' &&
      prev !== undefined &&
      prev.type === 'o' &&
      (prev.value === '-' || prev.value === '+')
    ) {
      const before = out[out.length - 2];
      if (before === undefined || before.type === 'o' || before.type === '&' || before.type === '(') {
        out[out.length - 1] = t;
        continue;
      }
    }
    out.push(t);
  }
  return out;
}

/** Fingerprint shapes that injected SQL makes, tried against the folded fingerprint (max 6 tokens). */
const SHAPES: readonly RegExp[] = [
  /U[E(]/, // union select, union (select
  /^[s1n)]&[s1nvf(]o/, // tautology: ' or 1=1, ' or 'a'='a
  /^s&[s1]$/, // ' or '1 / ' or 1 (the rest commented or quoted away)
  /^s&[s1]c/, // ' or 1--
  /^[s1n)]&f\(/, // ' and sleep(5)
  /^[s1n]o[s1]&/, // '=' or '
  /^s[c;]/, // admin'--, x'; ...
  /^[s1n)]c$/, // 1)-- , admin'#
  /^[s1n)];[Ek]/, // stacked query: '; drop table
  /^E[n1os*v(]*k/, // select ... from
  /^[s1n)]\)*[&o]\(*E/, // ' or (select ...
  /^[s1n]o[s1]c/, // 1=1--
  /^\)+[&o]\(*[s1n]o/, // 1) or (1=1
  /^[s1n]\)+;/, // x'); drop
];

export interface SqliResult {
  readonly fingerprint: string;
}

/** Whether `input` looks like injected SQL: the fingerprint that matched, or undefined. */
export function detectSqli(input: string): SqliResult | undefined {
  if (input.length === 0) return undefined;
  for (const quote of [undefined, "'", '"']) {
    if (quote !== undefined && input.indexOf(quote) < 0) continue;
    const tokens = fold(tokenize(input, quote));
    if (tokens.length === 0) continue;
    let fp = '';
    for (let i = 0; i < tokens.length && i < 6; i++) fp += tokens[i]!.type;
    // A lone call of a known-dangerous function is enough: `sleep(5)`, `benchmark(...)`.
    if (fp.startsWith('f(') && DANGEROUS_FUNCTIONS.has(tokens[0]!.value) && /^f\([1sn]/.test(fp)) {
      if (
        ['sleep', 'benchmark', 'pg_sleep', 'load_file', 'extractvalue', 'updatexml'].includes(
          tokens[0]!.value,
        )
      )
        return { fingerprint: fp };
    }
    for (const shape of SHAPES) {
      if (shape.test(fp)) {
        // `&f(` needs a function that injections call, else "and see(below)" would match.
        if (
          shape.source.includes('&f') &&
          !tokens.some((t) => t.type === 'f' && DANGEROUS_FUNCTIONS.has(t.value))
        )
          continue;
        // Plain English around a quote: "it's" — `s&s` shapes need SQL-ish operators or numbers, checked above.
        return { fingerprint: fp };
      }
    }
  }
  return undefined;
}
