/**
 * Loading a config: parse (YAML or JSON, with positions) → resolve `${env:}` / `${file:}` references → schema →
 * semantics. Every problem found comes back at once, each with its file, line, column and config path.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { signatureSync } from '../core/file-signature.js';
import { policyKinds } from '../stages/kinds.js';
import { resolveTranslatePaths, translateInputs } from '../translate/semantics.js';
import { parseConfigText } from './document.js';
import { type ConfigError, type ConfigIssue, type ConfigPath, type Locator, locateIssues } from './errors.js';
import { DEFAULT_MESSAGE, translateZodIssues } from './issues.js';
import { type Config, configSchema } from './schema.js';
import { resolveSecrets } from './secrets.js';
import { checkSemantics, resolveAccessLogOutput } from './semantics.js';
import { resolveTlsPaths, resolveUpstreamTlsPaths } from './tls.js';

export interface LoadOptions {
  /** Where `${env:NAME}` looks; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Folder for relative `${file:}`, `accessLog.output` and TLS file paths; default: the config file's folder. */
  baseDir?: string;
}

export interface ConfigSource {
  file: string;
  /**
   * sha256 (hex) of the canonical JSON of the validated config, defaults and secrets included: equal configs hash
   * equal whatever their formatting, comments or format (YAML or JSON), and a rotated secret changes the hash.
   */
  hash: string;
  /** The file as read, references unresolved. */
  text: string;
  /** Config paths (array indices as decimal strings) whose values came from `${env:}` or `${file:}`. */
  secretPaths: string[][];
}

export type LoadResult =
  | { ok: true; config: Config; source: ConfigSource }
  | { ok: false; errors: ConfigError[] };

export type ValidateResult = { ok: true; config: Config } | { ok: false; errors: ConfigError[] };

export async function loadConfigFile(path: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? String(err));
    return {
      ok: false,
      errors: [{ file: path, path: '', message: `cannot read the config file: ${reason}` }],
    };
  }
  return loadConfigText(text, path, opts);
}

/** Loads a config from text; `file` names it in errors and anchors relative paths. Reads `${file:}` files synchronously. */
export function loadConfigText(text: string, file: string, opts: LoadOptions = {}): LoadResult {
  const baseDir = opts.baseDir ?? dirname(resolve(file));
  const parsed = parseConfigText(text, file);
  if (!parsed.ok) return { ok: false, errors: parsed.errors };
  if (parsed.data === null || parsed.data === undefined) {
    return {
      ok: false,
      errors: [
        {
          file,
          line: 1,
          column: 1,
          path: '',
          message: 'the config is empty; expected an object with "listeners"',
        },
      ],
    };
  }
  const secrets = resolveSecrets(parsed.data, { env: opts.env ?? process.env, baseDir });
  const result = validate(parsed.data, baseDir, secrets.secretPaths, secrets.issues);
  if (!result.ok) return { ok: false, errors: locateIssues(result.issues, file, parsed.locate) };
  return {
    ok: true,
    config: result.config,
    source: {
      file,
      hash: sourceHash(result.config),
      text,
      secretPaths: secrets.secretPaths.map((p) => p.map(String)),
    },
  };
}

/**
 * Validates config data that did not come from a file (an admin API body, a control-plane resource) with the
 * same checks; errors have paths but no positions. Run references through the loader first if it may hold any.
 */
export function validateConfig(
  data: unknown,
  opts: { file?: string; baseDir?: string } = {},
): ValidateResult {
  const result = validate(structuredClone(data), opts.baseDir ?? process.cwd(), [], []);
  const noPosition: Locator = () => undefined;
  return result.ok
    ? result
    : { ok: false, errors: locateIssues(result.issues, opts.file ?? '<config>', noPosition) };
}

function validate(
  data: unknown,
  baseDir: string,
  secretPaths: readonly ConfigPath[],
  earlier: readonly ConfigIssue[],
): { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] } {
  const parsed = configSchema.safeParse(data, { error: () => DEFAULT_MESSAGE });
  const issues = [...earlier];
  if (!parsed.success) {
    // A value whose reference could not be resolved already has its error; the schema's would be noise.
    const broken = new Set(earlier.map((i) => JSON.stringify(i.path.map(String))));
    const schemaIssues = translateZodIssues(parsed.error.issues, configSchema, data, secretPaths);
    issues.push(...schemaIssues.filter((i) => !broken.has(JSON.stringify(i.path.map(String)))));
  }
  // Semantics assume a config the schema accepted, and would only repeat a broken reference's error.
  if (issues.length > 0 || !parsed.success) return { ok: false, issues };
  const config = parsed.data;
  issues.push(...checkSemantics(config, { baseDir, secretPaths }));
  if (issues.length > 0) return { ok: false, issues };
  // One meaning for a relative log path, whoever opens it later and from whichever working directory.
  config.accessLog.output = resolveAccessLogOutput(config.accessLog.output, baseDir);
  for (const l of config.listeners) if (l.tls !== undefined) l.tls = resolveTlsPaths(l.tls, baseDir);
  for (const svc of config.services)
    if (svc.tls !== undefined) svc.tls = resolveUpstreamTlsPaths(svc.tls, baseDir);
  for (const r of config.routes)
    if (r.translate !== undefined) r.translate = resolveTranslatePaths(r.translate, baseDir);
  // Files a policy reads (an OpenAPI document, rule files) are relative to the config file, whichever folder the
  // gateway runs in. (Validation resolved them the same way, with `baseDir`, and named them as written.)
  config.policies = config.policies.map((p) => {
    const kind = policyKinds.find((k) => k.type === p.type);
    return kind?.resolvePaths === undefined ? p : kind.resolvePaths(p, baseDir);
  });
  return { ok: true, config: deepFreeze(config) };
}

/**
 * The hash that tells versions apart: the config's, and when routes translate with files (protos), those files'
 * signatures too, so that a reload after editing a proto is a new version although the config text is the same.
 */
function sourceHash(config: Config): string {
  const files = translateInputs(config.routes);
  const h = hashConfig(config);
  if (files.length === 0) return h;
  return createHash('sha256')
    .update(`${h}|${signatureSync(files)}`)
    .digest('hex');
}

/** sha256 hex of the config's canonical JSON (keys sorted at every level). */
export function hashConfig(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** A validated config is read-only from here on (Fastify's habit): compile and stages may share it safely. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
