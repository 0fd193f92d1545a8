/**
 * The rule engine: a parsed rule set compiled once into closures (operators with their regexes and phrase
 * matchers built, transformation chains resolved, macros split, skipAfter targets resolved to indexes), then
 * run per request over a Transaction that builds each collection on first read.
 *
 * Semantics follow ModSecurity v2 where CRS depends on them: a rule's non-disruptive actions (setvar, ctl, and
 * capture into TX:0-9) run for each matching target, in every link of a chain as soon as that link matches (so a
 * chained rule reads what its starter set: CRS 920420, 920440, 920450); a chain matches when every link matches,
 * and only then do its starter's disruptive action, flow actions (skip, skipAfter) and logging apply; `block`
 * takes the disruptive action of SecDefaultAction (pass under CRS's anomaly scoring); deny, drop and a 4xx/5xx
 * status interrupt (in mode On); allow ends the phase; skipAfter jumps past a marker. Macros in an `@rx` pattern
 * (`!@rx ^%{tx.allowed_charset}$`, CRS 920480) are expanded per request, as ModSecurity 2.9 does.
 */
import { BlockList, isIP } from 'node:net';
import { detectSqli } from './detect-sqli.js';
import { detectXss } from './detect-xss.js';
import { foldRuleSet, type Plan, withLocals } from './fold.js';
import { type MacroRef, macroParts } from './macros.js';
import { PhraseMatcher } from './pm.js';
import { compileRegex, RegexSetBuilder, type RegexSetMatcher, type RuleRegex } from './regex.js';
import {
  type Entry,
  type MultipartFlags,
  multipartStrictError,
  type ParsedBody,
  parseCookies,
  parseUrlEncoded,
  type WafInput,
} from './request.js';
import type { SourceIssue } from './seclang/lexer.js';
import {
  type ActionRef,
  idMatcher,
  type OperatorRef,
  parseVariables,
  type RuleAst,
  type RuleSet,
  type VariableRef,
} from './seclang/parse.js';
import { remembered, TRANSFORMS, type Transform } from './transforms.js';

export type EngineMode = 'On' | 'DetectionOnly' | 'Off';

// ---------- macros ----------

/** The `%{...}` references in `s`. */
function macroRefs(s: string): MacroRef[] {
  return macroParts(s).filter((p): p is MacroRef => typeof p !== 'string');
}

type Macro = (tx: Transaction, rule: CompiledRule) => string;

function compileMacro(s: string): Macro {
  if (s.indexOf('%{') < 0) return () => s;
  const parts = macroParts(s);
  return (tx, rule) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : tx.macroValue(p[0], p[1], rule);
    return out;
  };
}

// ---------- operators ----------

/** Returns true on a match; may set captures on the transaction. */
type Operator = (value: string, tx: Transaction, rule: CompiledRule) => boolean;

function num(s: string): number {
  const n = Number.parseInt(s, 10);
  return Number.isNaN(n) ? 0 : n;
}

function byteRanges(arg: string): Uint8Array {
  const ok = new Uint8Array(256);
  for (const part of arg.split(/[\s,]+/)) {
    if (part === '') continue;
    const [a, b] = part.split('-');
    const lo = num(a!);
    const hi = b === undefined ? lo : num(b);
    for (let i = Math.max(0, lo); i <= Math.min(255, hi); i++) ok[i] = 1;
  }
  return ok;
}

function validUtf8(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    let n = 0;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) n = 2;
    else if (c >= 0xf0 && c <= 0xf4) n = 3;
    else return false;
    for (let k = 1; k <= n; k++) {
      const cc = s.charCodeAt(i + k);
      if (Number.isNaN(cc) || (cc & 0xc0) !== 0x80) return false;
    }
    i += n;
  }
  return true;
}

function ipList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    for (const item of e.split(/[\s,]+/)) {
      if (item === '') continue;
      const [addr, bits] = item.split('/');
      const v = isIP(addr!);
      if (v === 0) throw new Error(`@ipMatch: invalid address "${item}"`);
      list.addSubnet(
        addr!,
        bits === undefined ? (v === 4 ? 32 : 128) : Number(bits),
        v === 4 ? 'ipv4' : 'ipv6',
      );
    }
  }
  return list;
}

// Pure, and run on every argument: the answers for values seen lately are kept (bounded, see remembered).
const sqliOf = remembered(detectSqli, 4096, 256);
const xssOf = remembered(detectXss, 4096, 256);

/**
 * `@rx` with macros: the pattern is expanded per request and compiled then (a few distinct expansions per rule in
 * practice, TX settings: kept, at most 32 per rule). A pattern that does not compile never matches (ModSecurity
 * logs it and goes on); a user pattern must still compile on RE2 (linear time) after expansion.
 */
function macroRegex(macro: Macro, capture: boolean, trusted: boolean): Operator {
  const compiled = new Map<string, RuleRegex | null>();
  return (v, tx, rule) => {
    const source = macro(tx, rule);
    let re = compiled.get(source);
    if (re === undefined) {
      const c = compileRegex(source, trusted);
      re = c.ok ? c.re : null;
      if (compiled.size >= 32) compiled.clear();
      compiled.set(source, re);
    }
    if (re === null) return false;
    if (!capture) return re.test(v);
    const m = re.exec(v);
    if (m === null) return false;
    tx.setCaptures(m);
    return true;
  };
}

/** The captures of a pattern that matches every value whole: TX:0 (and TX:1 for its one group) is the value. */
function wholeValue(groups: 0 | 1): RuleRegex {
  return {
    exec: (s) => Object.assign(groups === 0 ? [s] : [s, s], { index: 0, input: s }) as RegExpExecArray,
    test: () => true,
  };
}
/** Such patterns (`.` matches newlines: PCRE_DOTALL in ModSecurity, `(?s)` here). */
const MATCH_ALL = new Map<string, RuleRegex>([
  ['^.*$', wholeValue(0)],
  ['^.*', wholeValue(0)],
  ['.*', wholeValue(0)],
  ['^(.*)$', wholeValue(1)],
  ['(.*)', wholeValue(1)],
]);

interface OperatorBuild {
  readonly op: Operator;
  /** Its answer depends on the value alone (no macro, no capture): remembered per value (ValueInfo.ops). */
  readonly pure?: boolean;
  readonly engine?: 're2' | 'v8';
  /** An `@rx` in the rule set's RE2.Set: its index there. */
  readonly setIndex?: number;
}

