/**
 * @detectSQLi, written for Trellis in the spirit of libinjection: tokenize the input as SQL, fold the tokens into
 * a short fingerprint of token types, and match the fingerprint against shapes that only injected SQL makes. The
 * input is tokenized three times: as it is, and as if it continued a single- or a double-quoted string (the
 * context of `id='<input>'`), which is where most injections start.
 *
 * Token types: `s` string, `1` number, `n` name, `k` keyword, `B` clause that can follow a WHERE condition (order
 * by, group by, having, limit), `E` statement verb (select, insert, ...), `U` union (union all, union distinct),
 * `&` logic operator (and, or, xor, &&, ||), `=` comparison (=, <>, <, like, in, is, between, ...), `o` other
 * operator, `f` function name (a name followed by `(`), `v` variable (@x), `c` comment (`--`, `/* *\/`), `h` a
 * `#` comment, and the punctuation `(`, `)`, `,`, `;`.
 *
 * What each fold and shape is for:
 * - A `/* *\/` comment with more SQL after it is whitespace (`1/**\/union/**\/select`); only a comment that ends
 *   the input cuts the rest of the query away, so only that one stays a token.
 * - `#` starts a comment in MySQL only (PostgreSQL reads it as an operator, SQL Server as part of a temp table's
 *   name), and prose is full of it: C#, issue #42, a URL fragment. So a `#` comment (`h`) ends an injection that
 *   has other SQL in it (`1' or 1=1#`) but is never the only evidence (`admin' #`), unlike `--` and `/*`.
 * - A tautology needs a comparison (`' or 1=1`, `' or 'a' like 'a`): arithmetic after a logic operator
 *   (`127.0.0.1 && ls -la`, "2-3 and up") is how text and shell read, not how a condition is forced true.
 * - Runs of parentheses fold to one: how deep the quoted context nests (`1)) or ((1=1`) does not change the shape.
 * - A statement at the start of the input (`select ... from ...`) counts only when it reads as SQL: a select list
 *   or table of at most an expression and its alias between separators (English runs three words and more
 *   together: "select the best option from the list"), and something prose does not write (an operator, a
 *   call, a string, a variable or a keyword only SQL uses: where, into, values, join, null, ...).
 * - A clause after the value (`1' ORDER BY 3-- -`, `' HAVING 1=1--`) continues the query's WHERE; from a string
 *   it needs a comment to cut the query's own closing quote away, from a number (`1 order by 10`) nothing.
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
const isBlank = (c: number) => c <= 32 || c === 0xa0;

/** Words that compare, and so make a condition (`x like y`, `x in (..)`); the rest of WORD_OPS are `o`. */
const COMPARE_WORDS = new Set(['like', 'rlike', 'regexp', 'is', 'in', 'between', 'sounds']);
const COMPARE_OPS = new Set(['=', '<', '>', '<=', '>=', '!=', '<>', '<=>']);
/** Clauses that can follow a WHERE condition, so a value can end the condition and add them. */
const CLAUSES = new Set(['having', 'limit']);
/** Keywords that only SQL writes between a statement's verb and its end. */
const SQL_ONLY_KEYWORDS = new Set([
  'where',
  'into',
  'values',
  'join',
  'distinct',
  'top',
  'null',
  'information_schema',
  'case',
]);

interface Token {
  readonly type: string;
  readonly value: string;
}

/** The index after the blanks from `i`. */
function skipBlanks(s: string, i: number): number {
  while (i < s.length && isBlank(s.charCodeAt(i))) i++;
  return i;
}

/** The word starting at `i` (lower case), or ''. */
function wordAt(s: string, i: number): string {
  let j = i;
  while (j < s.length && isWord(s.charCodeAt(j))) j++;
  return s.slice(i, j).toLowerCase();
}

