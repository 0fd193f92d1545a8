/**
 * The rule engine: a parsed rule set compiled once into closures (operators with their regexes and phrase
 * matchers built, transformation chains resolved, macros split, skipAfter targets resolved to indexes), then
 * run per request over a Transaction that builds each collection on first read.
 *
 * Semantics follow ModSecurity v2 where CRS depends on them: a rule's non-disruptive actions (setvar, ctl) run
 * for each matching target; a chain matches when every link matches, and its first link's actions run once
 * then; `block` takes the disruptive action of SecDefaultAction (pass under CRS's anomaly scoring); deny, drop
 * and a 4xx/5xx status interrupt (in mode On); allow ends the phase; skipAfter jumps past a marker.
 */
import { BlockList, isIP } from 'node:net';
import { detectSqli } from './detect-sqli.js';
import { detectXss } from './detect-xss.js';
import { PhraseMatcher } from './pm.js';
import { compileRegex, type RuleRegex } from './regex.js';
import { type Entry, type ParsedBody, parseCookies, parseUrlEncoded, type WafInput } from './request.js';
import { EMPTY_VARIABLES } from './seclang/catalog.js';
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
import { TRANSFORMS, type Transform } from './transforms.js';

export type EngineMode = 'On' | 'DetectionOnly' | 'Off';

// ---------- macros ----------

type Macro = (tx: Transaction, rule: CompiledRule) => string;

function compileMacro(s: string): Macro {
  if (s.indexOf('%{') < 0) return () => s;
  const parts: (string | string[])[] = [];
  let last = 0;
  for (const m of s.matchAll(/%\{([^}]+)\}/g)) {
    if (m.index > last) parts.push(s.slice(last, m.index));
    const ref = m[1]!;
    const dot = ref.indexOf('.');
    parts.push(
      dot < 0 ? [ref.toUpperCase()] : [ref.slice(0, dot).toUpperCase(), ref.slice(dot + 1).toLowerCase()],
    );
    last = m.index + m[0].length;
  }
  if (last < s.length) parts.push(s.slice(last));
  return (tx, rule) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : tx.macroValue(p[0]!, p[1], rule);
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

interface OperatorBuild {
  readonly op: Operator;
  readonly engine?: 're2' | 'v8';
}

