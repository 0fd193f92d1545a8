/**
 * SecLang text → directives: a directive is a name and its arguments, with the line it starts on. Lines ending in
 * a backslash continue on the next; `#` starts a comment line; arguments are separated by blanks and may be
 * double-quoted, with `\"` for a quote inside (other backslashes are kept as written, since operator arguments are
 * regular expressions).
 */

export interface Directive {
  readonly name: string;
  readonly args: readonly string[];
  readonly file: string;
  readonly line: number;
}

export interface SourceIssue {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

/** Splits `text` (from `file`) into directives; malformed lines are reported in `issues`. */
export function lex(text: string, file: string, issues: SourceIssue[]): Directive[] {
  const out: Directive[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!;
    // A continued line: join with the next, dropping the backslash (ModSecurity joins without a space).
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      line = line.replace(/\\\s*$/, '') + lines[++i]!;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.charCodeAt(0) === 35 /* # */) continue;
    const args = splitArgs(trimmed);
    if (args === undefined) {
      issues.push({ file, line: start + 1, message: 'unterminated quoted argument' });
      continue;
    }
    const [name, ...rest] = args;
    out.push({ name: name!, args: rest, file, line: start + 1 });
  }
  return out;
}

/** Blank-separated arguments; double quotes group, `\"` is a quote. Undefined when a quote is left open. */
export function splitArgs(s: string): string[] | undefined {
  const out: string[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i >= n) break;
    if (s[i] === '"') {
      let v = '';
      i++;
      let closed = false;
      while (i < n) {
        const c = s[i]!;
        if (c === '\\' && s[i + 1] === '"') {
          v += '"';
          i += 2;
          continue;
        }
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        v += c;
        i++;
      }
      if (!closed) return undefined;
      out.push(v);
    } else {
      let v = '';
      while (i < n && s[i] !== ' ' && s[i] !== '\t') v += s[i++];
      out.push(v);
    }
  }
  return out;
}

/**
 * An action list (`id:1,phase:2,msg:'a, b',t:none`) → [name, value] pairs. Values may be single-quoted (commas
 * inside stay), with `\'` for a quote.
 */
export function splitActions(s: string): { name: string; value: string | undefined }[] | string {
  const out: { name: string; value: string | undefined }[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
    if (i >= n) break;
    let name = '';
    while (i < n && s[i] !== ':' && s[i] !== ',') name += s[i++];
    name = name.trim();
    let value: string | undefined;
    if (s[i] === ':') {
      i++;
      while (i < n && s[i] === ' ') i++;
      if (s[i] === "'") {
        i++;
        let v = '';
        let closed = false;
        while (i < n) {
          const c = s[i]!;
          if (c === '\\' && s[i + 1] === "'") {
            v += "'";
            i += 2;
            continue;
          }
          if (c === "'") {
            closed = true;
            i++;
            break;
          }
          v += c;
          i++;
        }
        if (!closed) return `unterminated quote in action "${name}"`;
        value = v;
      } else {
        let v = '';
        while (i < n && s[i] !== ',') v += s[i++];
        value = v.trim();
      }
    }
    if (name !== '') out.push({ name, value });
  }
  return out;
}
