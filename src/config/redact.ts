/** What `/config` shows: the config with every value that came from a secret reference replaced. */

export const REDACTED = '<redacted>';

/**
 * A deep copy of `config` with the value at each of `secretPaths` replaced by `"<redacted>"`. Paths that do not
 * exist are skipped; array indices may be numbers or decimal strings.
 */
export function redactConfig(
  config: unknown,
  secretPaths: readonly (readonly (string | number)[])[],
): unknown {
  const copy = structuredClone(config) as unknown;
  if (secretPaths.some((p) => p.length === 0)) return REDACTED;
  for (const path of secretPaths) {
    let node: unknown = copy;
    for (let i = 0; i < path.length - 1 && node !== null && typeof node === 'object'; i++) {
      node = Object.hasOwn(node, path[i]!) ? (node as Record<string, unknown>)[path[i]!] : undefined;
    }
    const last = path.at(-1)!;
    if (node !== null && typeof node === 'object' && Object.hasOwn(node, last)) {
      (node as Record<string, unknown>)[last] = REDACTED;
    }
  }
  return copy;
}