function compileOperator(
  o: OperatorRef,
  capture: boolean,
  trusted: boolean,
  rx: RegexSetBuilder,
): OperatorBuild | string {
  const arg = o.arg;
  const macro = arg.indexOf('%{') >= 0 ? compileMacro(arg) : undefined;
  const argOf = macro === undefined ? () => arg : (tx: Transaction, r: CompiledRule) => macro(tx, r);
  switch (o.name) {
    case 'rx': {
      if (macro !== undefined) return { op: macroRegex(macro, capture, trusted) };
      const c = compileRegex(arg, trusted);
      if (!c.ok) return `@rx: ${c.error}`;
      const re: RuleRegex = c.re;
      if (c.re2Source === undefined) {
        if (!capture) return { op: (v) => re.test(v), engine: c.engine };
        return {
          engine: c.engine,
          op: (v, tx) => {
            const m = re.exec(v);
            if (m === null) return false;
            tx.setCaptures(m);
            return true;
          },
        };
      }
      // RE2: the rule set's RE2.Set answers for every pattern at once (null: it could not, ask the regex).
      const idx = rx.add(c.re2Source);
      if (!capture)
        return {
          engine: c.engine,
          setIndex: idx,
          op: (v, tx) => {
            const hits = tx.regexHits(v);
            return hits === null ? re.test(v) : hits.includes(idx);
          },
        };
      // `^.*$` (CRS 920450's header names, with DOTALL): the whole value is the match, no regex run for it.
      const captures = MATCH_ALL.get(arg) ?? re;
      return {
        engine: c.engine,
        setIndex: idx,
        op: (v, tx) => {
          const hits = tx.regexHits(v);
          if (hits === null ? !re.test(v) : !hits.includes(idx)) return false;
          tx.captureLater(captures, v);
          return true;
        },
      };
    }
    case 'pm':
    case 'pmf':
    case 'pmFromFile': {
      const phrases = o.data ?? arg.split(/\s+/).filter((x) => x !== '');
      const pm = new PhraseMatcher(phrases);
      return {
        pure: !capture,
        op: (v, tx) => {
          const found = pm.find(v);
          if (found === undefined) return false;
          if (capture) tx.setCaptures([found]);
          return true;
        },
      };
    }
    case 'beginsWith':
      return { op: (v, tx, r) => v.startsWith(argOf(tx, r)) };
    case 'endsWith':
      return { op: (v, tx, r) => v.endsWith(argOf(tx, r)) };
    case 'contains':
      return { op: (v, tx, r) => v.includes(argOf(tx, r)) };
    case 'containsWord':
      return {
        op: (v, tx, r) => {
          const w = argOf(tx, r);
          let at = v.indexOf(w);
          while (at >= 0) {
            const before = v[at - 1];
            const after = v[at + w.length];
            if ((before === undefined || !/\w/.test(before)) && (after === undefined || !/\w/.test(after)))
              return true;
            at = v.indexOf(w, at + 1);
          }
          return false;
        },
      };
    case 'streq':
      return { op: (v, tx, r) => v === argOf(tx, r) };
    case 'strmatch':
      return { op: (v, tx, r) => v.includes(argOf(tx, r)) };
    case 'within':
      return {
        op: (v, tx, r) => {
          if (v === '') return false;
          return argOf(tx, r).includes(v);
        },
      };
    case 'eq':
      return { op: (v, tx, r) => num(v) === num(argOf(tx, r)) };
    case 'ge':
      return { op: (v, tx, r) => num(v) >= num(argOf(tx, r)) };
    case 'gt':
      return { op: (v, tx, r) => num(v) > num(argOf(tx, r)) };
    case 'le':
      return { op: (v, tx, r) => num(v) <= num(argOf(tx, r)) };
    case 'lt':
      return { op: (v, tx, r) => num(v) < num(argOf(tx, r)) };
    case 'ipMatch':
    case 'ipMatchF':
    case 'ipMatchFromFile': {
      let list: BlockList;
      try {
        list = ipList(o.data ?? [arg]);
      } catch (err) {
        return (err as Error).message;
      }
      // The same address comes again and again (REMOTE_ADDR): the last answer is kept.
      let last: string | undefined;
      let lastHit = false;
      return {
        op: (v) => {
          if (v === last) return lastHit;
          const fam = isIP(v);
          lastHit = fam !== 0 && list.check(v, fam === 4 ? 'ipv4' : 'ipv6');
          last = v;
          return lastHit;
        },
      };
    }
    case 'validateByteRange': {
      const ok = byteRanges(arg);
      return {
        pure: true,
        op: (v) => {
          for (let i = 0; i < v.length; i++) {
            const c = v.charCodeAt(i);
            if (c > 255 || ok[c] === 0) return true;
          }
          return false;
        },
      };
    }
    case 'validateUrlEncoding':
      return {
        pure: true,
        op: (v) => {
          for (let i = v.indexOf('%'); i >= 0; i = v.indexOf('%', i + 1)) {
            if (!/^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) return true;
          }
          return false;
        },
      };
    case 'validateUtf8Encoding':
      return { pure: true, op: (v) => !validUtf8(v) };
    case 'detectSQLi':
      return {
        pure: !capture,
        op: (v, tx) => {
          const r = sqliOf(v);
          if (r === undefined) return false;
          if (capture) tx.setCaptures([r.fingerprint]);
          return true;
        },
      };
    case 'detectXSS':
      return { pure: true, op: (v) => xssOf(v) };
    case 'unconditionalMatch':
      return { op: () => true };
    case 'noMatch':
    case 'rbl':
    case 'geoLookup':
      return { op: () => false };
    default:
      return `unsupported operator @${o.name}`;
  }
}

// ---------- actions ----------

export interface SetVar {
  readonly collection: string;
  readonly name: Macro;
  /** The name as written (`tx.%{rule.id}-foo`), for the fold's analysis of what a rule writes. */
  readonly nameText: string;
  readonly op: 'set' | 'add' | 'sub' | 'delete';
  readonly value: Macro;
}

function compileSetVar(s: string): SetVar | string {
  let t = s.trim();
  let del = false;
  if (t[0] === '!') {
    del = true;
    t = t.slice(1);
  }
  const eq = t.indexOf('=');
  const target = eq < 0 ? t : t.slice(0, eq);
  const dot = target.indexOf('.');
  if (dot < 0) return `setvar: expected collection.name, got "${s}"`;
  const collection = target.slice(0, dot).toUpperCase();
  if (!['TX', 'IP', 'GLOBAL', 'SESSION', 'USER', 'RESOURCE'].includes(collection))
    return `setvar: unsupported collection ${collection}`;
  const nameText = target.slice(dot + 1);
  const name = compileMacro(nameText);
  if (del) return { collection, name, nameText, op: 'delete', value: () => '' };
  if (eq < 0) return { collection, name, nameText, op: 'set', value: () => '1' };
  let v = t.slice(eq + 1);
  let op: SetVar['op'] = 'set';
  if (v[0] === '+') {
    op = 'add';
    v = v.slice(1);
  } else if (v[0] === '-') {
    op = 'sub';
    v = v.slice(1);
  }
  return { collection, name, nameText, op, value: compileMacro(v) };
}

type Ctl = (tx: Transaction) => void;

function compileCtl(s: string): Ctl | string | undefined {
  const eq = s.indexOf('=');
  const name = eq < 0 ? s : s.slice(0, eq);
  const value = eq < 0 ? '' : s.slice(eq + 1);
  switch (name) {
    case 'ruleEngine':
      if (value !== 'On' && value !== 'Off' && value !== 'DetectionOnly') return `ctl:ruleEngine=${value}`;
      return (tx) => tx.setEngine(value);
    case 'ruleRemoveById': {
      const test = idMatcher(value.split(/[\s,]+/));
      if (test === undefined) return `ctl:ruleRemoveById=${value}`;
      return (tx) => tx.removeRules((r) => test(r.id));
    }
    case 'ruleRemoveByTag': {
      const re = new RegExp(value);
      return (tx) => tx.removeRules((r) => r.tags.some((t) => re.test(t)));
    }
    case 'ruleRemoveTargetById':
    case 'ruleRemoveTargetByTag': {
      const semi = value.indexOf(';');
      if (semi < 0) return `ctl:${name}: expected <rule>;<target>`;
      const which = value.slice(0, semi);
      const problems: string[] = [];
      const vars = parseVariables(value.slice(semi + 1), (m) => problems.push(m));
      if (problems.length > 0) return `ctl:${name}: ${problems.join('; ')}`;
      let select: (r: CompiledRule) => boolean;
      if (name === 'ruleRemoveTargetById') {
        const test = idMatcher(which.split(/[\s,]+/));
        if (test === undefined) return `ctl:${name}=${value}`;
        select = (r) => test(r.id);
      } else {
        const re = new RegExp(which);
        select = (r) => r.tags.some((t) => re.test(t));
      }
      return (tx) => tx.removeTargets(select, vars);
    }
    default:
      // auditEngine, auditLogParts, requestBodyAccess, requestBodyProcessor, forceRequestBodyVariable: the
      // decision log and the body processing are the policy's; nothing to do per request.
      return undefined;
  }
}

