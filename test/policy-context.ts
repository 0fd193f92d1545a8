/** Hand-made contexts for the unit tests of policy kinds: a compile context with `keep`, a request context. */
import type { IncomingHttpHeaders } from 'node:http';
import type { LocalReply, StageContext } from '../src/proxy/stage.js';
import type { Consumer, PolicyCompileContext, PolicyStages } from '../src/stages/policy.js';

export interface Kept {
  readonly values: Map<string, unknown>;
  dispose(): Promise<void>;
}

/** A compile context whose `keep` hands back what an earlier context with the same `kept` made. */
export function compileContext(
  name: string,
  kept: Kept = keptState(),
  shadow = false,
): PolicyCompileContext & { kept: Kept } {
  return {
    source: 'policies[0]',
    name,
    shadow,
    consumers: new Map(),
    credentials: undefined as never,
    kept,
    keep<T>(key: string, create: () => T, dispose?: (v: T) => void | Promise<void>): T {
      const k = `${name}\0${key}`;
      if (!kept.values.has(k)) {
        const v = create();
        kept.values.set(k, v);
        if (dispose) disposers.set(kept, [...(disposers.get(kept) ?? []), () => dispose(v)]);
      }
      return kept.values.get(k) as T;
    },
  };
}

const disposers = new WeakMap<Kept, Array<() => void | Promise<void>>>();

export function keptState(): Kept {
  const kept: Kept = {
    values: new Map(),
    async dispose() {
      for (const d of disposers.get(kept) ?? []) await d();
      disposers.delete(kept);
      kept.values.clear();
    },
  };
  return kept;
}

/** A request as the stages see it. */
export function fakeRequest(
  p: {
    method?: string;
    headers?: IncomingHttpHeaders;
    address?: string;
    consumer?: Consumer;
    route?: string;
  } = {},
): StageContext {
  return {
    method: p.method ?? 'GET',
    host: 'example.test',
    hostHeader: 'example.test',
    path: '/',
    query: '',
    params: undefined,
    upstreamPath: '/',
    upstreamHeaders: [],
    upstreamHost: undefined,
    clientCert: undefined,
    headers: p.headers ?? {},
    clientAddress: () => p.address ?? '192.0.2.1',
    consumer: p.consumer,
    claims: undefined,
    route: { name: p.route ?? 'r1' },
  };
}

/** Runs a policy's request stage (awaiting it when async) and, when it continues, its response stage. */
export async function run(
  policy: PolicyStages,
  ctx: StageContext,
  status = 200,
): Promise<{ reply: LocalReply | undefined; headers: string[] }> {
  const reply = await policy.request?.onRequest(ctx);
  const headers: string[] = [];
  if (reply === undefined) policy.response?.onResponse(status, headers, ctx);
  return { reply, headers };
}

/** A header of a flat list, or of a local reply. */
export function header(list: readonly string[] | LocalReply | undefined, name: string): string | undefined {
  if (list === undefined) return undefined;
  if (Array.isArray(list)) {
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
    return undefined;
  }
  const h = (list as LocalReply).headers as Record<string, string | number> | undefined;
  const v = h?.[name];
  return v === undefined ? undefined : String(v);
}

/** Waits until every Redis connection a test context kept is up (checks before then fail open). */
export async function connected(k: ReturnType<typeof keptState>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const clients = [...k.values.values()].flatMap((v) => {
      const c = (v as { client?: { status: string } }).client;
      return c === undefined ? [] : [c];
    });
    if (clients.length > 0 && clients.every((c) => c.status === 'ready')) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('Redis connection not ready');
}
