/**
 * `waf`: runs the OWASP Core Rule Set (as Debian's modsecurity-crs installs it, or any CRS folder) and the user's
 * own SecLang rules on each request: phase 1 on the headers, phase 2 on the body (urlencoded, JSON, multipart, up
 * to `maxBodyBytes`). CRS's anomaly scoring decides; `mode: block` answers 403 `waf_blocked`, `mode: detect`
 * records and lets the request on. The rules are parsed and compiled once per config (and reused across reloads
 * while the policy's rule fields do not change). Matched rule ids go to the `trellis:waf` diagnostics channel and
 * the access log's `waf` field (with the anomaly score and the blocking rule), never the matched data.
 */
import { channel } from 'node:diagnostics_channel';
import { resolve } from 'node:path';
import { z } from 'zod';
import { byteSize } from '../../config/primitives.js';
import type { LocalReply, StageContext, StageResult, WafSummary } from '../../proxy/stage.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';
import { AuditSink, auditLine } from './audit.js';
import { type CompiledRuleSet, compileRuleSet, type EngineMode, planOf, Transaction } from './engine.js';
import { parseBody, type WafInput } from './request.js';
import type { SourceIssue } from './seclang/lexer.js';
import { emptyRuleSet, parseFile, parseText, type RuleSet } from './seclang/parse.js';

export const CRS_PATH = '/usr/share/modsecurity-crs/rules';

const schema = z
  .strictObject({
    rules: z
      .string()
      .default('crs')
      .describe(
        `\`crs\`: the OWASP Core Rule Set at \`crsPath\`; \`none\`: only \`extraRules\`/\`ruleFiles\`; or a path to a CRS rules folder (CRS 3 or 4).`,
      ),
    crsPath: z.string().default(CRS_PATH).describe('Where `rules: crs` reads the rule files from.'),
    paranoiaLevel: z
      .number()
      .int()
      .min(1)
      .max(4)
      .default(1)
      .describe('CRS paranoia level, 1-4: higher catches more and blocks more ordinary traffic.'),
    inboundThreshold: z
      .number()
      .int()
      .min(1)
      .default(5)
      .describe('CRS inbound anomaly score at which a request is blocked (a critical rule scores 5).'),
    mode: z
      .enum(['block', 'detect'])
      .default('block')
      .describe(
        '`block`: refuse with 403 `waf_blocked`; `detect`: record the matched rules and let the request on.',
      ),
    allowedMethods: z
      .array(z.string().regex(/^[A-Z]+$/))
      .optional()
      .describe("Methods CRS lets through (rule 911100). Absent: CRS's default, GET HEAD POST OPTIONS."),
    maxBodyBytes: byteSize
      .default(128 * 1024)
      .describe('Request body bytes inspected (phase 2); a longer body is handled as `onBodyLimit` says.'),
    onBodyLimit: z
      .enum(['inspect-partial', 'reject'])
      .default('inspect-partial')
      .describe(
        'A body over `maxBodyBytes`: inspect its first bytes and let the rest through, or refuse it (403).',
      ),
    extraRules: z
      .array(z.string())
      .default([])
      .describe(
        'SecLang text run after the rule set: your own rules and exclusions (SecRuleRemoveById, ...).',
      ),
    ruleFiles: z.array(z.string()).default([]).describe('SecLang files loaded after `extraRules`.'),
    removeRules: z
      .array(z.union([z.number().int().positive(), z.string().regex(/^\d+(-\d+)?$/)]))
      .default([])
      .describe('Rule ids or ranges (`942100`, `"920000-920999"`) to remove: the usual false-positive fix.'),
    bodyChecks: z
      .boolean()
      .optional()
      .describe(
        "Refuse (400 `waf_body_invalid`) a body the WAF cannot parse (invalid JSON, malformed multipart) and a multipart body failing ModSecurity's strict checks: rules 200002-200004 of ModSecurity's recommended base configuration. Default: on with a CRS rule set, off with `rules: none`.",
      ),
    auditLog: z
      .strictObject({
        output: z
          .string()
          .min(1)
          .describe('`stdout`, or a file path (appended to; relative to the config file).'),
        events: z
          .enum(['blocked', 'matched'])
          .default('blocked')
          .describe(
            '`blocked`: requests refused (or that would be, in detect mode); `matched`: every request a logged rule matched.',
          ),
      })
      .optional()
      .describe(
        'A JSON line per blocked (or matched) request with the matched rules, variables and the first 64 characters of the matched data (credentials masked). Absent: no audit log.',
      ),
  })
  .describe('Web application firewall: the OWASP Core Rule Set and SecLang rules.');

export type WafConfig = z.output<typeof schema>;

/** Where a WAF decision is published: `{ route, policy, requestId, action, ruleIds, score }`. */
export const wafChannel = channel('trellis:waf');

export interface LoadedRules {
  readonly compiled: CompiledRuleSet;
  /** Unsupported items (config errors) and inert ones (notes). */
  readonly unsupported: readonly SourceIssue[];
  readonly notes: readonly SourceIssue[];
}

