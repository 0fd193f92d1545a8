import type { HeaderEditsConfig } from '../config/schema.js';
import { removeFields } from '../proxy/headers.js';
import type { RequestStage, ResponseStage, StageContext } from '../proxy/stage.js';

interface CompiledEdits {
  /** Lower-case names whose values are dropped: `remove` plus the names `set` replaces. */
  drop: string[];
  /** Flat [name, value, ...] appended after the drop: `set` then `add`. */
  append: string[];
}

function compileEdits(cfg: HeaderEditsConfig): CompiledEdits | undefined {
  const drop = new Set<string>();
  const append: string[] = [];
  for (const n of cfg.remove ?? []) drop.add(n.toLowerCase());
  for (const [n, v] of Object.entries(cfg.set ?? {})) {
    drop.add(n.toLowerCase());
    append.push(n.toLowerCase(), v);
  }
  for (const [n, v] of Object.entries(cfg.add ?? {})) append.push(n.toLowerCase(), v);
  if (drop.size === 0 && append.length === 0) return undefined;
  return { drop: [...drop], append };
}

export function requestHeaderStage(cfg: HeaderEditsConfig): RequestStage | undefined {
  const edits = compileEdits(cfg);
  if (!edits) return undefined;
  const { drop, append } = edits;
  // Names only (even indices): a value that happens to be "host" is not a Host edit.
  const touchesHost = drop.includes('host') || append.some((v, i) => i % 2 === 0 && v === 'host');
  return {
    name: 'request-headers',
    onRequest: function editRequestHeaders(ctx: StageContext) {
      removeFields(ctx.upstreamHeaders, drop);
      for (let i = 0; i < append.length; i++) ctx.upstreamHeaders.push(append[i]!);
      if (touchesHost) moveHost(ctx);
      return undefined;
    },
  };
}

/** `host` is sent through `upstreamHost`, never as a listed field (undici rejects two). */
function moveHost(ctx: StageContext): void {
  const list = ctx.upstreamHeaders;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === 'host') {
      ctx.upstreamHost = list[i + 1]!;
      list.splice(i, 2);
      i -= 2;
    }
  }
}

export function responseHeaderStage(cfg: HeaderEditsConfig): ResponseStage | undefined {
  const edits = compileEdits(cfg);
  if (!edits) return undefined;
  const { drop, append } = edits;
  return {
    name: 'response-headers',
    onResponse: function editResponseHeaders(_status: number, headers: string[]) {
      removeFields(headers, drop, false);
      for (let i = 0; i < append.length; i++) headers.push(append[i]!);
    },
  };
}
