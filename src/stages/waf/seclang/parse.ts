/**
 * SecLang directives → a rule list in evaluation order, with everything not supported reported by file and line.
 * Load-time directives (SecRuleRemoveById/ByTag/ByMsg, SecRuleUpdateTargetById/ByTag, SecDefaultAction,
 * SecRuleEngine) are applied here, in the order they appear, as ModSecurity applies them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  ACTIONS,
  CTL_OPTIONS,
  EMPTY_VARIABLES,
  IGNORED_DIRECTIVES,
  INERT_ACTIONS,
  INERT_OPERATORS,
  OPERATORS,
  TRANSFORMATIONS,
  VARIABLES,
} from './catalog.js';
import { type Directive, lex, type SourceIssue, splitActions } from './lexer.js';

export interface VariableRef {
  readonly name: string;
  /** A literal key (case-insensitive), or undefined for the whole collection. */
  readonly key: string | undefined;
  /** A `/regex/` key. */
  readonly keyRegex: string | undefined;
  /** `&`: the number of values instead of the values. */
  readonly count: boolean;
  /** `!`: remove these from the rule's other targets. */
  readonly exclude: boolean;
}

export interface OperatorRef {
  readonly name: string;
  readonly negated: boolean;
  readonly arg: string;
  /** @pmFromFile / @ipMatchFromFile: the lines of the files, read at load. */
  readonly data?: readonly string[];
}

export interface ActionRef {
  readonly name: string;
  readonly value: string | undefined;
}

export interface RuleAst {
  /** 0 for a chained (inner) rule. */
  readonly id: number;
  readonly phase: number;
  variables: VariableRef[];
  readonly operator: OperatorRef;
  readonly actions: readonly ActionRef[];
  /** SecDefaultAction of the rule's phase when it was defined. */
  readonly defaults: readonly ActionRef[];
  readonly tags: readonly string[];
  readonly msg: string | undefined;
  chain: RuleAst | undefined;
  readonly file: string;
  readonly line: number;
}

export type Item =
  | { readonly kind: 'rule'; readonly rule: RuleAst }
  | { readonly kind: 'marker'; readonly name: string; readonly file: string; readonly line: number };

export interface RuleSet {
  readonly items: Item[];
  /** SecRuleEngine, when a file set it. */
  engine: 'On' | 'Off' | 'DetectionOnly' | undefined;
  /** Items that are not supported: a configuration error where they occur in user rules. */
  readonly unsupported: SourceIssue[];
  /** Items accepted and ignored (inert), for the docs and `trellis validate --verbose`. */
  readonly notes: SourceIssue[];
}

export function emptyRuleSet(): RuleSet {
  return { items: [], engine: undefined, unsupported: [], notes: [] };
}

const PHASES: Record<string, number> = { request: 2, response: 4, logging: 5 };

/** Reads `path` (a file, a folder of `*.conf` files, or a glob ending in `*.conf`) into `set`. */
export function parseFile(path: string, set: RuleSet): void {
  for (const f of expandPath(path)) parseText(readFileSync(f, 'utf8'), f, set);
}

/** The files a path names: a file, every `*.conf` in a folder (sorted), or `dir/*.conf`. */
export function expandPath(path: string): string[] {
  const star = path.lastIndexOf('*');
  if (star >= 0) {
    const dir = dirname(path);
    const pattern = path.slice(dir.length + 1);
    const re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    return readdirSync(dir)
      .filter((f) => re.test(f))
      .sort()
      .map((f) => join(dir, f));
  }
  if (statSync(path).isDirectory()) {
    return readdirSync(path)
      .filter((f) => f.endsWith('.conf'))
      .sort()
      .map((f) => join(path, f));
  }
  return [path];
}

