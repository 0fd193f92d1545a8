import type { CompiledRoute, Template } from './route.js';

/**
 * Between routes whose paths are equally specific: a method restriction first, then more header matchers, then
 * more query matchers, then the earlier route. The order of the Gateway API, made total by the input order.
 */
export function compareTies<T>(a: CompiledRoute<T>, b: CompiledRoute<T>): number {
  return (
    Number(b.methods !== null) - Number(a.methods !== null) ||
    (b.headers?.length ?? 0) - (a.headers?.length ?? 0) ||
    (b.query?.length ?? 0) - (a.query?.length ?? 0) ||
    a.index - b.index
  );
}

/** Between templates: more literal characters first, then fewer parameters, then the tie-breakers. */
export function compareTemplates<T>(a: CompiledRoute<T>, b: CompiledRoute<T>): number {
  const ta = templateOf(a);
  const tb = templateOf(b);
  return (
    tb.literalLength - ta.literalLength || ta.paramNames.length - tb.paramNames.length || compareTies(a, b)
  );
}

function templateOf<T>(route: CompiledRoute<T>): Template {
  if (route.path.kind !== 'template') throw new Error('expected a template route');
  return route.path.template;
}
