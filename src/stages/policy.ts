import type { z } from 'zod';
import type { RequestStage, ResponseStage } from '../proxy/stage.js';

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
  /** Consumers by name, compiled once per config. */
  readonly consumers: ReadonlyMap<string, Consumer>;
  /**
   * State that must outlive a reload (rate-limit counters, JWKS caches, Redis connections): the same `key` under
   * the same policy name and type hands back the object made by the previous config; objects no config asked for
   * are disposed once the new config is live.
   */
  keep<T>(key: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T;
}

/** One compiled policy: the stages it adds to every route it is attached to. */
export interface CompiledPolicy {
  readonly name: string;
  readonly type: string;
  readonly phase: number;
  /** Evaluate and record, never enforce: a local reply becomes a `shadow_deny` decision and the request goes on. */
  readonly shadow: boolean;
  readonly request?: RequestStage;
  readonly response?: ResponseStage;
}

export interface PolicyKind<C> {
  /** The `type` value in `policies[]`. */
  readonly type: string;
  /** The policy's own fields (without `name`, `type`, `shadow`), with `.describe()` on each for the docs. */
  readonly schema: z.ZodType<C>;
  compile(config: C, ctx: PolicyCompileContext): CompiledPolicy;
}