// ---------- rules ----------

interface Target {
  readonly ref: VariableRef;
  readonly name: string;
  readonly key: string | undefined;
  readonly keyRegex: RegExp | undefined;
  readonly count: boolean;
  /** `TX:name` / `&TX:name`: the name (read straight from the map). */
  readonly txKey: string | undefined;
  /** `TX:name`, the variable name a match reports. */
  readonly txName: string;
  /** The rule has `!` exclusions on this collection. */
  readonly excludable: boolean;
  /** The collection's index in a transaction's per-request cache; -1 for the ones rules change (TX, MATCHED_*). */
  readonly slot: number;
}

/** Collections whose values change while rules run: read afresh each time. */
function isDynamic(name: string): boolean {
  return (
    name === 'TX' ||
    name === 'IP' ||
    name === 'GLOBAL' ||
    name === 'SESSION' ||
    name === 'USER' ||
    name === 'RESOURCE' ||
    name.startsWith('MATCHED')
  );
}

// Collection name → cache slot, shared by every rule set (bounded by the variables SecLang has).
const SLOTS = new Map<string, number>();
/** Per slot: the collection does not depend on the request body (kept when the body arrives). */
const BEFORE_BODY: boolean[] = [];

/** Collections read from the request line and headers only. */
const HEAD_ONLY = new Set([
  'REQUEST_HEADERS',
  'REQUEST_HEADERS_NAMES',
  'REQUEST_COOKIES',
  'REQUEST_COOKIES_NAMES',
  'REQUEST_URI',
  'REQUEST_URI_RAW',
  'REQUEST_FILENAME',
  'REQUEST_BASENAME',
  'REQUEST_LINE',
  'REQUEST_METHOD',
  'REQUEST_PROTOCOL',
  'QUERY_STRING',
  'ARGS_GET',
  'ARGS_GET_NAMES',
  'REMOTE_ADDR',
]);

function target(ref: VariableRef, all: readonly VariableRef[]): Target {
  let slot = -1;
  if (!isDynamic(ref.name)) {
    slot = SLOTS.get(ref.name) ?? SLOTS.size;
    SLOTS.set(ref.name, slot);
    BEFORE_BODY[slot] = HEAD_ONLY.has(ref.name);
  }
  return {
    ref,
    name: ref.name,
    key: ref.key,
    keyRegex: keyTest(ref),
    count: ref.count,
    txKey: ref.name === 'TX' ? ref.key : undefined,
    txName: `TX:${ref.key}`,
    excludable: all.some((x) => x.exclude && x.name === ref.name),
    slot,
  };
}

export interface CompiledRule {
  readonly id: number;
  /** The macros its operator argument, setvars and msg read (see fold.ts). */
  readonly refs: readonly MacroRef[];
  /** Those of its operator argument alone (read before the rule's own match sets MATCHED_VAR). */
  readonly opRefs: readonly MacroRef[];
  /** `capture`: a match writes TX:0-9. */
  readonly capture: boolean;
  readonly phase: number;
  readonly file: string;
  readonly line: number;
  readonly tags: readonly string[];
  /** `severity`, by name (CRITICAL, ERROR, WARNING, NOTICE, ...), for the audit log. */
  readonly severity: string | undefined;
  readonly msg: Macro | undefined;
  readonly targets: readonly Target[];
  readonly exclusions: readonly Target[];
  /** The transformation chain's index in the rule set (rules with the same chain share it), -1 for none. */
  readonly chainId: number;
  /** The chain as one function (shared by the rules with the same chain; identity for none). */
  readonly transformAll: Transform;
  readonly op: Operator;
  /**
   * A non-negated `@rx` in the rule set's RE2.Set: its index there (else -1). Such a rule cannot match when no
   * value of its collections hits the pattern, which the transaction knows per collection and chain.
   */
  readonly setIndex: number;
  /** A pure operator (see OperatorBuild.pure): its index in ValueInfo.ops (else -1), set by compileRuleSet. */
  pureIndex: number;
  readonly pure: boolean;
  readonly negated: boolean;
  readonly setvars: readonly SetVar[];
  readonly ctls: readonly Ctl[];
  /** deny, drop, allow, pass, or undefined (none given: the default's). */
  readonly disruptive: 'deny' | 'drop' | 'allow' | 'pass' | undefined;
  readonly status: number;
  readonly log: boolean;
  readonly skipAfter: string | undefined;
  readonly skip: number;
  readonly chain: CompiledRule | undefined;
  /** Index in the phase list to continue after when skipAfter fires (-1: none). */
  skipTo: number;
  /**
   * A link whose match on a request is the OR of its operator over its collections' values, each through its
   * chain (a pure operator or an `@rx` of the set, every target a collection): its index in a transaction's
   * may-match marks (see Transaction.#markSlots), else -1. Starters only. Set by compileRuleSet.
   */
  localIndex: number;
  /** Such a link's collection slots (each once). */
  localSlots: readonly number[];
}

function keyTest(ref: VariableRef): RegExp | undefined {
  if (ref.keyRegex === undefined) return undefined;
  try {
    return new RegExp(ref.keyRegex, 'i');
  } catch {
    return /$^/;
  }
}

const SEVERITIES = ['EMERGENCY', 'ALERT', 'CRITICAL', 'ERROR', 'WARNING', 'NOTICE', 'INFO', 'DEBUG'];

/** `severity:2` or `severity:'CRITICAL'` → `CRITICAL`. */
function severityName(v: string): string {
  const t = v.trim().toUpperCase();
  return /^[0-7]$/.test(t) ? SEVERITIES[Number(t)]! : t;
}

interface CompileContext {
  readonly trusted: boolean;
  readonly problems: SourceIssue[];
  readonly rx: RegexSetBuilder;
  /** `file:line` of the patterns that run on V8. */
  readonly v8Patterns: string[];
  /** Transformation chains by their names (`lowercase,urlDecodeUni`) → index, and the chain's function. */
  readonly chains: Map<string, { readonly id: number; readonly run: Transform }>;
}

/** A chain's transformations as one function (shared by the rules that name the same chain). */
function internChain(
  cc: CompileContext,
  key: string,
  transforms: readonly Transform[],
): { id: number; run: Transform } {
  let c = cc.chains.get(key);
  if (c === undefined) {
    const all = [...transforms];
    const run =
      all.length === 1
        ? all[0]!
        : (s: string) => {
            for (let i = 0; i < all.length; i++) s = all[i]!(s);
            return s;
          };
    c = { id: cc.chains.size, run };
    cc.chains.set(key, c);
  }
  return c;
}

const NO_CHAIN = { id: -1, run: (s: string) => s };