/** Parses SecLang `text` (named `file` in reports) into `set`. */
export function parseText(text: string, file: string, set: RuleSet): void {
  const defaults = new Map<number, ActionRef[]>();
  let openChain: RuleAst | undefined;
  for (const d of lex(text, file, set.unsupported)) {
    const at = (message: string) => set.unsupported.push({ file: d.file, line: d.line, message });
    const note = (message: string) => set.notes.push({ file: d.file, line: d.line, message });
    switch (d.name) {
      case 'SecRule':
      case 'SecAction': {
        const rule = parseRule(d, defaults, set, openChain !== undefined);
        if (rule === undefined) {
          openChain = undefined;
          break;
        }
        if (openChain !== undefined) {
          let last = openChain;
          while (last.chain !== undefined) last = last.chain;
          last.chain = rule;
        } else {
          set.items.push({ kind: 'rule', rule });
        }
        const chains = rule.actions.some((a) => a.name === 'chain');
        if (openChain === undefined && chains) openChain = rule;
        else if (!chains) openChain = undefined;
        break;
      }
      case 'SecMarker':
        if (d.args[0] === undefined) at('SecMarker needs a name');
        else set.items.push({ kind: 'marker', name: d.args[0], file: d.file, line: d.line });
        break;
      case 'SecDefaultAction': {
        const acts = splitActions(d.args[0] ?? '');
        if (typeof acts === 'string') {
          at(acts);
          break;
        }
        const phaseAct = acts.find((a) => a.name === 'phase');
        const phase = phaseOf(phaseAct?.value) ?? 2;
        defaults.set(
          phase,
          acts.filter((a) => a.name !== 'phase'),
        );
        break;
      }
      case 'SecRuleEngine': {
        const v = d.args[0];
        if (v === 'On' || v === 'Off' || v === 'DetectionOnly') set.engine = v;
        else at(`SecRuleEngine: expected On, Off or DetectionOnly, got "${v}"`);
        break;
      }
      case 'SecRuleRemoveById': {
        const ranges = d.args.flatMap((a) => a.split(/[\s,]+/)).filter((a) => a !== '');
        const test = idMatcher(ranges);
        if (test === undefined) at(`SecRuleRemoveById: expected ids or ranges, got "${d.args.join(' ')}"`);
        else removeRules(set, (r) => test(r.id));
        break;
      }
      case 'SecRuleRemoveByTag': {
        const re = safeRegex(d.args[0] ?? '');
        if (re === undefined) at('SecRuleRemoveByTag: invalid tag pattern');
        else removeRules(set, (r) => r.tags.some((t) => re.test(t)));
        break;
      }
      case 'SecRuleRemoveByMsg': {
        const re = safeRegex(d.args[0] ?? '');
        if (re === undefined) at('SecRuleRemoveByMsg: invalid pattern');
        else removeRules(set, (r) => r.msg !== undefined && re.test(r.msg));
        break;
      }
      case 'SecRuleUpdateTargetById':
      case 'SecRuleUpdateTargetByTag': {
        const [which, targets] = d.args;
        if (which === undefined || targets === undefined) {
          at(`${d.name} needs a rule and targets`);
          break;
        }
        const vars = parseVariables(targets, at);
        let select: ((r: RuleAst) => boolean) | undefined;
        if (d.name === 'SecRuleUpdateTargetById') {
          const test = idMatcher(which.split(/[\s,]+/));
          select = test && ((r) => test(r.id));
        } else {
          const re = safeRegex(which);
          select = re && ((r) => r.tags.some((t) => re.test(t)));
        }
        if (select === undefined) {
          at(`${d.name}: invalid rule selector "${which}"`);
          break;
        }
        let found = false;
        for (const it of set.items) {
          if (it.kind === 'rule' && select(it.rule)) {
            it.rule.variables = [...it.rule.variables, ...vars];
            found = true;
          }
        }
        if (!found) note(`${d.name}: no rule matches "${which}"`);
        break;
      }
      case 'Include':
      case 'IncludeOptional': {
        const p = d.args[0] ?? '';
        const full = isAbsolute(p) ? p : resolve(dirname(file), p);
        try {
          parseFile(full, set);
        } catch (err) {
          if (d.name === 'Include') at(`Include: ${(err as Error).message}`);
        }
        break;
      }
      default:
        if (d.name in IGNORED_DIRECTIVES) note(`${d.name} ignored: ${IGNORED_DIRECTIVES[d.name]}`);
        else at(`unsupported directive ${d.name}`);
    }
  }
  if (openChain !== undefined) {
    set.unsupported.push({
      file: openChain.file,
      line: openChain.line,
      message: 'rule ends a file with "chain" but no rule follows',
    });
  }
}

function removeRules(set: RuleSet, drop: (r: RuleAst) => boolean): void {
  for (let i = set.items.length - 1; i >= 0; i--) {
    const it = set.items[i]!;
    if (it.kind === 'rule' && drop(it.rule)) set.items.splice(i, 1);
  }
}

/** `942100`, `942100-942199` (a list) → a test, or undefined when malformed. */
export function idMatcher(parts: readonly string[]): ((id: number) => boolean) | undefined {
  const ranges: [number, number][] = [];
  for (const p of parts) {
    if (p === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(p);
    if (m === null) return undefined;
    ranges.push([Number(m[1]), Number(m[2] ?? m[1])]);
  }
  if (ranges.length === 0) return undefined;
  return (id) => ranges.some(([a, b]) => id >= a && id <= b);
}

function safeRegex(s: string): RegExp | undefined {
  try {
    return new RegExp(s);
  } catch {
    return undefined;
  }
}

function phaseOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v in PHASES) return PHASES[v];
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 && n <= 5 ? n : undefined;
}

