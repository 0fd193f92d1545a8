/** Config errors as text for a terminal or a log: one `file:line:col path: message` line each, then a count. */
import type { ConfigError } from './errors.js';

export function formatConfigError(e: ConfigError): string {
  const where = e.line === undefined ? e.file : `${e.file}:${e.line}:${e.column ?? 1}`;
  return e.path === '' ? `${where}: ${e.message}` : `${where} ${e.path}: ${e.message}`;
}

/**
 * ```
 * examples/bad.yaml:12:7 routes[2].match.path: unknown key "prefx" (did you mean "prefix"?)
 * 1 error in examples/bad.yaml
 * ```
 */
export function formatConfigErrors(errors: readonly ConfigError[]): string {
  if (errors.length === 0) return '';
  const files = [...new Set(errors.map((e) => e.file))];
  const count = `${errors.length} ${errors.length === 1 ? 'error' : 'errors'} in ${files.join(', ')}`;
  return [...errors.map(formatConfigError), count].join('\n');
}