function compileRule(ast: RuleAst, cc: CompileContext): CompiledRule | undefined {
  const at = (message: string) => cc.problems.push({ file: ast.file, line: ast.line, message });
  const all: ActionRef[] = [...ast.defaults, ...ast.actions];
  let transforms: Transform[] = [];
  let chainNames: string[] = [];
  const setvars: SetVar[] = [];
  const ctls: Ctl[] = [];
  let disruptive: CompiledRule['disruptive'];
  let defaultDisruptive: CompiledRule['disruptive'];
  let status = 403;
  let log = true;
  let capture = false;
  let skipAfter: string | undefined;
  let skip = 0;
  let msg: Macro | undefined;
  let severity: string | undefined;
  const opRefs = macroRefs(ast.operator.arg);
  const refs: MacroRef[] = [...opRefs];
  const nDefaults = ast.defaults.length;
  all.forEach((a, i) => {
    const fromDefault = i < nDefaults;
    switch (a.name) {
      case 't':
        if (a.value === 'none') {
          transforms = [];
          chainNames = [];
        } else if (a.value !== undefined && TRANSFORMS[a.value] !== undefined) {
          transforms.push(TRANSFORMS[a.value]!);
          chainNames.push(a.value);
        }
        break;
      case 'deny':
      case 'drop':
      case 'allow':
      case 'pass':
        if (fromDefault) defaultDisruptive = a.name;
        else disruptive = a.name;
        break;
      case 'block':
        disruptive = undefined;
        break;
      case 'status':
        status = num(a.value ?? '403');
        break;
      case 'log':
        log = true;
        break;
      case 'nolog':
        log = false;
        break;
      case 'capture':
        capture = true;
        break;
      case 'skipAfter':
        skipAfter = a.value;
        break;
      case 'skip':
        skip = num(a.value ?? '0');
        break;
      case 'msg':
        if (!fromDefault && a.value !== undefined) {
          msg = compileMacro(a.value);
          refs.push(...macroRefs(a.value));
        }
        break;
      case 'severity':
        if (!fromDefault && a.value !== undefined) severity = severityName(a.value);
        break;
      case 'setvar': {
        if (fromDefault) break;
        const sv = compileSetVar(a.value ?? '');
        if (typeof sv === 'string') at(sv);
        else {
          setvars.push(sv);
          refs.push(...macroRefs(a.value ?? ''));
        }
        break;
      }
      case 'ctl': {
        if (fromDefault) break;
        const c = compileCtl(a.value ?? '');
        if (typeof c === 'string') at(`unsupported ${c}`);
        else if (c !== undefined) ctls.push(c);
        break;
      }
    }
  });
  // `block`, or no disruptive action at all: the phase's default (CRS sets pass).
  if (disruptive === undefined) disruptive = defaultDisruptive;
  const built = compileOperator(ast.operator, capture, cc.trusted, cc.rx);
  if (typeof built === 'string') {
    at(built);
    return undefined;
  }
  let chain: CompiledRule | undefined;
  if (ast.chain !== undefined) {
    chain = compileRule({ ...ast.chain, defaults: [] }, cc);
    if (chain === undefined) return undefined;
  }
  if (built.engine === 'v8') cc.v8Patterns.push(`${ast.file}:${ast.line}`);
  const chain_ = transforms.length === 0 ? NO_CHAIN : internChain(cc, chainNames.join(','), transforms);
  const targets: Target[] = [];
  const exclusions: Target[] = [];
  for (const ref of ast.variables) (ref.exclude ? exclusions : targets).push(target(ref, ast.variables));
  return {
    id: ast.id,
    refs,
    opRefs,
    capture,
    phase: ast.phase,
    file: ast.file,
    line: ast.line,
    tags: ast.tags,
    severity,
    msg,
    targets,
    exclusions,
    chainId: chain_.id,
    transformAll: chain_.run,
    op: built.op,
    setIndex: built.setIndex !== undefined && !ast.operator.negated ? built.setIndex : -1,
    pure: built.pure === true,
    pureIndex: -1,
    negated: ast.operator.negated,
    setvars,
    ctls,
    disruptive,
    status,
    log,
    skipAfter,
    skip,
    chain,
    skipTo: -1,
    localIndex: -1,
    localSlots: [],
  };
}

export type PhaseEntry = CompiledRule | { readonly marker: string };

export interface CompiledRuleSet {
  /** Phase 1 and 2 lists (markers included, for skipAfter). */
  readonly phases: readonly (readonly PhaseEntry[])[];
  readonly ruleCount: number;
  /** Patterns that run on V8 because RE2 cannot run them. */
  readonly v8Patterns: readonly string[];
  readonly problems: readonly SourceIssue[];
  readonly engine: EngineMode | undefined;
  /** Every RE2 `@rx` pattern of the set in one automaton (undefined without RE2). */
  readonly regexSet: RegexSetMatcher | undefined;
  /** Distinct transformation chains (CompiledRule.chainId < chainCount). */
  readonly chainCount: number;
  /** Links with a localIndex (0 to localCount - 1). */
  readonly localCount: number;
  /** By collection slot: the local links that read it, and a target that names it (for Transaction.#named). */
  readonly slotLinks: readonly (readonly CompiledRule[] | undefined)[];
  readonly slotTargets: readonly (Target | undefined)[];
  /** Regex hits of short values, across requests. */
  readonly values: ValueMemo;
}

/** Compiles phases 1 and 2 (response phases are parsed and validated, never run). */
export function compileRuleSet(
  set: RuleSet,
  trustedFiles: (file: string) => boolean,
  options: { readonly regexSet?: boolean } = {},
): CompiledRuleSet {
  const problems: SourceIssue[] = [];
  const phases: PhaseEntry[][] = [[], [], []];
  const v8Patterns: string[] = [];
  const rx = new RegexSetBuilder();
  const chains: CompileContext['chains'] = new Map();
  let ruleCount = 0;
  for (const it of set.items) {
    if (it.kind === 'marker') {
      // A marker belongs to every phase: skipAfter jumps to it within the rule's own phase.
      phases[1]!.push({ marker: it.name });
      phases[2]!.push({ marker: it.name });
      continue;
    }
    const r = compileRule(it.rule, { trusted: trustedFiles(it.rule.file), problems, rx, v8Patterns, chains });
    if (r === undefined) continue;
    if (r.phase === 1 || r.phase === 2) {
      phases[r.phase]!.push(r);
      ruleCount++;
    }
  }
  for (const list of phases) {
    list.forEach((e, i) => {
      if (!('id' in e) || e.skipAfter === undefined) return;
      const name = e.skipAfter;
      let j = i + 1;
      for (; j < list.length; j++) {
        const x = list[j]!;
        if ('marker' in x ? x.marker === name : String(x.id) === name) break;
      }
      if (j >= list.length)
        problems.push({ file: e.file, line: e.line, message: `skipAfter: no marker ${name} after the rule` });
      e.skipTo = j;
    });
  }
  // Pure operators, numbered (ValueInfo.ops).
  let pure = 0;
  for (const list of phases)
    for (const e of list) {
      if (!('id' in e)) continue;
      for (let l: CompiledRule | undefined = e; l !== undefined; l = l.chain)
        if (l.pure) l.pureIndex = pure++;
    }
  // Local links (see CompiledRule.localIndex), and per collection slot the ones that read it.
  let local = 0;
  const slotLinks: CompiledRule[][] = [];
  const slotTargets: Target[] = [];
  for (const list of phases)
    for (const e of list) {
      if (!('id' in e)) continue;
      // Starters only: a chained link runs after its starter matched (rare), marking it for every value is waste.
      if (e.targets.length === 0 || (!e.pure && e.setIndex < 0)) continue;
      if (e.targets.some((t) => t.slot < 0 || t.count)) continue;
      e.localIndex = local++;
      e.localSlots = [...new Set(e.targets.map((t) => t.slot))];
      for (const t of e.targets) {
        slotTargets[t.slot] ??= t;
        const links = (slotLinks[t.slot] ??= []);
        if (links[links.length - 1] !== e) links.push(e);
      }
    }
  return {
    values: new ValueMemo(),
    localCount: local,
    slotLinks,
    slotTargets,
    phases,
    ruleCount,
    v8Patterns,
    problems,
    engine: set.engine,
    // Without the set (tests compare both), each rule runs its own regex.
    regexSet: options.regexSet === false ? undefined : rx.matcher(),
    chainCount: chains.size,
  };
}