function parseRule(
  d: Directive,
  defaults: ReadonlyMap<number, ActionRef[]>,
  set: RuleSet,
  chained: boolean,
): RuleAst | undefined {
  const at = (message: string) => set.unsupported.push({ file: d.file, line: d.line, message });
  const note = (message: string) => set.notes.push({ file: d.file, line: d.line, message });
  let variables: VariableRef[] = [];
  let operator: OperatorRef = { name: 'unconditionalMatch', negated: false, arg: '' };
  let actionText: string;
  if (d.name === 'SecRule') {
    if (d.args.length < 2) {
      at('SecRule needs variables and an operator');
      return undefined;
    }
    variables = parseVariables(d.args[0]!, at);
    operator = parseOperator(d.args[1]!, d.file, at, note);
    actionText = d.args[2] ?? '';
  } else {
    actionText = d.args[0] ?? '';
  }
  const acts = splitActions(actionText);
  if (typeof acts === 'string') {
    at(acts);
    return undefined;
  }
  const tags: string[] = [];
  let id = 0;
  let phase: number | undefined;
  let msg: string | undefined;
  for (const a of acts) {
    if (!ACTIONS.has(a.name)) {
      at(`unsupported action ${a.name}`);
      continue;
    }
    if (a.name in INERT_ACTIONS && a.name !== 'auditlog' && a.name !== 'noauditlog') {
      note(`action ${a.name} ignored: ${INERT_ACTIONS[a.name]}`);
    }
    switch (a.name) {
      case 'id':
        id = Number(a.value);
        if (!Number.isInteger(id) || id <= 0) at(`invalid rule id "${a.value}"`);
        break;
      case 'phase':
        phase = phaseOf(a.value);
        if (phase === undefined) at(`invalid phase "${a.value}"`);
        break;
      case 'tag':
        if (a.value !== undefined) tags.push(a.value);
        break;
      case 'msg':
        msg = a.value;
        break;
      case 't':
        if (a.value === undefined || !TRANSFORMATIONS.has(a.value))
          at(`unsupported transformation ${a.value}`);
        break;
      case 'ctl': {
        const name = (a.value ?? '').split('=')[0]!;
        if (!CTL_OPTIONS.has(name)) at(`unsupported ctl option ${name}`);
        break;
      }
    }
  }
  if (!chained && id === 0) at(`${d.name} without an id`);
  const p = phase ?? 2;
  return {
    id: chained ? 0 : id,
    phase: p,
    variables,
    operator,
    actions: acts,
    defaults: defaults.get(p) ?? [],
    tags,
    msg,
    chain: undefined,
    file: d.file,
    line: d.line,
  };
}

/** `ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/^__utm/` → references; `|` inside `/.../` or quotes does not split. */
export function parseVariables(s: string, at: (m: string) => void): VariableRef[] {
  const parts: string[] = [];
  let cur = '';
  let inRegex = false;
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "'" && !inRegex) inQuote = !inQuote;
    else if (c === '/' && !inQuote && (inRegex || s[i - 1] === ':' || s[i - 2] === ':')) {
      if (!inRegex) inRegex = true;
      else if (s[i - 1] !== '\\') inRegex = false;
    }
    if (c === '|' && !inRegex && !inQuote) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  const out: VariableRef[] = [];
  for (let p of parts) {
    p = p.trim();
    if (p === '') continue;
    let count = false;
    let exclude = false;
    if (p[0] === '&') {
      count = true;
      p = p.slice(1);
    } else if (p[0] === '!') {
      exclude = true;
      p = p.slice(1);
    }
    const colon = p.indexOf(':');
    const name = (colon < 0 ? p : p.slice(0, colon)).toUpperCase();
    let key: string | undefined = colon < 0 ? undefined : p.slice(colon + 1);
    if (key !== undefined && key.length >= 2 && key[0] === "'" && key[key.length - 1] === "'")
      key = key.slice(1, -1);
    let keyRegex: string | undefined;
    if (key !== undefined && key.length >= 2 && key[0] === '/' && key[key.length - 1] === '/') {
      keyRegex = key.slice(1, -1);
      key = undefined;
    }
    if (!VARIABLES.has(name)) {
      at(`unsupported variable ${name}`);
      continue;
    }
    out.push({ name, key: key?.toLowerCase(), keyRegex, count, exclude });
  }
  return out;
}

function parseOperator(
  s: string,
  file: string,
  at: (m: string) => void,
  note: (m: string) => void,
): OperatorRef {
  let negated = false;
  let t = s;
  if (t[0] === '!') {
    negated = true;
    t = t.slice(1);
  }
  if (t[0] !== '@') return { name: 'rx', negated, arg: t };
  const sp = t.search(/\s/);
  const name = sp < 0 ? t.slice(1) : t.slice(1, sp);
  const arg = sp < 0 ? '' : t.slice(sp + 1).trimStart();
  if (!OPERATORS.has(name)) {
    at(`unsupported operator @${name}`);
    return { name: 'noMatch', negated: false, arg: '' };
  }
  if (name in INERT_OPERATORS) note(`operator @${name} never matches: ${INERT_OPERATORS[name]}`);
  if (name === 'pmFromFile' || name === 'pmf' || name === 'ipMatchFromFile' || name === 'ipMatchF') {
    const data: string[] = [];
    for (const f of arg.split(/\s+/).filter((x) => x !== '')) {
      if (/^https?:/.test(f)) {
        at(`@${name}: remote files are not fetched (${f})`);
        continue;
      }
      const full = isAbsolute(f) ? f : resolve(dirname(file), f);
      try {
        for (const line of readFileSync(full, 'utf8').split(/\r?\n/)) {
          const l = line.trim();
          if (l !== '' && l[0] !== '#') data.push(l);
        }
      } catch (err) {
        at(`@${name}: cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    return { name, negated, arg, data };
  }
  return { name, negated, arg };
}

export { EMPTY_VARIABLES };