function compileOperator(o: OperatorRef, capture: boolean, trusted: boolean): OperatorBuild | string {
  const arg = o.arg;
  const macro = arg.indexOf('%{') >= 0 ? compileMacro(arg) : undefined;
  const argOf = macro === undefined ? () => arg : (tx: Transaction, r: CompiledRule) => macro(tx, r);
  switch (o.name) {
    case 'rx': {
      const c = compileRegex(arg, trusted);
      if (!c.ok) return `@rx: ${c.error}`;
      const re: RuleRegex = c.re;
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
    case 'pm':
    case 'pmf':
    case 'pmFromFile': {
      const phrases = o.data ?? arg.split(/\s+/).filter((x) => x !== '');
      const pm = new PhraseMatcher(phrases);
      return {
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
      return {
        op: (v) => {
          const fam = isIP(v);
          return fam !== 0 && list.check(v, fam === 4 ? 'ipv4' : 'ipv6');
        },
      };
    }
    case 'validateByteRange': {
      const ok = byteRanges(arg);
      return {
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
        op: (v) => {
          for (let i = v.indexOf('%'); i >= 0; i = v.indexOf('%', i + 1)) {
            if (!/^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) return true;
          }
          return false;
        },
      };
    case 'validateUtf8Encoding':
      return { op: (v) => !validUtf8(v) };
    case 'detectSQLi':
      return {
        op: (v, tx) => {
          const r = detectSqli(v);
          if (r === undefined) return false;
          if (capture) tx.setCaptures([r.fingerprint]);
          return true;
        },
      };
    case 'detectXSS':
      return { op: (v) => detectXss(v) };
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

interface SetVar {
  readonly collection: string;
  readonly name: Macro;
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
  const name = compileMacro(target.slice(dot + 1));
  if (del) return { collection, name, op: 'delete', value: () => '' };
  if (eq < 0) return { collection, name, op: 'set', value: () => '1' };
  let v = t.slice(eq + 1);
  let op: SetVar['op'] = 'set';
  if (v[0] === '+') {
    op = 'add';
    v = v.slice(1);
  } else if (v[0] === '-') {
    op = 'sub';
    v = v.slice(1);
  }
  return { collection, name, op, value: compileMacro(v) };
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
  readonly keyRegex: RegExp | undefined;
}

export interface CompiledRule {
  readonly id: number;
  readonly phase: number;
  readonly file: string;
  readonly line: number;
  readonly tags: readonly string[];
  readonly msg: Macro | undefined;
  readonly targets: readonly Target[];
  readonly exclusions: readonly Target[];
  readonly transforms: readonly Transform[];
  readonly op: Operator;
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
}

function keyTest(ref: VariableRef): RegExp | undefined {
  if (ref.keyRegex === undefined) return undefined;
  try {
    return new RegExp(ref.keyRegex, 'i');
  } catch {
    return /$^/;
  }
}

function compileRule(ast: RuleAst, trusted: boolean, problems: SourceIssue[]): CompiledRule | undefined {
  const at = (message: string) => problems.push({ file: ast.file, line: ast.line, message });
  const all: ActionRef[] = [...ast.defaults, ...ast.actions];
  let transforms: Transform[] = [];
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
  const nDefaults = ast.defaults.length;
  all.forEach((a, i) => {
    const fromDefault = i < nDefaults;
    switch (a.name) {
      case 't':
        if (a.value === 'none') transforms = [];
        else if (a.value !== undefined && TRANSFORMS[a.value] !== undefined)
          transforms.push(TRANSFORMS[a.value]!);
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
        if (!fromDefault && a.value !== undefined) msg = compileMacro(a.value);
        break;
      case 'setvar': {
        if (fromDefault) break;
        const sv = compileSetVar(a.value ?? '');
        if (typeof sv === 'string') at(sv);
        else setvars.push(sv);
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
  const built = compileOperator(ast.operator, capture, trusted);
  if (typeof built === 'string') {
    at(built);
    return undefined;
  }
  let chain: CompiledRule | undefined;
  if (ast.chain !== undefined) {
    chain = compileRule({ ...ast.chain, defaults: [] }, trusted, problems);
    if (chain === undefined) return undefined;
  }
  const targets: Target[] = [];
  const exclusions: Target[] = [];
  for (const ref of ast.variables) (ref.exclude ? exclusions : targets).push({ ref, keyRegex: keyTest(ref) });
  return {
    id: ast.id,
    phase: ast.phase,
    file: ast.file,
    line: ast.line,
    tags: ast.tags,
    msg,
    targets,
    exclusions,
    transforms,
    op: built.op,
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
  };
}

type PhaseEntry = CompiledRule | { readonly marker: string };

export interface CompiledRuleSet {
  /** Phase 1 and 2 lists (markers included, for skipAfter). */
  readonly phases: readonly (readonly PhaseEntry[])[];
  readonly ruleCount: number;
  /** Patterns that run on V8 because RE2 cannot run them. */
  readonly v8Patterns: readonly string[];
  readonly problems: readonly SourceIssue[];
  readonly engine: EngineMode | undefined;
}

/** Compiles phases 1 and 2 (response phases are parsed and validated, never run). */
export function compileRuleSet(set: RuleSet, trustedFiles: (file: string) => boolean): CompiledRuleSet {
  const problems: SourceIssue[] = [];
  const phases: PhaseEntry[][] = [[], [], []];
  const v8Patterns: string[] = [];
  let ruleCount = 0;
  for (const it of set.items) {
    if (it.kind === 'marker') {
      // A marker belongs to every phase: skipAfter jumps to it within the rule's own phase.
      phases[1]!.push({ marker: it.name });
      phases[2]!.push({ marker: it.name });
      continue;
    }
    const r = compileRule(it.rule, trustedFiles(it.rule.file), problems);
    if (r === undefined) continue;
    for (let l: RuleAst | undefined = it.rule; l !== undefined; l = l.chain) {
      if (l.operator.name === 'rx') {
        const c = compileRegex(l.operator.arg, true);
        if (c.ok && c.engine === 'v8') v8Patterns.push(`${l.file}:${l.line}`);
      }
    }
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
  return { phases, ruleCount, v8Patterns, problems, engine: set.engine };
}

// ---------- per request ----------

export interface MatchedRule {
  readonly id: number;
  readonly msg: string;
  readonly variable: string;
}

export interface Interruption {
  readonly status: number;
  readonly ruleId: number;
}

export class Transaction {
  readonly input: WafInput;
  readonly #rules: CompiledRuleSet;
  readonly #tx = new Map<string, string>();
  readonly #ip = new Map<string, string>();
  readonly #cache = new Map<string, Entry[]>();
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
  ) {
    this.#rules = rules;
    this.input = input;
    this.engine = engine;
    for (const [k, v] of preset) this.#tx.set(k, v);
  }

  get(name: string): string | undefined {
    return this.#tx.get(name.toLowerCase());
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
    for (const k of ['ARGS', 'ARGS_NAMES', 'ARGS_POST', 'ARGS_POST_NAMES', 'ARGS_COMBINED_SIZE'])
      this.#cache.delete(k);
  }

  setCaptures(m: ArrayLike<string | undefined>): void {
    for (let i = 0; i < 10; i++) {
      const v = m[i];
      if (v !== undefined) this.#tx.set(String(i), v);
      else this.#tx.delete(String(i));
    }
  }

  /** `%{tx.foo}`, `%{MATCHED_VAR}`, `%{rule.id}`, `%{request_headers.host}`. */
  macroValue(collection: string, key: string | undefined, rule: CompiledRule): string {
    switch (collection) {
      case 'TX':
        return this.#tx.get(key ?? '') ?? '';
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
    if (name !== 'TX' && name !== 'IP' && !name.startsWith('MATCHED')) this.#cache.set(name, e);
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
      case 'MULTIPART_STRICT_ERROR':
      case 'MULTIPART_UNMATCHED_BOUNDARY':
        return one(this.#body?.processor === 'MULTIPART' && this.#body.error !== undefined ? '1' : '0');
      case 'REQBODY_PROCESSOR':
        return this.#body === undefined || this.#body.processor === '' ? [] : one(this.#body.processor);
      case 'REQBODY_ERROR':
        return one(this.#body?.error === undefined ? '0' : '1');
      case 'REQBODY_ERROR_MSG':
        return one(this.#body?.error ?? '');
      case 'TX':
        return [...this.#tx].map(([key, value]) => ({ key, value }));
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
      default:
        if (name in EMPTY_VARIABLES) return [];
        return [];
    }
  }

  #targetsOf(rule: CompiledRule): Entry[] {
    const out: Entry[] = [];
    let extra: VariableRef[] | undefined;
    if (this.#removedTargets !== undefined) {
      for (const rt of this.#removedTargets)
        if (rule.id !== 0 && rt.select(rule)) (extra ??= []).push(...rt.vars);
    }
    for (const t of rule.targets) {
      const ref = t.ref;
      if (ref.name === 'TX' && ref.key !== undefined && extra === undefined && rule.exclusions.length === 0) {
        // The common CRS read (TX:paranoia_level, &TX:x): a map lookup, no collection built.
        const v = this.#tx.get(ref.key);
        if (ref.count) out.push({ key: '&TX', value: v === undefined ? '0' : '1' });
        else if (v !== undefined) out.push({ key: `TX:${ref.key}`, value: v });
        continue;
      }
      const all = this.collection(ref.name);
      let sel: Entry[] = all;
      if (ref.key !== undefined) sel = all.filter((x) => x.key.toLowerCase() === ref.key);
      else if (t.keyRegex !== undefined) sel = all.filter((x) => t.keyRegex!.test(x.key));
      if (rule.exclusions.length > 0 || extra !== undefined)
        sel = sel.filter((x) => !this.#excluded(rule, ref.name, x, extra));
      if (ref.count) {
        out.push({ key: `&${ref.name}`, value: String(sel.length) });
        continue;
      }
      const prefix = ref.name;
      for (const x of sel) out.push({ key: x.key === '' ? prefix : `${prefix}:${x.key}`, value: x.value });
    }
    return out;
  }

  #excluded(rule: CompiledRule, name: string, x: Entry, extra: VariableRef[] | undefined): boolean {
    const key = x.key.toLowerCase();
    for (const e of rule.exclusions) {
      if (e.ref.name !== name) continue;
      if (e.ref.key === undefined && e.keyRegex === undefined) return true;
      if (e.ref.key !== undefined && e.ref.key === key) return true;
      if (e.keyRegex?.test(x.key)) return true;
    }
    if (extra !== undefined) {
      for (const e of extra) {
        if (e.name !== name) continue;
        if (e.key === undefined && e.keyRegex === undefined) return true;
        if (e.key === key) return true;
        if (e.keyRegex !== undefined && new RegExp(e.keyRegex, 'i').test(x.key)) return true;
      }
    }
    return false;
  }

  #runActions(rule: CompiledRule): void {
    for (const sv of rule.setvars) {
      const name = sv.name(this, rule).toLowerCase();
      const map = sv.collection === 'TX' ? this.#tx : this.#ip;
      const k = sv.collection === 'TX' ? name : `${sv.collection}.${name}`;
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

  /** One link: true when any target matched. Non-disruptive actions run per match on the last link. */
  #evalLink(rule: CompiledRule, last: boolean): boolean {
    let matched = false;
    const targets = rule.targets.length === 0 ? [{ key: '', value: '' }] : this.#targetsOf(rule);
    const transforms = rule.transforms;
    for (const t of targets) {
      let v = t.value;
      for (let i = 0; i < transforms.length; i++) v = transforms[i]!(v);
      if (rule.op(v, this, rule) === rule.negated) continue;
      matched = true;
      this.#matchedVar = { key: t.key, value: v };
      this.#matchedVars.push(this.#matchedVar);
      if (last && rule.id !== 0) this.#runActions(rule);
      else if (last) this.#runActions(rule);
    }
    return matched;
  }

  #evalRule(rule: CompiledRule): boolean {
    this.#matchedVars = [];
    if (!this.#evalLink(rule, rule.chain === undefined)) return false;
    if (rule.chain === undefined) return true;
    for (let l: CompiledRule | undefined = rule.chain; l !== undefined; l = l.chain) {
      if (!this.#evalLink(l, l.chain === undefined)) return false;
    }
    this.#runActions(rule);
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
    const list = this.#rules.phases[phase]!;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (!('id' in r)) continue;
      if (this.#isRemoved(r) || !this.#evalRule(r)) continue;
      if (r.log && r.msg !== undefined) {
        this.matched.push({ id: r.id, msg: r.msg(this, r), variable: this.#matchedVar.key });
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
