/**
 * Policies compiled once per config, and the per-route chain built from them: the policies a route's listener
 * attaches, then the route's own, sorted by phase (stable, so listed order holds within a phase), each wrapped
 * so that its decision is recorded (and, in shadow mode, not enforced). A route without policies gets none of
 * this.
 */
import type { Config } from '../config/schema.js';
import { errorCatalog } from '../core/errors.js';
import type { LocalReply, RequestStage, ResponseStage, StageContext, StageResult } from '../proxy/stage.js';
import { compileConsumers } from '../stages/consumers.js';
import { policyKinds } from '../stages/kinds.js';
import type {
  CompiledPolicy,
  PolicyCompileContext,
  PolicyDecision,
  PolicyDecisionKind,
  PolicyKind,
} from '../stages/policy.js';

// ---------- state kept across reloads ----------

interface Kept {
  readonly value: unknown;
  readonly dispose: ((value: unknown) => void | Promise<void>) | undefined;
}

function disposeKept(k: Kept): void {
  if (k.dispose === undefined) return;
  try {
    Promise.resolve(k.dispose(k.value)).catch(() => {});
  } catch {
    // A dispose that throws must not fail the swap that called it.
  }
}

/** The state one compile claimed: what it reused from the live config, and what it created. */
export class PolicyGeneration {
  readonly #live: ReadonlyMap<string, Kept>;
  readonly claimed = new Map<string, Kept>();
  constructor(live: ReadonlyMap<string, Kept>) {
    this.#live = live;
  }
  keep<T>(
    policy: string,
    type: string,
    key: string,
    create: () => T,
    dispose?: (value: T) => void | Promise<void>,
  ): T {
    const id = `${type}\u0000${policy}\u0000${key}`;
    let k = this.claimed.get(id) ?? this.#live.get(id);
    if (k === undefined) k = { value: create(), dispose: dispose as Kept['dispose'] };
    this.claimed.set(id, k);
    return k.value as T;
  }
  /** Whether `k` came from the live config (and so must not be disposed when this compile is abandoned). */
  isLive(id: string, k: Kept): boolean {
    return this.#live.get(id) === k;
  }
}

/**
 * Policy state owned by the gateway, outliving snapshots: each compile claims state through `keep`; after the
 * swap, state no longer claimed is disposed; a compile that is abandoned disposes only what it created.
 */
export class PolicyStates {
  #live = new Map<string, Kept>();