/** Tokens of `s`, which starts inside a string quoted with `quote` when given. At most `max` tokens. */
export function tokenize(s: string, quote: string | undefined, max = 12): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = s.length;
  if (quote !== undefined) {
    const end = s.indexOf(quote);
    out.push({ type: 's', value: end < 0 ? s : s.slice(0, end) });
    if (end < 0) return out;
    i = end + 1;
  }
  let executable = false; // inside MySQL's `/*! ... */`, whose end is whitespace
  while (i < n && out.length < max) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (isBlank(c)) {
      i++;
      continue;
    }
    if (executable && ch === '*' && s[i + 1] === '/') {
      executable = false;
      i += 2;
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
    if (ch === '/' && s[i + 1] === '*') {
      // MySQL runs `/*! ... */` comments: look inside them.
      if (s[i + 2] === '!') {
        i += 3;
        while (i < n && isDigit(s.charCodeAt(i))) i++;
        executable = true;
        continue;
      }
      const end = s.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      // With more SQL after it, the comment is only whitespace between tokens.
      if (skipBlanks(s, i) >= n) out.push({ type: 'c', value: '/*' });
      continue;
    }
    if ((ch === '-' && s[i + 1] === '-') || ch === '#') {
      out.push({ type: ch === '#' ? 'h' : 'c', value: ch === '#' ? '#' : '--' });
      const end = s.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
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
      const lw = s.slice(i, j).toLowerCase();
      const k = skipBlanks(s, j);
      let type = 'n';
      let value = lw;
      if (lw === 'union') {
        type = 'U';
        // `union all select` and `union distinct select` are one set operation.
        const next = wordAt(s, k);
        if (next === 'all' || next === 'distinct') j = k + next.length;
      } else if ((lw === 'order' || lw === 'group') && wordAt(s, k) === 'by') {
        type = 'B';
        value = `${lw} by`;
        j = k + 2;
      } else if (CLAUSES.has(lw)) type = 'B';
      else if (VERBS.has(lw)) type = 'E';
      else if (LOGIC.has(lw)) type = '&';
      else if (COMPARE_WORDS.has(lw)) type = '=';
      else if (WORD_OPS.has(lw)) type = 'o';
      else if (s[k] === '(') type = 'f';
      else if (KEYWORDS.has(lw)) type = 'k';
      out.push({ type, value });
      i = j;
      continue;
    }
    // Operators: one to three characters.
    if (s.startsWith('<=>', i)) {
      out.push({ type: '=', value: '<=>' });
      i += 3;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '&&' || two === '||') {
      out.push({ type: '&', value: two });
      i += 2;
      continue;
    }
    if (['<=', '>=', '!=', '<>', ':=', '<<', '>>'].includes(two)) {
      out.push({ type: COMPARE_OPS.has(two) ? '=' : 'o', value: two });
      i += 2;
      continue;
    }
    if ('=<>!+-*/%^|&~'.includes(ch)) {
      out.push({ type: COMPARE_OPS.has(ch) ? '=' : 'o', value: ch });
      i++;
      continue;
    }
    // Anything else (letters of other scripts are words above): a name of its own, so it breaks a shape.
    out.push({ type: 'n', value: ch });
    i++;
  }
  return out;
}

const isOperator = (t: Token | undefined) => t !== undefined && (t.type === 'o' || t.type === '=');

/**
 * Adjacent operators fold into one (`= -1` is `=1`, a comparison when either compares); a unary sign before a
 * number is part of it; a run of `(` or of `)` is one.
 */
function fold(tokens: Token[]): Token[] {
  const out: Token[] = [];
  for (const t of tokens) {
    const prev = out[out.length - 1];
    if (isOperator(prev) && isOperator(t)) {
      if (t.type === '=' && prev!.type !== '=')
        out[out.length - 1] = { type: '=', value: prev!.value + t.value };
      continue;
    }
    if ((t.type === '(' || t.type === ')') && prev?.type === t.type) continue;
    if (t.type === '1' && prev?.type === 'o' && (prev.value === '-' || prev.value === '+')) {
      const before = out[out.length - 2];
      if (before === undefined || isOperator(before) || before.type === '&' || before.type === '(') {
        out[out.length - 1] = t;
        continue;
      }
    }
    out.push(t);
  }
  return out;
}

/** Fingerprint shapes that injected SQL makes, tried against the folded fingerprint (max 8 tokens). */
const SHAPES: readonly RegExp[] = [
  /U[E(]/, // union select, union (select, union all select
  /^[s1n)]&\(?[s1nv]=/, // tautology: ' or 1=1, ' or 'a'='a, 1 or 1 like 1
  /^(?:[s1n]\)|\))&\(?[s1nv]=/, // tautology closing a parenthesis: 1) or (1=1, 1)) or ((1=1, ') or ('a'='a
  /^s&[s1]$/, // ' or '1 / ' or 1 (the rest commented or quoted away)
  /^s&[s1][ch]/, // ' or 1--
  /^[s1n)]&f\(/, // ' and sleep(5)
  /^[s1n]=[s1]&/, // '=' or '
  /^sc/, // admin'-- (a `#` alone is not enough: see the module comment)
  /^s;(?:[ch]|$)/, // x'; --
  /^(?:[s1]\)?|\))c$/, // 1-- , 1)-- , x')/* (a word before it is prose: "thanks -- bye")
  /^[s1n)];[Ek]/, // stacked query: '; drop table
  /^[s1n)]\)?[&o=]\(?E/, // ' or (select ..., '+(select ...
  /^[s1n]=[s1][ch]/, // 1=1--
  /^[s1n]\);/, // x'); drop
  /^[s1]\)?B[1sn](?:[o=,][1sn])*[ch]/, // ' order by 3--, ' having 1=1--, 1) group by 1#
  /^1\)?B1(?:,1)*$/, // 1 order by 3 (a number's context needs no comment)
];

