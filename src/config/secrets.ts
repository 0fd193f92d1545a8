/**
 * `${env:NAME}` and `${file:PATH}` references in string values, replaced before validation. `$${` writes a
 * literal `${`. Any other `${…}` is an error, so that a typo such as `${ENV:X}` never reaches a header as text.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ConfigIssue, PathSegment } from './errors.js';

/** Secrets are short; this keeps `${file:/dev/zero}` or a stray log file from being read into memory. */
const MAX_SECRET_FILE_BYTES = 1024 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface SecretContext {
  env: NodeJS.ProcessEnv;
  /** `${file:}` paths are relative to this folder (the config file's). */
  baseDir: string;
}

export interface SecretResult {
  /** Paths of the string values that held at least one reference. */
  secretPaths: PathSegment[][];
  issues: ConfigIssue[];
}

/**
 * Replaces references in every string value of `data`, in place (object keys are left alone). A value whose
 * reference fails keeps its original text, so that validation still runs on the rest.
 */
export function resolveSecrets(data: unknown, ctx: SecretContext): SecretResult {
  const result: SecretResult = { secretPaths: [], issues: [] };
  const files = new Map<string, { text: string } | { error: string }>();
  const visit = (value: unknown, path: PathSegment[]): unknown => {
    if (typeof value === 'string') {
      if (!value.includes('${')) return value;
      const r = substitute(value, ctx, files);
      for (const message of r.problems) result.issues.push({ path, message });
      if (r.problems.length > 0) return value;
      if (r.secret) result.secretPaths.push(path);
      return r.value;
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = visit(value[i], [...path, i]);
    } else if (value !== null && typeof value === 'object') {
      const obj = value as Record<string, unknown>;
      for (const k of Object.keys(obj)) obj[k] = visit(obj[k], [...path, k]);
    }
    return value;
  };
  visit(data, []);
  return result;
}

function substitute(
  s: string,
  ctx: SecretContext,
  files: Map<string, { text: string } | { error: string }>,
): { value: string; secret: boolean; problems: string[] } {
  let out = '';
  let secret = false;
  const problems: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s.startsWith('$${', i)) {
      out += '${';
      i += 3;
      continue;
    }
    if (!s.startsWith('${', i)) {
      out += s[i];
      i++;
      continue;
    }
    const end = s.indexOf('}', i + 2);
    if (end < 0) {
      problems.push(
        `unterminated "\${": expected \${env:NAME} or \${file:PATH} (write "$\${" for a literal "\${")`,
      );
      break;
    }
    const body = s.slice(i + 2, end);
    i = end + 1;
    const colon = body.indexOf(':');
    const kind = colon < 0 ? '' : body.slice(0, colon);
    const arg = colon < 0 ? '' : body.slice(colon + 1);
    if (kind === 'env' && ENV_NAME.test(arg)) {
      const v = ctx.env[arg];
      if (v === undefined) problems.push(`environment variable "${arg}" is not set`);
      else out += v;
      secret = true;
    } else if (kind === 'file' && arg !== '') {
      let entry = files.get(arg);
      if (entry === undefined) {
        entry = readSecretFile(resolve(ctx.baseDir, arg));
        files.set(arg, entry);
      }
      if ('error' in entry) problems.push(`cannot read file "${arg}": ${entry.error}`);
      else out += entry.text;
      secret = true;
    } else {
      problems.push(
        `unknown reference "\${${body}}": expected \${env:NAME} or \${file:PATH} (write "$\${" for a literal "\${")`,
      );
    }
  }
  return { value: out, secret, problems };
}

function readSecretFile(path: string): { text: string } | { error: string } {
  try {
    const st = statSync(path);
    if (!st.isFile()) return { error: `${path} is not a regular file` };
    if (st.size > MAX_SECRET_FILE_BYTES) return { error: `${path} is larger than 1 MiB` };
    const text = readFileSync(path, 'utf8');
    // Editors end files with a newline; the secret itself should not.
    return { text: text.replace(/\r?\n$/, '') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? String(err));
    return { error: `${reason} (${path})` };
  }
}