  begin(): PolicyGeneration {
    return new PolicyGeneration(this.#live);
  }

  /** The new config is live: its state becomes the live state, the rest is disposed. */
  commit(gen: PolicyGeneration): void {
    const old = this.#live;
    this.#live = new Map(gen.claimed);
    for (const [id, k] of old) if (this.#live.get(id) !== k) disposeKept(k);
  }

  /** The apply failed: dispose what this compile created, keep everything the live config uses. */
  abort(gen: PolicyGeneration): void {
    for (const [id, k] of gen.claimed) if (!gen.isLive(id, k) && this.#live.get(id) !== k) disposeKept(k);
  }

  /** Shutdown: dispose everything. */
  disposeAll(): void {
    for (const k of this.#live.values()) disposeKept(k);
    this.#live = new Map();
  }

  /** Entries held, for tests. */
  get size(): number {
    return this.#live.size;
  }
}

// ---------- compile ----------

// biome-ignore lint/suspicious/noExplicitAny: kinds have their own config types
const KINDS: ReadonlyMap<string, PolicyKind<any>> = new Map(policyKinds.map((k) => [k.type, k]));

/** Every policy in the config, by name (compiled whether attached or not, so a config error shows at once). */
export function compilePolicies(config: Config, gen: PolicyGeneration): ReadonlyMap<string, CompiledPolicy> {
  const out = new Map<string, CompiledPolicy>();
  if (config.policies.length === 0) return out;
  const consumers = compileConsumers(config.consumers);
  config.policies.forEach((p, i) => {
    const kind = KINDS.get(p.type);
    if (kind === undefined) throw new Error(`policies[${i}].type: unknown policy type "${p.type}"`);
    const { name, type, shadow } = p;
    const ctx: PolicyCompileContext = {
      source: `policies[${i}]`,
      name,
      shadow,
      consumers: consumers.byName,
      credentials: consumers.credentials,
      keep: (key, create, dispose) => gen.keep(name, type, key, create, dispose),
    };
    const compiled = kind.compile(p, ctx);
    out.set(
      name,
      Object.freeze({
        name,
        type,
        phase: kind.phase,
        shadow,
        request: compiled.request,
        response: compiled.response,
      }),
    );
  });
  return out;
}

/**
 * The order policies run in on a route: by phase; within a phase as attached (the listener's, then the route's,
 * in listed order: Array.prototype.sort is stable). The admin views use it too, so they show what runs.
 */
export function inRunOrder<T extends { readonly phase: number }>(attached: readonly T[]): T[] {
  return [...attached].sort((a, b) => a.phase - b.phase);
}

/** The policy kinds by `type`. */
export function policyKind(type: string): PolicyKind<unknown> | undefined {
  return KINDS.get(type);
}

/** The request and response stages a route gets from its listener's policies and its own. */
export function routePolicyStages(
  route: string,
  attached: readonly CompiledPolicy[],
): { request: RequestStage[]; response: ResponseStage[] } {
  const sorted = inRunOrder(attached);
  const request: RequestStage[] = [];
  const response: ResponseStage[] = [];
  for (const p of sorted) {
    if (p.request !== undefined) request.push(decisionStage(route, p, p.request));
  }
  // Response stages run in reverse order; a shadow policy changes no response.
  for (let i = sorted.length - 1; i >= 0; i--) {
    const p = sorted[i]!;
    if (p.response !== undefined && !p.shadow) response.push(p.response);
  }
  return { request, response };
}

function marks(route: string, p: CompiledPolicy): Record<PolicyDecisionKind, PolicyDecision> {
  const mark = (decision: PolicyDecisionKind) =>
    Object.freeze({ route, policy: p.name, type: p.type, decision });
  return { allow: mark('allow'), deny: mark('deny'), shadow_deny: mark('shadow_deny'), error: mark('error') };
}

function record(ctx: StageContext, d: PolicyDecision): void {
  const list = ctx.decisions;
  if (list === undefined) ctx.decisions = [d];
  else list.push(d);
}

/** A reply with a 5xx status is the policy failing (its backend unreachable, overloaded), not a refusal. */
function failed(r: LocalReply): boolean {
  return (r.kind === 'error' ? errorCatalog[r.code].status : r.status) >= 500;
}

/**
 * Records the policy's decision on the request (one push of a precomputed object). Enforced: a reply goes to
 * the client. Shadow: a reply or an error is recorded and the request goes on.
 */
function decisionStage(route: string, p: CompiledPolicy, inner: RequestStage): RequestStage {
  const m = marks(route, p);
  const refused = p.shadow ? m.shadow_deny : m.deny;
  const settle = (ctx: StageContext, r: LocalReply | undefined): LocalReply | undefined => {
    if (r === undefined) {
      record(ctx, m.allow);
      return undefined;
    }
    if (failed(r)) {
      record(ctx, m.error);
      return p.shadow ? undefined : r;
    }
    // A policy that answers for the upstream (a CORS preflight's 204) let the request through: not a refusal.
    if (r.kind === 'response' && r.status < 400) {
      record(ctx, m.allow);
      return p.shadow ? undefined : r;
    }
    record(ctx, refused);
    return p.shadow ? undefined : r;
  };
  const rejected = (ctx: StageContext, err: unknown): undefined => {
    record(ctx, m.error);
    if (p.shadow) return undefined;
    throw err;
  };
  return {
    name: p.name,
    onRequest: function policyStage(ctx: StageContext): StageResult {
      let r: StageResult;
      try {
        r = inner.onRequest(ctx);
      } catch (err) {
        return rejected(ctx, err);
      }
      if (r === undefined) {
        record(ctx, m.allow);
        return undefined;
      }
      if (r instanceof Promise)
        return r.then(
          (v) => settle(ctx, v),
          (err) => rejected(ctx, err),
        );
      return settle(ctx, r);
    },
  };
}