// ---------- per request ----------

/** MULTIPART_* flag variables → the parser's flag ('0' when the body was not multipart, as in ModSecurity). */
const MULTIPART_FLAGS: Readonly<Record<string, keyof MultipartFlags>> = {
  MULTIPART_UNMATCHED_BOUNDARY: 'unmatchedBoundary',
  MULTIPART_BOUNDARY_QUOTED: 'boundaryQuoted',
  MULTIPART_BOUNDARY_WHITESPACE: 'boundaryWhitespace',
  MULTIPART_DATA_BEFORE: 'dataBefore',
  MULTIPART_DATA_AFTER: 'dataAfter',
  MULTIPART_HEADER_FOLDING: 'headerFolding',
  MULTIPART_LF_LINE: 'lfLine',
  MULTIPART_MISSING_SEMICOLON: 'missingSemicolon',
  MULTIPART_INVALID_QUOTING: 'invalidQuoting',
  MULTIPART_INVALID_PART: 'invalidPart',
  MULTIPART_INVALID_HEADER_FOLDING: 'invalidHeaderFolding',
};

/**
 * The rule set's regex hits on one value, by transformation chain: index chainId + 1 (0 for the value as is), null
 * when the set could not answer.
 */
interface ValueInfo {
  readonly hits: (readonly number[] | null | undefined)[];
  /** By CompiledRule.pureIndex: the pure operator's answer on the value through the rule's chain. */
  readonly ops: (boolean | undefined)[];
  /** By collection slot: the local links (CompiledRule.localIndex) the value matches there. */
  readonly links: (readonly number[] | undefined)[];
  /** By chainId: the chain leaves the value as it is. */
  readonly unchanged: (boolean | undefined)[];
}

function newValueInfo(): ValueInfo {
  return { hits: [], ops: [], links: [], unchanged: [] };
}

/**
 * The hits of short values (header values, argument names and values up to 128 characters) remembered across
 * requests: an API's traffic repeats them, and then a value costs one map lookup per request instead of one
 * transformation and set lookup per chain. Two generations of at most 4,096 values each (the young one replaces
 * the old one when full), so memory stays bounded (a few MB) whatever the traffic.
 */
export class ValueMemo {
  #young = new Map<string, ValueInfo>();
  #old = new Map<string, ValueInfo>();

  get(s: string): ValueInfo {
    if (s.length > 128) return newValueInfo();
    let info = this.#young.get(s);
    if (info !== undefined) return info;
    info = this.#old.get(s) ?? newValueInfo();
    if (this.#young.size >= 4096) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(s, info);
    return info;
  }
}

/** A target entry: `key` as rules name it (`ARGS:q`), `raw` as received, `lkey` lowercased for selectors. */
class Named implements Entry {
  readonly key: string;
  readonly raw: string;
  readonly lkey: string;
  readonly value: string;
  /** The value transformed, by transformation chain (CompiledRule.chainId), for this request. */
  transformed: (string | undefined)[] | undefined = undefined;
  /** The rule set's regex hits on it (shared by the requests that send the same short value); see ValueMemo. */
  info: ValueInfo | undefined = undefined;

  constructor(name: string, x: Entry) {
    this.key = x.key === '' ? name : `${name}:${x.key}`;
    this.raw = x.key;
    this.lkey = x.key.toLowerCase();
    this.value = x.value;
  }
}

const NO_TARGET: readonly (readonly Entry[])[] = [[{ key: '', value: '' }]];
const NO_NAMED: readonly Named[] = [];
const NO_LISTS: readonly (readonly Entry[])[] = [];

/** The entries named `key` (lowercase): no new array when none or all are. */
function withKey(all: readonly Named[], key: string): readonly Named[] {
  let n = 0;
  for (let i = 0; i < all.length; i++) if (all[i]!.lkey === key) n++;
  if (n === 0) return NO_NAMED;
  if (n === all.length) return all;
  return all.filter((x) => x.lkey === key);
}
/** A value no local link can match (in some collection). */
const NO_LINKS: readonly number[] = [];
const TX_COUNT_0: readonly Entry[] = [{ key: '&TX', value: '0' }];
const TX_COUNT_1: readonly Entry[] = [{ key: '&TX', value: '1' }];
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export interface MatchedRule {
  readonly id: number;
  readonly msg: string;
  /** The matched variable (`ARGS:q`, `REQUEST_HEADERS:user-agent`; a chain's: its last link's). */
  readonly variable: string;
  /** Its value as the operator saw it (after the rule's transformations): request data, for the audit log only. */
  readonly value: string;
  readonly severity: string | undefined;
  readonly tags: readonly string[];
}

export interface Interruption {
  readonly status: number;
  readonly ruleId: number;
}

const plans = new WeakMap<
  CompiledRuleSet,
  { byMap: WeakMap<ReadonlyMap<string, string>, Plan>; byContent: Map<string, Plan> }
>();
const TEMPLATE_INPUT: WafInput = {
  method: 'GET',
  rawTarget: '/',
  path: '/',
  query: '',
  protocol: 'HTTP/1.1',
  headers: {},
  remoteAddr: '0.0.0.0',
};

/** The rule set as written: no rule folded (the template's, and tests' reference). */
export function unfolded(rules: CompiledRuleSet, preset: ReadonlyMap<string, string>): Plan {
  return withLocals(rules.phases, preset, 0, 0);
}

/** `rules` folded for `preset` (see fold.ts), once per rule set and preset map. */
export function planOf(rules: CompiledRuleSet, preset: ReadonlyMap<string, string>): Plan {
  let cache = plans.get(rules);
  if (cache === undefined) plans.set(rules, (cache = { byMap: new WeakMap(), byContent: new Map() }));
  let plan = cache.byMap.get(preset);
  if (plan !== undefined) return plan;
  // A policy keeps one preset map; a caller that makes a map per transaction still plans once per content.
  const key = JSON.stringify([...preset]);
  plan = cache.byContent.get(key);
  if (plan === undefined) {
    plan = foldRuleSet(rules, () => {
      const t = new Transaction(rules, TEMPLATE_INPUT, 'On', preset, unfolded(rules, preset));
      return { evaluate: (r) => t.foldRule(r), test: (r) => t.testLink(r), tx: () => t.txMap() };
    });
    if (cache.byContent.size >= 64) cache.byContent.clear();
    cache.byContent.set(key, plan);
  }
  cache.byMap.set(preset, plan);
  return plan;
}

export class Transaction {
  readonly input: WafInput;
  readonly #rules: CompiledRuleSet;
  readonly #plan: Plan;
  readonly #tx: Map<string, string>;
  #pendingCapture: { readonly re: RuleRegex; readonly v: string } | undefined;
  /** TX as targets, until TX next changes. */
  #txNamed: readonly Named[] | undefined;
  readonly #ip = new Map<string, string>();
  readonly #cache = new Map<string, Entry[]>();
  /** Target entries per collection slot (see Target.slot), for this request. */
  #namedCache: (readonly Named[] | undefined)[] = [];
  /** The target entry the running operator reads, and the slot of its transformed form (see Named.hits). */
  #current: Named | undefined;
  #currentSlot = 0;
  /** By CompiledRule.localIndex: 1 when some value of its collections may match the link (see #markSlots). */
  #marks: number[] | undefined = undefined;
  /** By collection slot: 1 when its values' marks are in #marks. */
  #slotsDone: number[] | undefined = undefined;

