/**
 * Rules compiled once per config into closures: each condition a rule sets is one predicate, the cheap ones
 * (method, path) first and the CEL condition last, so a rule that fails on its method never evaluates CEL.
 */
import { claimAt } from '../auth/identity.js';
import { type CelProgram, compileCel } from './cel.js';
import type { RequestFacts } from './facts.js';
import type { AuthzRuleConfig } from './schema.js';

/** true: the rule matches; false: it does not; an Error: its CEL condition failed to evaluate. */
export type RuleTest = (f: RequestFacts) => boolean | Error;

export interface CompiledRule {
  readonly name: string;
  readonly action: 'allow' | 'deny';
  readonly test: RuleTest;
}

type Pred = (f: RequestFacts) => boolean;

export function compileRule(rule: AuthzRuleConfig, index: number): CompiledRule {
  const preds: Pred[] = [];
  if (rule.methods !== undefined) {
    const methods = new Set(rule.methods);
    preds.push((f) => methods.has(f.ctx.method));
  }
  if (rule.paths !== undefined) {
    const tests = rule.paths.map(pathTest);
    preds.push((f) => {
      const p = f.ctx.path;
      for (let i = 0; i < tests.length; i++) if (tests[i]!(p)) return true;
      return false;
    });
  }
  if (rule.headers !== undefined) {
    for (const h of rule.headers) {
      const name = h.name.toLowerCase();
      const first = (f: RequestFacts) => {
        const v = f.ctx.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      if (h.present !== undefined) {
        const want = h.present;
        preds.push((f) => (first(f) !== undefined) === want);
      } else if (h.exact !== undefined) {
        const want = h.exact;
        preds.push((f) => first(f) === want);
      } else {
        const want = h.prefix!;
        preds.push((f) => first(f)?.startsWith(want) === true);
      }
    }
  }
  if (rule.consumers !== undefined) {
    const names = new Set(rule.consumers);
    preds.push((f) => f.ctx.consumer !== undefined && names.has(f.ctx.consumer.name));
  }
  if (rule.groups !== undefined) {
    const groups = new Set(rule.groups);
    preds.push((f) => f.ctx.consumer?.groups.some((g) => groups.has(g)) === true);
  }
  if (rule.claims !== undefined) {
    for (const [claim, expected] of Object.entries(rule.claims)) {
      const path = claim.split('.');
      const wanted = new Set((Array.isArray(expected) ? expected : [expected]).map(String));
      const is = (v: unknown) =>
        (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && wanted.has(String(v));
      preds.push((f) => {
        const claims = f.ctx.claims;
        if (claims === undefined) return false;
        const v = claimAt(claims, path);
        return Array.isArray(v) ? v.some(is) : is(v);
      });
    }
  }
  if (rule.scopes !== undefined) {
    const needed = rule.scopes;
    preds.push((f) => {
      const granted = f.scopeList();
      return needed.every((s) => granted.includes(s));
    });
  }
  if (rule.clients !== undefined) {
    const tests = rule.clients.map((c) => globTest(c, /[/.]/));
    preds.push((f) => {
      const cert = f.ctx.clientCert;
      if (cert === undefined) return false;
      const match = (n: string) => tests.some((t) => t(n));
      return cert.uris.some(match) || cert.dns.some(match);
    });
  }
  if (rule.authenticated !== undefined) {
    const want = rule.authenticated;
    preds.push((f) => (f.ctx.consumer !== undefined || f.ctx.claims !== undefined) === want);
  }
  const cel: CelProgram | undefined = rule.when === undefined ? undefined : compileCel(rule.when);
  const name = rule.name ?? `rules[${index}]`;
  const test: RuleTest = function ruleTest(f) {
    for (let i = 0; i < preds.length; i++) if (!preds[i]!(f)) return false;
    return cel === undefined ? true : cel(f);
  };
  return { name, action: rule.action, test };
}

function pathTest(p: { exact: string } | { prefix: string } | { glob: string }): (path: string) => boolean {
  if ('exact' in p) {
    const want = p.exact;
    return (path) => path === want;
  }
  if ('prefix' in p) {
    const base = p.prefix.endsWith('/') ? p.prefix.slice(0, -1) : p.prefix;
    if (base === '') return () => true;
    const withSlash = `${base}/`;
    return (path) => path === base || path.startsWith(withSlash);
  }
  return globTest(p.glob, /\//);
}

/**
 * A glob as a predicate: `**` any run of characters, `*` any run without a separator. The regular expression is
 * built from escaped literals and these two classes only, compiled once.
 */
export function globTest(glob: string, separator: RegExp): (s: string) => boolean {
  if (!glob.includes('*')) return (s) => s === glob;
  const sep = separator.source.replace(/^\[|\]$/g, '');
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += `[^${sep}]*`;
    } else re += ch.replace(/[\\^$.|?+()[\]{}/-]/g, '\\$&');
  }
  const rx = new RegExp(`${re}$`);
  return (s) => rx.test(s);
}
