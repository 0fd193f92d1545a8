/** Checks of `routes[].translate` that the schema cannot express: each kind's own `validate`, and paths resolved. */
import type { PathSegment } from '../config/errors.js';
import { translateKind } from './kinds.js';
import type { TranslateConfig } from './schema.js';

interface RouteLike {
  readonly name: string;
  readonly translate?: TranslateConfig | undefined;
  readonly backends?: readonly { readonly service: string; readonly weight: number }[] | undefined;
  readonly redirect?: unknown;
  readonly directResponse?: unknown;
}

type Add = (path: PathSegment[], message: string) => void;

export function checkTranslate(
  routes: readonly RouteLike[],
  services: readonly { readonly name: string; readonly protocol: string }[],
  baseDir: string,
  add: Add,
): void {
  const byName = new Map(services.map((s) => [s.name, s]));
  routes.forEach((r, i) => {
    const t = r.translate;
    if (t === undefined) return;
    const at: PathSegment[] = ['routes', i, 'translate'];
    if (r.redirect !== undefined || r.directResponse !== undefined) {
      add(at, '`translate` cannot be combined with `redirect` or `directResponse`');
      return;
    }
    translateKind(t.type)?.validate?.(t, {
      route: r,
      services: byName,
      baseDir,
      issue: (path, message) => add([...at, ...path], message),
    });
  });
}

/** Every file the routes' translations depend on (for the config hash: an edited proto makes a new version). */
export function translateInputs(routes: readonly RouteLike[]): string[] {
  const out: string[] = [];
  for (const r of routes) {
    if (r.translate === undefined) continue;
    const kind = translateKind(r.translate.type);
    if (kind?.inputs !== undefined) out.push(...kind.inputs(r.translate));
  }
  return out;
}

/** A route's `translate` with its relative file references made absolute (against the config file's folder). */
export function resolveTranslatePaths(t: TranslateConfig, baseDir: string): TranslateConfig {
  const kind = translateKind(t.type);
  return kind?.resolvePaths === undefined ? t : (kind.resolvePaths(t, baseDir) as TranslateConfig);
}
