import type { z } from 'zod';
import type { RequestStage, ResponseStage } from '../proxy/stage.js';
import type { ConsumerCredentials } from './consumers.js';

/**
 * The contract every policy type implements. A policy is named and typed in `policies[]`, attached to routes (or
 * listeners) by name, and compiled once per config into stages; a route that attaches none pays nothing.
 *
 * Policies attached to a route run in phase order, whatever order they are listed in (docs/policies.md documents
 * it): a request is filtered by address before anything is parsed, answered for CORS preflight before anyone asks
 * for credentials, authenticated before it is authorized, and only then counted against a rate limit, so an
 * unauthenticated flood cannot spend a consumer's quota. Within one phase, listed order holds.
 */
export const PolicyPhase = {
  ipFilter: 100,
  cors: 200,
  authn: 300,
  authz: 400,
  rateLimit: 500,
  waf: 600,
  /** Request validation against an API description (openapi): after the WAF, before anything is rewritten. */
  validate: 650,
  transform: 700,
} as const;

/** A named identity with credentials (the credentials stay with the policies that check them). */
export interface Consumer {
  readonly name: string;
  readonly groups: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
}

export interface PolicyCompileContext {
  /** Where the policy is in the config, for error messages: `policies[3]`. */
  readonly source: string;
  /** The policy's `name` and `shadow` (the framework sets them on the CompiledPolicy it makes). */
  readonly name: string;
  readonly shadow: boolean;
  /** Consumers by name, compiled once per config. */
  readonly consumers: ReadonlyMap<string, Consumer>;
  /** Credential lookup tables of the consumers (API key hashes, basic-auth users, mTLS identities). */
  readonly credentials: ConsumerCredentials;
  /**
   * State that must outlive a reload (rate-limit counters, JWKS caches, Redis connections): the same `key` under
   * the same policy name and type hands back the object made by the previous config; objects no config asked for
   * are disposed once the new config is live.
   */
  keep<T>(key: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T;
}

/** What a kind's `compile` makes: the stages the policy adds to every route it is attached to. */
export interface PolicyStages {
  readonly request?: RequestStage;
  readonly response?: ResponseStage;
}

/** One compiled policy, as the framework keeps it: its stages with its name, type, phase and mode. */
export interface CompiledPolicy extends PolicyStages {
  readonly name: string;
  readonly type: string;
  readonly phase: number;
  /** Evaluate and record, never enforce: a local reply becomes a `shadow_deny` decision and the request goes on. */
  readonly shadow: boolean;
}

/** What `validate` can check beyond the schema: references to consumers, and where to report a problem. */
export interface PolicyValidateContext {
  readonly consumers: ReadonlySet<string>;
  /** The config file's folder: relative file names in a policy (an OpenAPI document) are relative to it. */
  readonly baseDir?: string;
  /** Reports a problem at a path below the policy (`['anonymous']` → `policies[3].anonymous`). */
  issue(path: readonly (string | number)[], message: string): void;
}

export interface PolicyKind<C> {
  /** The `type` value in `policies[]`. */
  readonly type: string;
  /** Where its stages run in a route's chain (PolicyPhase); known without compiling, so views can show the order. */
  readonly phase: number;
  /**
   * The policy's own fields (without `name`, `type`, `shadow`), with `.describe()` on each for the docs. It must
   * be a `z.strictObject` (refinements allowed): the framework extends it with `name`, `type` and `shadow` into
   * one branch of the `policies[]` union. Import shared pieces (duration, headerName, ...) from
   * config/primitives.ts, never config/schema.ts (which imports the kinds: a cycle).
   */
  readonly schema: z.ZodType<C>;
  /** Semantic checks run by `trellis validate` and every load (unknown consumer names, ...). Optional. */
  validate?(config: C, ctx: PolicyValidateContext): void;
  /**
   * Makes the file names in its config absolute against `baseDir` (the config file's folder), once when the
   * config has loaded and validated, so that they mean the same from whichever folder the gateway runs (and
   * `compile` reads them as given). `validate` sees them as written, with `ctx.baseDir`, so its messages name
   * them as the user did. Optional: for kinds that read files (an OpenAPI document, a persisted-query manifest).
   */
  resolvePaths?(config: C, baseDir: string): C;
  compile(config: C, ctx: PolicyCompileContext): PolicyStages;
}

/** How one policy ended for one request: the `decision` label of trellis_policy_decisions_total. */
export type PolicyDecisionKind = 'allow' | 'deny' | 'shadow_deny' | 'error';

/**
 * One decision, made at compile time for each (route, policy, decision) so that recording it costs a push of a
 * reference: StageContext.decisions lists those a request collected, in the order the policies ran.
 */
export interface PolicyDecision {
  readonly route: string;
  readonly policy: string;
  readonly type: string;
  readonly decision: PolicyDecisionKind;
}
