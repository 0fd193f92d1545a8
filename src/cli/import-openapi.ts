/**
 * `trellis import openapi FILE`: a Trellis config for an OpenAPI 3.0/3.1 document. One route per operation (named
 * from its operationId, matched by its path template and method), a service for the API's server, an `openapi`
 * policy that validates requests against the document, and, when the document's server URL is versioned
 * (`/v1`) or `--api-version` says so, a versioned API the routes belong to. The output passes `trellis validate`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import {
  loadOpenApiFile,
  type OpenApiDocument,
  type OpenApiOperation,
  serverBasePath,
} from '../stages/openapi/document.js';

export interface ImportOptions {
  /** Service (and API) name; default: from the document's title. */
  service?: string;
  /** Where the config goes: the policy's document path is made relative to its folder. Absent: stdout. */
  out?: string;
  /** The upstream URL; default: the document's first absolute server URL, else http://127.0.0.1:8080. */
  upstream?: string;
  /** Version name of the API (its routes get `api:`); default: a `/vN` server path, if any. */
  apiVersion?: string;
  /** How requests name the version: `path` (default), `header:NAME`, `query:NAME`, `media:VENDOR`. */
  select?: string;
  /** Leave the `openapi` validation policy out. */
  noValidate?: boolean;
}

/** A config name (lowercase, digits, `.`, `_`, `-`) from an operationId or title: `showPetById` → `show-pet-by-id`. */
export function configName(s: string): string {
  const n = s
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
    .slice(0, 63)
    .replace(/[^a-z0-9]+$/, '');
  return n === '' ? 'api' : n;
}

const PARAM = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The route path match for an OpenAPI path under `base`: exact, a `:param` template, or a regex. */
export function pathMatch(base: string, path: string): Record<string, string> {
  const full = base + (path === '/' && base !== '' ? '' : path);
  if (!full.includes('{')) return { exact: full };
  const segments = full.split('/');
  const whole = segments.every((s) => !s.includes('{') || /^\{[^}]+\}$/.test(s));
  if (whole && segments.every((s) => !s.startsWith('{') || PARAM.test(s.slice(1, -1))))
    return { template: segments.map((s) => (s.startsWith('{') ? `:${s.slice(1, -1)}` : s)).join('/') };
  // `/files/{name}.{ext}`: the router's templates take whole segments only.
  return {
    regex: full
      .split(/(\{[^}]+\})/)
      .map((part) => (part.startsWith('{') ? '[^/]+' : escapeRe(part)))
      .join(''),
  };
}

function selectConfig(select: string | undefined, stripPath: boolean): Record<string, unknown> {
  if (select === undefined || select === 'path')
    return stripPath ? { path: true } : { path: true, stripPath: false };
  const [kind, value] = select.split(':', 2) as [string, string | undefined];
  if (value === undefined || value === '')
    throw new Error(`--select ${select}: expected path, header:NAME, query:NAME or media:VENDOR`);
  if (kind === 'header') return { header: value };
  if (kind === 'query') return { query: value };
  if (kind === 'media') return { mediaType: value };
  throw new Error(`--select ${select}: expected path, header:NAME, query:NAME or media:VENDOR`);
}

/** The config object for a document (what `importOpenApi` writes as YAML). */
export function configFor(
  doc: OpenApiDocument,
  file: string,
  opts: ImportOptions = {},
): Record<string, unknown> {
  const service = configName(opts.service ?? doc.title);
  const server = doc.servers[0];
  let upstream = opts.upstream;
  if (upstream === undefined && server !== undefined && /^https?:\/\//i.test(server))
    upstream = new URL(server).origin;
  upstream ??= 'http://127.0.0.1:8080';
  let base = serverBasePath(server);
  let version = opts.apiVersion;
  // A server path of just `/v2` is a version: routes match without it, the API selects by it and keeps it upstream.
  let fromServer = false;
  if (version === undefined && /^\/v\d+$/.test(base)) {
    version = base.slice(1);
    fromServer = true;
  }
  if (fromServer) base = '';
  const policy = `${service}-openapi`;
  const outDir = opts.out === undefined ? process.cwd() : dirname(resolve(opts.out));
  let docPath = relative(outDir, resolve(file));
  if (docPath === '') docPath = file;

  const names = new Set<string>();
  const routes = doc.operations.map((op: OpenApiOperation) => {
    let name = configName(op.operationId ?? `${op.method}-${op.path}`);
    for (let n = 2; names.has(name); n++)
      name = `${configName(op.operationId ?? `${op.method}-${op.path}`).slice(0, 58)}-${n}`;
    names.add(name);
    const route: Record<string, unknown> = {
      name,
      match: { path: pathMatch(base, op.path), methods: [op.method.toUpperCase()] },
    };
    if (version !== undefined) route.api = service;
    else route.backends = [{ service }];
    if (!opts.noValidate) route.policies = [policy];
    return route;
  });

  const config: Record<string, unknown> = {
    listeners: [{ name: 'public', port: 8080 }],
    services: [{ name: service, endpoints: [upstream] }],
  };
  if (!opts.noValidate) {
    const p: Record<string, unknown> = { name: policy, type: 'openapi', document: docPath };
    // Routes carry no base path when the server path was the version: the policy strips the version itself.
    if (fromServer) p.basePath = '';
    config.policies = [p];
  }
  if (version !== undefined) {
    config.apis = [
      {
        name: service,
        select: selectConfig(opts.select, !fromServer),
        default: version,
        versions: [{ name: version, backends: [{ service }] }],
      },
    ];
  }
  config.routes = routes;
  return config;
}

/** Reads FILE and returns the config text (YAML, with a header comment); throws with the file and place. */
export function importOpenApi(file: string, opts: ImportOptions = {}): string {
  const doc = loadOpenApiFile(file);
  const config = configFor(doc, file, opts);
  const header = [
    `# Generated by \`trellis import openapi ${file}\` from ${doc.title} ${doc.infoVersion} (OpenAPI ${doc.version}):`,
    `# ${doc.operations.length} operations. Check the listener and the service endpoint before you run it.`,
    '',
  ].join('\n');
  const text = header + stringify(config, { lineWidth: 0 });
  if (opts.out !== undefined) {
    mkdirSync(dirname(resolve(opts.out)), { recursive: true });
    writeFileSync(opts.out, text);
  }
  return text;
}
