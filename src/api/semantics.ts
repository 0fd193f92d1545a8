/**
 * Checks of `apis` and of routes' `api` the schema cannot express: names resolve (with a suggestion) and are
 * unique within an API, a deprecated version says since when, a served version has backends, a route of an API
 * takes its upstream from it and from nowhere else.
 */
import type { PathSegment } from '../config/errors.js';
import type { Config } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';

type Add = (path: PathSegment[], message: string, key?: boolean) => void;

export function checkApis(config: Config, add: Add): void {
  const apis = config.apis ?? [];
  const services = config.services.map((s) => s.name);
  const consumers = config.consumers.map((c) => c.name);
  const groups = new Set(config.consumers.flatMap((c) => c.groups));
  const apiNames = new Map<string, number>();
  apis.forEach((a, i) => {
    const at: PathSegment[] = ['apis', i];
    const first = apiNames.get(a.name);
    if (first !== undefined) add([...at, 'name'], `duplicate API name "${a.name}" (also apis[${first}])`);
    else apiNames.set(a.name, i);

    // Names and aliases share one case-insensitive namespace: they are what requests send.
    const names = new Map<string, string>();
    a.versions.forEach((v, j) => {
      const vat: PathSegment[] = [...at, 'versions', j];
      const claim = (n: string, path: PathSegment[]) => {
        const had = names.get(n.toLowerCase());
        if (had !== undefined) add(path, `version name "${n}" is already used by ${had}`);
        else names.set(n.toLowerCase(), `version "${v.name}"`);
      };
      claim(v.name, [...vat, 'name']);
      v.aliases?.forEach((al, k) => {
        claim(al, [...vat, 'aliases', k]);
      });
      if (v.status === 'deprecated' && v.deprecatedAt === undefined)
        add(
          [...vat, 'deprecatedAt'],
          'a deprecated version needs "deprecatedAt" (the date its Deprecation field carries, RFC 9745)',
        );
      if (v.status !== 'retired' && v.backends === undefined)
        add(
          [...vat, 'backends'],
          `version "${v.name}" is ${v.status} and needs "backends" (only a retired one has none)`,
        );
      if (
        v.deprecatedAt !== undefined &&
        v.sunset !== undefined &&
        Date.parse(v.sunset) < Date.parse(v.deprecatedAt)
      )
        add([...vat, 'sunset'], '"sunset" is before "deprecatedAt"');
      v.backends?.forEach((b, k) => {
        if (services.includes(b.service)) return;
        const hint = services.length === 0 ? ' (no services are defined)' : didYouMean(b.service, services);
        add([...vat, 'backends', k, 'service'], `unknown service "${b.service}"${hint}`);
      });
      if (v.backends?.every((b) => b.weight === 0))
        add([...vat, 'backends'], 'every backend has weight 0; at least one needs a weight above 0');
    });
    const versionNames = a.versions.map((v) => v.name);
    const known = (n: string, path: PathSegment[]) => {
      if (!names.has(n.toLowerCase()))
        add(
          path,
          `unknown version "${n}"${didYouMean(n, versionNames)}; the API has ${versionNames.join(', ')}`,
        );
    };
    known(a.default, [...at, 'default']);
    const byDefault = a.versions.find((v) => v.name.toLowerCase() === a.default.toLowerCase());
    if (byDefault?.status === 'retired')
      add([...at, 'default'], `the default version "${a.default}" is retired; choose a served one`);
    for (const [c, v] of Object.entries(a.pins?.consumers ?? {})) {
      known(v, [...at, 'pins', 'consumers', c]);
      if (!consumers.includes(c))
        add([...at, 'pins', 'consumers', c], `unknown consumer "${c}"${didYouMean(c, consumers)}`, true);
    }
    for (const [g, v] of Object.entries(a.pins?.groups ?? {})) {
      known(v, [...at, 'pins', 'groups', g]);
      if (!groups.has(g))
        add([...at, 'pins', 'groups', g], `no consumer is in group "${g}"${didYouMean(g, groups)}`, true);
    }
    const s = a.select;
    if (
      !s.path &&
      s.header === undefined &&
      s.mediaType === undefined &&
      s.query === undefined &&
      a.pins === undefined &&
      a.versions.length > 1
    )
      add(
        [...at, 'select'],
        'requests have no way to choose a version: set "path", "header", "mediaType" or "query" (or "pins")',
      );
  });

  const names = [...apiNames.keys()];
  config.routes.forEach((r, i) => {
    if (r.api === undefined) return;
    const at: PathSegment[] = ['routes', i];
    if (!apiNames.has(r.api)) {
      const hint = names.length === 0 ? ' (no apis are defined)' : didYouMean(r.api, names);
      add([...at, 'api'], `unknown API "${r.api}"${hint}`);
    }
    const api = apis.find((a) => a.name === r.api);
    if (api?.select.path && r.match.grpc !== undefined)
      add(
        [...at, 'match', 'grpc'],
        `API "${r.api}" selects versions by path, which a gRPC method path cannot carry; use a header`,
      );
    for (const k of ['backends', 'redirect', 'directResponse', 'translate'] as const) {
      if (r[k] !== undefined)
        add(
          [...at, k],
          `a route of an API takes its backends from the API's versions; remove "${k}" or "api"`,
          true,
        );
    }
  });
}