/** Whether the body checks (rules 200002-200004) run: as configured, else with a CRS rule set. */
function bodyChecks(c: WafConfig): boolean {
  return c.bodyChecks ?? c.rules !== 'none';
}

function rulesKey(c: WafConfig): string {
  return JSON.stringify([c.rules, c.crsPath, c.extraRules, c.ruleFiles, c.removeRules, bodyChecks(c)]);
}

/** The body checks' rule ids: a request they refuse is malformed (400 `waf_body_invalid`), not an attack. */
export const BODY_CHECK_RULES: ReadonlySet<number> = new Set([200002, 200003, 200004]);

/**
 * The body checks ModSecurity's recommended configuration (modsecurity.conf-recommended) puts before the CRS,
 * with the same ids so that exclusions written for ModSecurity apply: a body its processor could not parse, a
 * multipart body that failed strict validation (MULTIPART_STRICT_ERROR), a multipart body with a line that looks
 * like a boundary and is not one.
 */
function bodyChecksText(): string {
  return [
    `SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,severity:2,msg:'Request body could not be parsed',logdata:'%{reqbody_error_msg}'"`,
    `SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,severity:2,msg:'Multipart body failed strict validation'"`,
    `SecRule MULTIPART_UNMATCHED_BOUNDARY "!@eq 0" "id:200004,phase:2,t:none,log,deny,status:400,severity:2,msg:'Multipart body holds a line like a boundary that is not one'"`,
  ].join('\n');
}

/** The CRS setup that crs-setup.conf would make, from the policy fields (the engine mode is the policy's). */
function setupText(): string {
  return [
    'SecDefaultAction "phase:1,log,auditlog,pass"',
    'SecDefaultAction "phase:2,log,auditlog,pass"',
    'SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"',
  ].join('\n');
}

// Loading CRS costs a few hundred ms: configs that load the same rules share them (a reload, a test file).
const loaded = new Map<string, LoadedRules>();

export function loadRules(c: WafConfig): LoadedRules {
  const key = rulesKey(c);
  const hit = loaded.get(key);
  if (hit !== undefined) return hit;
  const set: RuleSet = emptyRuleSet();
  const trusted = new Set<string>();
  if (bodyChecks(c)) {
    parseText(bodyChecksText(), '<body-checks>', set);
    trusted.add('<body-checks>');
  }
  if (c.rules !== 'none') {
    parseText(setupText(), '<crs-setup>', set);
    const before = set.items.length;
    try {
      parseFile(c.rules === 'crs' ? c.crsPath : c.rules, set);
    } catch (err) {
      set.unsupported.push({
        file: c.rules === 'crs' ? c.crsPath : c.rules,
        line: 0,
        message: (err as Error).message,
      });
    }
    for (const it of set.items.slice(before)) if (it.kind === 'rule') trusted.add(it.rule.file);
    trusted.add('<crs-setup>');
  }
  if (c.removeRules.length > 0)
    parseText(`SecRuleRemoveById ${c.removeRules.join(' ')}`, '<removeRules>', set);
  c.extraRules.forEach((text, i) => {
    parseText(text, `extraRules[${i}]`, set);
  });
  for (const f of c.ruleFiles) {
    try {
      parseFile(f, set);
    } catch (err) {
      set.unsupported.push({ file: f, line: 0, message: (err as Error).message });
    }
  }
  const compiled = compileRuleSet(set, (file) => trusted.has(file));
  const out = { compiled, unsupported: [...set.unsupported, ...compiled.problems], notes: set.notes };
  if (loaded.size >= 8) loaded.delete(loaded.keys().next().value!);
  loaded.set(key, out);
  return out;
}

/** At most this many rule ids reach the access log: a line stays small whatever the request. */
const SUMMARY_RULES = 16;

/** The access log's `waf` field: rule ids (distinct, in order), the score, the rule that refused; no request data. */
export function summary(
  policy: string,
  action: WafSummary['action'],
  score: number,
  matched: readonly { readonly id: number }[],
  blockingRule: number | undefined,
): WafSummary {
  const rules: number[] = [];
  let truncated = false;
  for (const m of matched) {
    if (rules.includes(m.id)) continue;
    if (rules.length === SUMMARY_RULES) {
      truncated = true;
      break;
    }
    rules.push(m.id);
  }
  return {
    policy,
    action,
    score,
    rules,
    ...(truncated ? { rulesTruncated: true as const } : {}),
    ...(blockingRule !== undefined ? { blockingRule } : {}),
  };
}

const INSPECTED =
  /^(application\/x-www-form-urlencoded|multipart\/form-data|application\/([a-z0-9.+-]*\+)?json|text\/|application\/xml)/i;