const isOperand = (t: Token) => t.type === 'n' || t.type === '1' || t.type === 's' || t.type === 'v';
/** Tokens of the select list that prose does not write: strings and variables, operators, calls. */
const LIST_MARKERS = new Set(['s', 'v', 'o', '=', '(', 'f']);
/** Keywords that follow `FROM table [alias]` in SQL. */
const AFTER_TABLE = new Set([
  'where',
  'join',
  'inner',
  'left',
  'right',
  'outer',
  'cross',
  'into',
  'procedure',
]);

/**
 * Whether the statement that starts the input (`select the best option from the list`) reads as SQL: each list
 * item or table is at most an operand and its alias, what follows `FROM table` is what SQL puts there, and
 * something in it is not prose.
 */
function statementIsSql(tokens: readonly Token[]): boolean {
  let run = 0;
  let marker = false;
  let i = 1;
  // The select list (or update target) up to the first keyword: the fingerprint shape allows only operands,
  // operators and `(` there.
  for (; i < tokens.length && tokens[i]!.type !== 'k'; i++) {
    const t = tokens[i]!;
    // Strings and variables are SQL's; numbers and words are prose's too ("select 2 items from the list").
    if (isOperand(t) && ++run > 2) return false;
    if (!isOperand(t)) run = 0;
    if (LIST_MARKERS.has(t.type)) marker = true;
  }
  const keyword = tokens[i++];
  if (keyword?.value === 'from') {
    // The table and its alias, then the end or what SQL writes after a table.
    run = 0;
    while (i < tokens.length && isOperand(tokens[i]!)) {
      if (++run > 2) return false;
      i++;
    }
    const next = tokens[i];
    if (next === undefined) return marker;
    if (next.type === ',' || next.type === ')') return marker;
    return (
      next.type === ';' ||
      next.type === 'c' ||
      next.type === 'B' ||
      next.type === 'U' ||
      (next.type === 'k' && AFTER_TABLE.has(next.value))
    );
  }
  // Other statements (`update t set`, `insert into`, `drop table`): no three words in a row, and a marker.
  for (; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (isOperand(t) && ++run > 2) return false;
    if (!isOperand(t)) run = 0;
    if (t.type === 's' || t.type === 'v' || (t.type === 'k' && SQL_ONLY_KEYWORDS.has(t.value))) marker = true;
    else if (t.type !== 'k' && !isOperand(t)) marker = true;
  }
  return marker;
}

export interface SqliResult {
  readonly fingerprint: string;
}

/** Functions whose call alone is an attack: they wait or read files. */
const LONE_CALLS = new Set(['sleep', 'benchmark', 'pg_sleep', 'load_file', 'extractvalue', 'updatexml']);

/** Whether `input` looks like injected SQL: the fingerprint that matched, or undefined. */
export function detectSqli(input: string): SqliResult | undefined {
  if (input.length === 0) return undefined;
  for (const quote of [undefined, "'", '"']) {
    if (quote !== undefined && input.indexOf(quote) < 0) continue;
    const tokens = fold(tokenize(input, quote));
    if (tokens.length === 0) continue;
    let fp = '';
    for (let i = 0; i < tokens.length && i < 8; i++) fp += tokens[i]!.type;
    // A lone call of a known-dangerous function is enough: `sleep(5)`, `benchmark(...)`.
    if (/^f\([1sn]/.test(fp) && LONE_CALLS.has(tokens[0]!.value)) return { fingerprint: fp };
    // A statement of its own: `select ... from`, `delete from`, read as SQL rather than as a sentence.
    if (/^E[n1osv(=]*k/.test(fp) && statementIsSql(tokens)) return { fingerprint: fp };
    for (const shape of SHAPES) {
      if (shape.test(fp)) {
        // `&f(` needs a function that injections call, else "and see(below)" would match.
        if (
          shape.source.includes('&f') &&
          !tokens.some((t) => t.type === 'f' && DANGEROUS_FUNCTIONS.has(t.value))
        )
          continue;
        return { fingerprint: fp };
      }
    }
  }
  return undefined;
}
