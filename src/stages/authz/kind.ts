/**
 * The `authz` policy kind. Evaluation order, exactly: (1) deny rules in listed order, the first that matches
 * refuses; (2) allow rules in listed order, the first that matches lets the request on; (3) `default` (deny
 * unless set). A deny rule whose CEL condition fails to evaluate counts as matching (refuses); an allow rule
 * whose condition fails counts as not matching. Both fail closed.
 */
import type { LocalReply, RequestStage, StageContext } from '../../proxy/stage.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';
import { RequestFacts } from './facts.js';
import { type CompiledRule, compileRule } from './rules.js';
import { type AuthzConfig, authzSchema } from './schema.js';

export const authzPolicy: PolicyKind<AuthzConfig> = {
  type: 'authz',
  phase: PolicyPhase.authz,
  schema: authzSchema,
  validate(cfg, ctx) {
    cfg.rules.forEach((r, i) => {
      r.consumers?.forEach((c, j) => {
        if (!ctx.consumers.has(c)) ctx.issue(['rules', i, 'consumers', j], `unknown consumer "${c}"`);
      });
    });
  },
  compile(cfg, ctx) {
    return {
      request: authzStage(ctx.name, cfg),
    };
  },
};

export function authzStage(policy: string, cfg: AuthzConfig): RequestStage {
  const rules = cfg.rules.map(compileRule);
  const deny = rules.filter((r) => r.action === 'deny');
  const allow = rules.filter((r) => r.action === 'allow');
  const defaultAllow = cfg.default === 'allow';
  const denied = (rule: CompiledRule | undefined, why?: string): LocalReply => ({
    kind: 'error',
    code: 'authz_denied',
    detail:
      rule === undefined
        ? `policy "${policy}": no rule allows this request`
        : `policy "${policy}": denied by rule "${rule.name}"${why === undefined ? '' : ` (${why})`}`,
  });
  const noMatch = defaultAllow ? undefined : denied(undefined);
  return {
    name: `authz:${policy}`,
    onRequest(ctx: StageContext) {
      const f = new RequestFacts(ctx);
      for (let i = 0; i < deny.length; i++) {
        const r = deny[i]!;
        const m = r.test(f);
        if (m === true) return denied(r);
        if (m !== false) return denied(r, 'its condition could not be evaluated');
      }
      for (let i = 0; i < allow.length; i++) {
        if (allow[i]!.test(f) === true) return undefined;
      }
      return noMatch;
    },
  };
}