export const wafPolicy: PolicyKind<WafConfig> = {
  type: 'waf',
  phase: PolicyPhase.waf,
  schema,
  resolvePaths: (c, baseDir) =>
    c.auditLog === undefined || c.auditLog.output === 'stdout'
      ? c
      : { ...c, auditLog: { ...c.auditLog, output: resolve(baseDir, c.auditLog.output) } },
  validate(c, ctx) {
    const r = loadRules(c);
    for (const u of r.unsupported.slice(0, 50)) ctx.issue(['rules'], `${u.file}:${u.line}: ${u.message}`);
  },
  compile(c, ctx) {
    const { compiled, unsupported } = loadRules(c);
    if (unsupported.length > 0) {
      const u = unsupported[0]!;
      throw new Error(`${ctx.source}.rules: ${u.file}:${u.line}: ${u.message}`);
    }
    const engine: EngineMode = c.mode === 'block' ? 'On' : 'DetectionOnly';
    const preset = new Map<string, string>([
      ['paranoia_level', String(c.paranoiaLevel)],
      ['executing_paranoia_level', String(c.paranoiaLevel)],
      ['inbound_anomaly_score_threshold', String(c.inboundThreshold)],
    ]);
    if (c.allowedMethods !== undefined) preset.set('allowed_methods', c.allowedMethods.join(' '));
    // The rule set folded for this policy's presets, once here rather than on the first request.
    const plan = planOf(compiled, preset);
    const blocked: LocalReply = {
      kind: 'error',
      code: 'waf_blocked',
      detail: `policy ${ctx.name}: request blocked`,
    };
    const bodyInvalid: LocalReply = {
      kind: 'error',
      code: 'waf_body_invalid',
      detail: `policy ${ctx.name}: request body malformed`,
    };
    const name = ctx.name;
    const limit = c.maxBodyBytes;
    const al = c.auditLog;
    let audit: AuditSink | undefined;
    if (al !== undefined) {
      try {
        audit = ctx.keep(
          `audit:${al.output}`,
          () =>
            new AuditSink(al.output, (err) =>
              process.emitWarning(`WAF audit log ${al.output}: ${err.message}; audit lines are dropped`),
            ),
          (sink) => sink.close(),
        );
      } catch (err) {
        throw new Error(`${ctx.source}.auditLog.output: ${(err as Error).message}`);
      }
    }
    const auditMatched = al?.events === 'matched';

    const verdict = (tx: Transaction, sc: StageContext): LocalReply | undefined => {
      const hit = tx.interruption ?? tx.wouldInterrupt;
      if (hit !== undefined || tx.matched.length > 0) {
        const action = tx.interruption !== undefined ? 'blocked' : hit !== undefined ? 'detected' : 'matched';
        // CRS 3 sums the inbound score in tx.anomaly_score, CRS 4 in tx.blocking_inbound_anomaly_score.
        const score = Number(tx.get('anomaly_score') ?? tx.get('blocking_inbound_anomaly_score') ?? 0) || 0;
        sc.waf = summary(name, action, score, tx.matched, hit?.ruleId);
        if (audit !== undefined && (hit !== undefined || auditMatched)) {
          const ex = sc as { requestId?: string; trace?: { traceId?: string } };
          audit.write(
            auditLine({
              policy: name,
              route: sc.route?.name,
              requestId: ex.requestId,
              traceId: ex.trace?.traceId,
              method: sc.method,
              path: sc.path,
              action,
              score,
              blockingRule: hit?.ruleId,
              matched: tx.matched,
            }),
          );
        }
        if (wafChannel.hasSubscribers) {
          wafChannel.publish({
            route: sc.route?.name,
            policy: name,
            requestId: (sc as { requestId?: string }).requestId,
            action,
            ruleIds: tx.matched.map((m) => m.id),
            variables: tx.matched.map((m) => m.variable),
            score,
          });
        }
      }
      const stop = tx.interruption;
      if (stop === undefined) return undefined;
      return BODY_CHECK_RULES.has(stop.ruleId) ? bodyInvalid : blocked;
    };

    return {
      request: {
        name,
        onRequest: function waf(sc: StageContext): StageResult {
          const q = sc.query;
          const input: WafInput = {
            method: sc.method,
            rawTarget: sc.rawTarget ?? (q === '' ? sc.path : `${sc.path}?${q}`),
            path: sc.path,
            query: q,
            protocol: 'HTTP/1.1',
            headers: sc.headers,
            remoteAddr: sc.clientAddress(),
          };
          const tx = new Transaction(compiled, input, engine, preset, plan);
          tx.runPhase(1);
          if (tx.interruption !== undefined) return verdict(tx, sc);
          const ct = sc.headers['content-type'] ?? '';
          const peek = INSPECTED.test(ct) ? sc.peekBody?.(limit) : undefined;
          if (peek === undefined) {
            tx.runPhase(2);
            return verdict(tx, sc);
          }
          return peek.then(({ data, complete }) => {
            if (!complete && c.onBodyLimit === 'reject') return blocked;
            tx.setBody(parseBody(data, ct, complete));
            tx.runPhase(2);
            return verdict(tx, sc);
          });
        },
      },
    };
  },
};