  #body: ParsedBody | undefined;
  engine: EngineMode;
  #removed: ((r: CompiledRule) => boolean)[] | undefined;
  #removedTargets: { select: (r: CompiledRule) => boolean; vars: VariableRef[] }[] | undefined;
  #matchedVar: Entry = { key: '', value: '' };
  #matchedVars: Entry[] = [];
  /** Rules that matched and log (nolog rules are CRS bookkeeping). */
  readonly matched: MatchedRule[] = [];
  interruption: Interruption | undefined;
  #allowed = false;

  constructor(
    rules: CompiledRuleSet,
    input: WafInput,
    engine: EngineMode,
    preset: ReadonlyMap<string, string>,
    plan: Plan = planOf(rules, preset),
  ) {
    this.#rules = rules;
    this.#plan = plan;
    this.input = input;
    this.engine = engine;
    this.#tx = new Map(plan.tx);
  }

  /** Folding: runs one rule as it is (true when it and its chain matched, non-disruptive actions applied). */
  foldRule(r: CompiledRule): boolean {
    return this.#evalRule(r);
  }

  /** Folding: whether the rule's first link matches, without running any of its actions. */
  testLink(r: CompiledRule): boolean {
    const lists = r.targets.length === 0 ? NO_TARGET : this.#targetsOf(r);
    for (const targets of lists)
      for (const t of targets) if (r.op(this.#transform(t, r), this, r) !== r.negated) return true;
    return false;
  }

  /** Folding: TX as the rules left it. */
  txMap(): ReadonlyMap<string, string> {
    return this.#vars();
  }

  get(name: string): string | undefined {
    return this.#vars().get(name.toLowerCase());
  }

  setEngine(e: EngineMode): void {
    this.engine = e;
  }

  removeRules(test: (r: CompiledRule) => boolean): void {
    (this.#removed ??= []).push(test);
  }

  removeTargets(select: (r: CompiledRule) => boolean, vars: VariableRef[]): void {
    (this.#removedTargets ??= []).push({ select, vars });
  }

  setBody(body: ParsedBody): void {
    this.#body = body;
    // What depends on the body (ARGS, REQUEST_BODY, FILES, REQBODY_*) is read again; the rest keeps its entries
    // (and their transformed values and regex hits).
    for (const name of [...this.#cache.keys()]) if (!HEAD_ONLY.has(name)) this.#cache.delete(name);
    for (let slot = 0; slot < this.#namedCache.length; slot++) {
      if (BEFORE_BODY[slot] === true) continue;
      this.#namedCache[slot] = undefined;
    }
    // The body's collections are marked again (the marks only grow: a link marked before stays so, and runs).
    const done = this.#slotsDone;
    if (done !== undefined)
      for (let slot = 0; slot < done.length; slot++) if (BEFORE_BODY[slot] !== true) done[slot] = 0;
  }

  /**
   * The indexes of the rule set's RE2 patterns that match `v`, the value the current rule's operator runs on (one
   * native call for all the patterns), or null when the set cannot answer.
   */
  regexHits(v: string): readonly number[] | null {
    const set = this.#rules.regexSet;
    if (set === undefined) return null;
    const cur = this.#current;
    if (cur === undefined) return set.match(v);
    const info = (cur.info ??= this.#rules.values.get(cur.value));
    const slot = this.#currentSlot;
    let hits = info.hits[slot];
    if (hits === undefined) {
      hits = set.match(v);
      info.hits[slot] = hits;
    }
    return hits;
  }

  setCaptures(m: ArrayLike<string | undefined>): void {
    this.#pendingCapture = undefined;
    this.#txNamed = undefined;
    for (let i = 0; i < 10; i++) {
      const v = m[i];
      if (v !== undefined) this.#tx.set(DIGITS[i]!, v);
      else this.#tx.delete(DIGITS[i]!);
    }
  }

  /**
   * `capture` of a regex that matched `v`: TX:0-9 are filled when next read (most are never read: a negated
   * rule's match, a rule whose chain stops first), so the capturing exec runs only then.
   */
  captureLater(re: RuleRegex, v: string): void {
    this.#pendingCapture = { re, v };
  }

  /** The TX collection, with captures pending from the last capturing rule written in. */
  #vars(): Map<string, string> {
    const p = this.#pendingCapture;
    if (p !== undefined) {
      this.#pendingCapture = undefined;
      const m = p.re.exec(p.v);
      if (m !== null) this.setCaptures(m);
    }
    return this.#tx;
  }

  /** `%{tx.foo}`, `%{MATCHED_VAR}`, `%{rule.id}`, `%{request_headers.host}`. */
  macroValue(collection: string, key: string | undefined, rule: CompiledRule): string {
    switch (collection) {
      case 'TX':
        return this.#vars().get(key ?? '') ?? '';
      case 'IP':
      case 'GLOBAL':
      case 'SESSION':
        return this.#ip.get(`${collection}.${key}`) ?? '';
      case 'RULE':
        if (key === 'id') return String(rule.id);
        if (key === 'msg') return rule.msg?.(this, rule) ?? '';
        return '';
      case 'MATCHED_VAR':
        return this.#matchedVar.value;
      case 'MATCHED_VAR_NAME':
        return this.#matchedVar.key;
      default: {
        const e = this.collection(collection);
        if (key === undefined) return e[0]?.value ?? '';
        return e.find((x) => x.key.toLowerCase() === key)?.value ?? '';
      }
    }
  }

  #headerEntries(): Entry[] {
    const out: Entry[] = [];
    for (const [k, v] of Object.entries(this.input.headers)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) out.push({ key: k, value: x });
      else out.push({ key: k, value: v });
    }
    return out;
  }

  /** Every entry of a collection or single variable (built on first read, then cached). */
  collection(name: string): Entry[] {
    let e = this.#cache.get(name);
    if (e !== undefined) return e;
    e = this.#build(name);
    if (!isDynamic(name)) this.#cache.set(name, e);
    return e;
  }

  #build(name: string): Entry[] {
    const inp = this.input;
    const one = (value: string): Entry[] => [{ key: '', value }];
    const names = (src: Entry[]): Entry[] => src.map((x) => ({ key: x.key, value: x.key }));
    switch (name) {
      case 'ARGS_GET':
        return parseUrlEncoded(inp.query);
      case 'ARGS_POST':
        return this.#body?.args ?? [];
      case 'ARGS':
        return [...this.collection('ARGS_GET'), ...this.collection('ARGS_POST')];
      case 'ARGS_NAMES':
        return names(this.collection('ARGS'));
      case 'ARGS_GET_NAMES':
        return names(this.collection('ARGS_GET'));
      case 'ARGS_POST_NAMES':
        return names(this.collection('ARGS_POST'));
      case 'ARGS_COMBINED_SIZE': {
        let n = 0;
        for (const x of this.collection('ARGS')) n += x.key.length + x.value.length;
        return one(String(n));
      }
      case 'REQUEST_HEADERS':
        return this.#headerEntries();
      case 'REQUEST_HEADERS_NAMES':
        return names(this.collection('REQUEST_HEADERS'));
      case 'REQUEST_COOKIES':
        return parseCookies(inp.headers.cookie);
      case 'REQUEST_COOKIES_NAMES':
        return names(this.collection('REQUEST_COOKIES'));
      case 'REQUEST_URI':
      case 'REQUEST_URI_RAW':
        return one(inp.rawTarget);
      case 'REQUEST_FILENAME':
        return one(inp.path);
      case 'REQUEST_BASENAME':
        return one(inp.path.slice(inp.path.lastIndexOf('/') + 1));
      case 'REQUEST_LINE':
        return one(`${inp.method} ${inp.rawTarget} ${inp.protocol}`);
      case 'REQUEST_METHOD':
        return one(inp.method);
      case 'REQUEST_PROTOCOL':
        return one(inp.protocol);
      case 'QUERY_STRING':
        return one(inp.query);
      case 'REQUEST_BODY':
        return this.#body === undefined ? [] : one(this.#body.raw);
      case 'REQUEST_BODY_LENGTH':
        return one(String(this.#body?.raw.length ?? 0));
      case 'FILES':
        return this.#body?.files ?? [];
      case 'FILES_NAMES':
        return names(this.#body?.files ?? []);
      case 'FILES_SIZES':
        return this.#body?.fileSizes ?? [];
      case 'FILES_COMBINED_SIZE': {
        let n = 0;
        for (const x of this.#body?.fileSizes ?? []) n += Number(x.value);
        return one(String(n));
      }
      case 'MULTIPART_PART_HEADERS':
        return this.#body?.partHeaders ?? [];
      case 'MULTIPART_STRICT_ERROR': {
        // As ModSecurity: absent unless the body went through the multipart parser.
        const f = this.#body?.multipart;
        return f === undefined ? [] : one(multipartStrictError(f) ? '1' : '0');
      }
      case 'MULTIPART_CRLF_LF_LINES': {
        const f = this.#body?.multipart;
        return one(f?.crlfLine === true && f.lfLine ? '1' : '0');
      }
      case 'MULTIPART_FILE_LIMIT_EXCEEDED':
        // Files are not stored, so there is no file count limit.
        return one('0');
      case 'REQBODY_PROCESSOR':
        return this.#body === undefined || this.#body.processor === '' ? [] : one(this.#body.processor);
      case 'REQBODY_ERROR':
      case 'REQBODY_PROCESSOR_ERROR':
        return one(this.#body?.error === undefined ? '0' : '1');
      case 'REQBODY_ERROR_MSG':
      case 'REQBODY_PROCESSOR_ERROR_MSG':
        return one(this.#body?.error ?? '');
      case 'TX':
        return [...this.#vars()].map(([key, value]) => ({ key, value }));
      case 'IP':
      case 'GLOBAL':
      case 'SESSION': {
        const out: Entry[] = [];
        for (const [k, v] of this.#ip)
          if (k.startsWith(`${name}.`)) out.push({ key: k.slice(name.length + 1), value: v });
        return out;
      }
      case 'MATCHED_VAR':
        return this.#matchedVar.key === '' ? [] : one(this.#matchedVar.value);
      case 'MATCHED_VAR_NAME':
        return this.#matchedVar.key === '' ? [] : one(this.#matchedVar.key);
      case 'MATCHED_VARS':
        return this.#matchedVars;
      case 'MATCHED_VARS_NAMES':
        return this.#matchedVars.map((x) => ({ key: x.key, value: x.key }));
      case 'REMOTE_ADDR':
        return one(inp.remoteAddr);
      case 'UNIQUE_ID':
        return one('');
      case 'DURATION':
        return one('0');
      case 'TIME_EPOCH':
        return one(String(Math.floor(Date.now() / 1000)));
      default: {
        const flag = MULTIPART_FLAGS[name];
        if (flag !== undefined) return one(this.#body?.multipart?.[flag] === true ? '1' : '0');
        return [];
      }
    }
  }

  /** The rule's targets: lists of entries (a collection's own list when nothing is filtered out). */
  #targetsOf(rule: CompiledRule): readonly (readonly Entry[])[] {
    // Allocated when a target has entries (for many rules, on a clean request, none has).
    let out: (readonly Entry[])[] | undefined;
    let extra: VariableRef[] | undefined;
    if (this.#removedTargets !== undefined) {
      for (const rt of this.#removedTargets)
        if (rule.id !== 0 && rt.select(rule)) (extra ??= []).push(...rt.vars);
    }
    const targets = rule.targets;
    const plain = extra === undefined && rule.exclusions.length === 0;
    for (let ti = 0; ti < targets.length; ti++) {
      const t = targets[ti]!;
      if (t.txKey !== undefined && plain) {
        // The common CRS read (TX:paranoia_level, &TX:x): a map lookup, no collection built.
        const v = this.#vars().get(t.txKey);
        if (t.count) (out ??= []).push(v === undefined ? TX_COUNT_0 : TX_COUNT_1);
        else if (v !== undefined) (out ??= []).push([{ key: t.txName, value: v }]);
        continue;
      }
      if (t.name === 'TX' && t.keyRegex !== undefined && plain && !t.count) {
        // `TX:/^HEADER_NAME_/` right after setvars changed TX: the matching variables, without building TX whole.
        const re = t.keyRegex;
        let sel: Entry[] | undefined;
        for (const [key, value] of this.#vars())
          if (re.test(key)) (sel ??= []).push({ key: `TX:${key}`, value });
        if (sel !== undefined) (out ??= []).push(sel);
        continue;
      }
      const all = this.#named(t);
      if (all.length === 0 && !t.count) continue;
      let sel: readonly Named[] = all;
      const key = t.key;
      if (key !== undefined) sel = withKey(all, key);
      else if (t.keyRegex !== undefined) sel = all.filter((x) => t.keyRegex!.test(x.raw));
      if (extra !== undefined || t.excludable)
        sel = sel.filter((x) => !this.#excluded(rule, t.name, x, extra));
      if (t.count) {
        (out ??= []).push([{ key: `&${t.name}`, value: String(sel.length) }]);
        continue;
      }
      if (sel.length > 0) (out ??= []).push(sel);
    }
    return out ?? NO_LISTS;
  }

  /**
   * A collection's entries as targets (`ARGS:name` keys, lowercased raw keys for selectors and exclusions), built
   * once per request for the collections that do not change while rules run.
   */
  #named(t: Target): readonly Named[] {
    let n = t.slot < 0 ? undefined : this.#namedCache[t.slot];
    if (n !== undefined) return n;
    if (t.name === 'TX') {
      // Read whole (`TX:/^MSC_/`, `TX:/.../`) by several rules: kept until the next setvar or capture.
      this.#vars();
      this.#txNamed ??= this.#toNamed('TX', this.collection('TX'));
      return this.#txNamed;
    }
    n = this.#toNamed(t.name, this.collection(t.name));
    if (t.slot >= 0) this.#namedCache[t.slot] = n;
    return n;
  }

  #toNamed(name: string, all: readonly Entry[]): readonly Named[] {
    if (all.length === 0) return NO_NAMED;
    return all.map((x) => new Named(name, x));
  }

  #excluded(rule: CompiledRule, name: string, x: Named, extra: VariableRef[] | undefined): boolean {
    const key = x.lkey;
    for (const e of rule.exclusions) {
      if (e.ref.name !== name) continue;
      if (e.ref.key === undefined && e.keyRegex === undefined) return true;
      if (e.ref.key !== undefined && e.ref.key === key) return true;
      if (e.keyRegex?.test(x.raw)) return true;
    }
    if (extra !== undefined) {
      for (const e of extra) {
        if (e.name !== name) continue;
        if (e.key === undefined && e.keyRegex === undefined) return true;
        if (e.key === key) return true;
        if (e.keyRegex !== undefined && new RegExp(e.keyRegex, 'i').test(x.raw)) return true;
      }
    }
    return false;
  }

  #runActions(rule: CompiledRule): void {
    for (const sv of rule.setvars) {
      const name = sv.name(this, rule).toLowerCase();
      const map = sv.collection === 'TX' ? this.#vars() : this.#ip;
      const k = sv.collection === 'TX' ? name : `${sv.collection}.${name}`;
      if (sv.collection === 'TX') this.#txNamed = undefined;
      if (sv.op === 'delete') {
        map.delete(k);
        continue;
      }
      const v = sv.value(this, rule);
      if (sv.op === 'set') map.set(k, v);
      else {
        const cur = num(map.get(k) ?? '0');
        map.set(k, String(sv.op === 'add' ? cur + num(v) : cur - num(v)));
      }
    }
    for (const c of rule.ctls) c(this);
  }

  /**
   * `t`'s value through the rule's transformations. CRS runs the same chains on the same values many times: a
   * value keeps its transformed forms (and their regex hits, see regexHits) for the request.
   */
  #transform(t: Entry, rule: CompiledRule): string {
    const cid = rule.chainId;
    const named = t instanceof Named ? t : undefined;
    let v = t.value;
    if (cid >= 0) {
      const memo = named === undefined ? undefined : (named.transformed ??= []);
      const done = memo?.[cid];
      if (done !== undefined) v = done;
      else if (named === undefined) v = rule.transformAll(v);
      else {
        // Most chains leave a clean value as it is: that much is remembered across requests (no string kept).
        const info = (named.info ??= this.#rules.values.get(v));
        if (info.unchanged[cid] !== true) {
          v = rule.transformAll(v);
          if (v === named.value) info.unchanged[cid] = true;
        }
        memo![cid] = v;
      }
    }
    this.#current = named;
    this.#currentSlot = v === t.value ? 0 : cid + 1;
    return v;
  }

  /**
   * Marks the values of these collections (once per request, and again for the body's): per value and collection
   * the local links it matches (CompiledRule.localIndex), known across requests for short values (ValueInfo.links),
   * so a request that repeats known values costs one lookup per value instead of one operator per rule and value.
   * A local link no value marked cannot match; selectors and exclusions apply when a marked link runs.
   */
  #markSlots(slots: readonly number[]): void {
    const done = (this.#slotsDone ??= []);
    for (let i = 0; i < slots.length; i++) if (done[slots[i]!] !== 1) this.#markSlot(slots[i]!);
  }

  #markSlot(slot: number): void {
    this.#slotsDone![slot] = 1;
    const marks = (this.#marks ??= new Array<number>(this.#rules.localCount).fill(0));
    const all = this.#named(this.#rules.slotTargets[slot]!);
    const memo = this.#rules.values;
    for (let i = 0; i < all.length; i++) {
      const e = all[i]!;
      const info = (e.info ??= memo.get(e.value));
      let list = info.links[slot];
      if (list === undefined) {
        list = this.#linksMatching(e, this.#rules.slotLinks[slot]!);
        info.links[slot] = list;
      }
      for (let k = 0; k < list.length; k++) marks[list[k]!] = 1;
    }
  }

  /** The local links (of one collection) whose operator matches `e` through their chain. */
  #linksMatching(e: Named, links: readonly CompiledRule[]): readonly number[] {
    let out: number[] | undefined;
    const info = e.info!;
    for (let i = 0; i < links.length; i++) {
      const l = links[i]!;
      let m: boolean;
      if (l.setIndex >= 0) {
        const slot = l.chainId + 1;
        let hits = info.hits[slot];
        if (hits === undefined) {
          hits = this.regexHits(this.#transform(e, l));
          this.#current = undefined;
          info.hits[slot] = hits;
        }
        // The set could not answer: the link runs its own regex.
        m = hits === null || hits.includes(l.setIndex);
      } else {
        let r = info.ops[l.pureIndex];
        if (r === undefined) {
          r = l.op(this.#transform(e, l), this, l);
          this.#current = undefined;
          info.ops[l.pureIndex] = r;
        }
        m = r !== l.negated;
      }
      if (m) (out ??= []).push(l.localIndex);
    }
    return out ?? NO_LINKS;
  }

  /** One link: true when any target matched; its non-disruptive actions run for each matching target. */
  #evalLink(rule: CompiledRule): boolean {
    let matched = false;
    const lists = rule.targets.length === 0 ? NO_TARGET : this.#targetsOf(rule);
    for (let l = 0; l < lists.length; l++) {
      const targets = lists[l]!;
      for (let k = 0; k < targets.length; k++) {
        const t = targets[k]!;
        let hit: boolean;
        const pi = rule.pureIndex;
        if (pi >= 0 && t instanceof Named) {
          // A pure operator's answer on a value seen before: no transformation, no operator.
          const info = (t.info ??= this.#rules.values.get(t.value));
          const known = info.ops[pi];
          if (known !== undefined && known === rule.negated) continue;
          const v = this.#transform(t, rule);
          hit = known ?? rule.op(v, this, rule);
          info.ops[pi] = hit;
        } else hit = rule.op(this.#transform(t, rule), this, rule);
        this.#current = undefined;
        if (hit === rule.negated) continue;
        const v = this.#transform(t, rule);
        this.#current = undefined;
        matched = true;
        this.#matchedVar = { key: t.key, value: v };
        this.#matchedVars.push(this.#matchedVar);
        // Every link's own non-disruptive actions, per matching target, at once (ModSecurity v2): a chained rule
        // reads the TX values its starter set.
        this.#runActions(rule);
      }
    }
    return matched;
  }

  /** A rule and its chain: true when every link matched (the starter's disruptive and flow actions apply then). */
  #evalRule(rule: CompiledRule): boolean {
    if (this.#matchedVars.length > 0) this.#matchedVars = [];
    if (!this.#evalLink(rule)) return false;
    for (let l: CompiledRule | undefined = rule.chain; l !== undefined; l = l.chain) {
      if (!this.#evalLink(l)) return false;
    }
    return true;
  }

  #isRemoved(rule: CompiledRule): boolean {
    if (this.#removed === undefined) return false;
    for (const t of this.#removed) if (t(rule)) return true;
    return false;
  }

  /** Runs one phase's rules; stops at an interruption or an allow. */
  runPhase(phase: 1 | 2): void {
    if (this.engine === 'Off' || this.interruption !== undefined || this.#allowed) return;
    const plan = this.#plan;
    const list = plan.phases[phase]!;
    // The values of every collection the phase's local rules read are marked first; then a local rule no value
    // may match is passed over by its index alone, without touching the rule.
    this.#markSlots(plan.localSlots[phase]!);
    const marks = this.#marks;
    const localAt = plan.localAt[phase]!;
    for (let i = 0; i < list.length; i++) {
      const li = localAt[i]!;
      if (li >= 0 && marks![li] !== 1) continue;
      const r = list[i]!;
      if (!('id' in r)) continue;
      if (this.#isRemoved(r) || !this.#evalRule(r)) continue;
      if (r.log && r.msg !== undefined) {
        const mv = this.#matchedVar;
        this.matched.push({
          id: r.id,
          msg: r.msg(this, r),
          variable: mv.key,
          value: mv.value,
          severity: r.severity,
          tags: r.tags,
        });
      }
      const d = r.disruptive;
      if (d === 'deny' || d === 'drop') {
        if (this.engine === 'On') {
          this.interruption = { status: r.status, ruleId: r.id };
          return;
        }
        // DetectionOnly: record what would have been refused, and go on.
        this.wouldInterrupt ??= { status: r.status, ruleId: r.id };
      } else if (d === 'allow') {
        this.#allowed = true;
        return;
      }
      if (r.skipTo >= 0) i = r.skipTo;
      else if (r.skip > 0) {
        let n = r.skip;
        while (n > 0 && i + 1 < list.length) {
          i++;
          if ('id' in list[i]!) n--;
        }
      }
      // A ctl:ruleEngine=Off in this rule stops the rest.
      if ((this.engine as EngineMode) === 'Off') return;
    }
  }

  /** DetectionOnly: the first interruption the rules asked for. */
  wouldInterrupt: Interruption | undefined;
}
