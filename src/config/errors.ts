/** The error shape every config check produces, and the path notation errors are written in. */

/** One step into the config tree: an object key or an array index. */
export type PathSegment = string | number;
export type ConfigPath = readonly PathSegment[];

/** One problem in a config file, pointing at the node that caused it. */
export interface ConfigError {
  file: string;
  /** 1-based; absent when the problem has no place in the file (e.g. the file cannot be read). */
  line?: number;
  column?: number;
  /** Where in the config tree, e.g. `routes[2].match.path`; '' for the whole file. */
  path: string;
  /** What was expected, in words. */
  message: string;
}

/**
 * A problem found before positions are known: checks work on plain data, and the loader locates them in the file.
 * `at` points somewhere other than `path` itself, e.g. at an unknown key's name while `path` names its object.
 */
export interface ConfigIssue {
  path: ConfigPath;
  message: string;
  at?: { path: ConfigPath; key: boolean };
}

/** Finds the line and column of the node at `path` (of its key when `key`), or of its nearest existing ancestor. */
export type Locator = (path: ConfigPath, key: boolean) => { line: number; column: number } | undefined;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `['routes', 2, 'match', 'path']` → `routes[2].match.path`; keys that are not identifiers are quoted. */
export function formatConfigPath(path: ConfigPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENTIFIER.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Places issues in the file, drops exact duplicates (an alias can repeat one node) and sorts them by position. */
export function locateIssues(issues: readonly ConfigIssue[], file: string, locate: Locator): ConfigError[] {
  const seen = new Set<string>();
  const errors: ConfigError[] = [];
  for (const issue of issues) {
    const at = issue.at ?? { path: issue.path, key: false };
    const pos = locate(at.path, at.key);
    const error: ConfigError = { file, path: formatConfigPath(issue.path), message: issue.message };
    if (pos) {
      error.line = pos.line;
      error.column = pos.column;
    }
    const id = `${error.line}:${error.column}:${error.path}:${error.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    errors.push(error);
  }
  return sortConfigErrors(errors);
}

/** By line, then column; errors without a position last. The sort is stable, so checks keep their order on a tie. */
export function sortConfigErrors(errors: ConfigError[]): ConfigError[] {
  const key = (e: ConfigError) => [e.line ?? Number.POSITIVE_INFINITY, e.column ?? 0] as const;
  return errors.sort((a, b) => {
    const [la, ca] = key(a);
    const [lb, cb] = key(b);
    return la - lb || ca - cb;
  });
}
