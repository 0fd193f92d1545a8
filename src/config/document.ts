/**
 * Parses a YAML or JSON config text (JSON is read as YAML 1.2, so both keep node positions) into plain data plus a
 * locator that maps a config path back to a line and column.
 */
import {
  type Document,
  isAlias,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type YAMLError,
  type YAMLMap,
} from 'yaml';
import {
  type ConfigError,
  type ConfigIssue,
  type ConfigPath,
  formatConfigPath,
  type Locator,
  locateIssues,
  type PathSegment,
  sortConfigErrors,
} from './errors.js';

/**
 * Aliases are allowed (with `<<` merge keys, they keep repeated blocks short), but a billion-laughs document
 * expands exponentially; the yaml package counts expanded aliases and stops beyond this.
 */
export const MAX_ALIAS_COUNT = 100;

export type ParsedText = { ok: true; data: unknown; locate: Locator } | { ok: false; errors: ConfigError[] };

export function parseConfigText(text: string, file: string): ParsedText {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    merge: true,
    strict: true,
  });
  const position = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const locate: Locator = (path, key) => {
    const offset = findOffset(doc, path, key);
    return offset === undefined ? undefined : position(offset);
  };
  const atOffset = (issue: ConfigIssue, offset: number): ConfigError => ({
    file,
    ...position(offset),
    path: formatConfigPath(issue.path),
    message: issue.message,
  });

  // Warnings too: an unknown tag such as `!secret` would otherwise quietly become a plain string.
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    const errors = problems.map((e) => atOffset(yamlIssue(e, doc, text), e.pos[0]));
    return { ok: false, errors: sortConfigErrors(errors) };
  }

  // YAML 1.1 reads `yes`, `on` and `0777` differently; the config language is YAML 1.2 only.
  const directive = doc.directives?.yaml;
  if (directive?.explicit && directive.version !== '1.2') {
    const at = text.indexOf('%YAML');
    const message = `only YAML 1.2 is supported, got a %YAML ${directive.version} directive`;
    return { ok: false, errors: [atOffset({ path: [], message }, Math.max(at, 0))] };
  }

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message =
      err instanceof ReferenceError && /alias/i.test(err.message)
        ? `too many aliases (more than ${MAX_ALIAS_COUNT} expanded); is this a "billion laughs" document?`
        : `cannot read the document: ${err instanceof Error ? err.message : String(err)}`;
    return { ok: false, errors: [atOffset({ path: [], message }, firstAliasOffset(doc) ?? 0)] };
  }
  const issues: ConfigIssue[] = [];
  const data = detach(raw, [], new Set(), issues);
  if (issues.length > 0) return { ok: false, errors: locateIssues(issues, file, locate) };
  return { ok: true, data, locate };
}

function yamlIssue(e: YAMLError, doc: Document, text: string): ConfigIssue {
  const path = pathAtOffset(doc, e.pos[0]);
  switch (e.code) {
    case 'DUPLICATE_KEY': {
      // The path ends at the repeated key when the parser kept it; else read the key from the text.
      const key = path.length > 0 ? String(path.at(-1)) : unquote(keyAt(text, e.pos[0]));
      return { path: path.slice(0, -1), message: `duplicate key ${JSON.stringify(key)}` };
    }
    case 'MULTIPLE_DOCS':
      return {
        path: [],
        message: 'a config file holds one document; remove the second "---" and what follows',
      };
    case 'TAG_RESOLVE_FAILED':
      return { path, message: `${lowerFirst(e.message)}; tags are not supported in config files` };
    default:
      // No path: in a document that does not parse, the tree around the error is a guess; line and column are not.
      return { path: [], message: `syntax error: ${lowerFirst(e.message.replace(/\s+/g, ' '))}` };
  }
}

function keyAt(text: string, offset: number): string {
  return /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^:,}\]\n]*)/.exec(text.slice(offset))?.[1]?.trim() ?? '';
}

function unquote(s: string): string {
  if (/^"(?:[^"\\]|\\.)*"$/.test(s)) {
    try {
      return JSON.parse(s) as string;
    } catch {
      return s;
    }
  }
  if (/^'.*'$/.test(s)) return s.slice(1, -1).replace(/''/g, "'");
  return s;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/**
 * A deep copy of what `toJS` produced: aliases share one object there, and later steps (secret substitution,
 * validation) must see a tree. A recursive alias (`&a [*a]`) becomes an error instead of an endless walk.
 */
function detach(value: unknown, path: PathSegment[], ancestors: Set<object>, issues: ConfigIssue[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.has(value)) {
    issues.push({ path, message: 'recursive alias: this node contains itself' });
    return null;
  }
  ancestors.add(value);
  let copy: unknown;
  if (Array.isArray(value)) {
    copy = value.map((item, i) => detach(item, [...path, i], ancestors, issues));
  } else {
    const obj: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // defineProperty: a `__proto__` key must stay a plain key, never reach the prototype.
      Object.defineProperty(obj, k, {
        value: detach(v, [...path, k], ancestors, issues),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    copy = obj;
  }
  ancestors.delete(value);
  return copy;
}

// ---------- positions ----------

type Resolved = Node | null | undefined;

function deref(doc: Document, node: unknown, depth = 0): Resolved {
  if (isAlias(node)) return depth > 32 ? undefined : deref(doc, node.resolve(doc), depth + 1);
  return isNode(node) ? node : node === null ? null : undefined;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) {
    const v = key.value;
    return typeof v === 'symbol' ? v.description : String(v);
  }
  return undefined;
}

/** The pair for `key`, looking through `<<` merge keys when the map does not hold it itself. */
function findPair(doc: Document, map: YAMLMap, key: string, depth = 0): Pair | undefined {
  let merges: unknown[] | undefined;
  for (const pair of map.items) {
    const k = keyText(pair.key);
    if (k === key) return pair;
    if (k === '<<') (merges ??= []).push(pair.value);
  }
  if (merges === undefined || depth > 8) return undefined;
  for (const m of merges) {
    const source = deref(doc, m);
    const sources = isSeq(source) ? source.items.map((item) => deref(doc, item)) : [source];
    for (const s of sources) {
      if (!isMap(s)) continue;
      const pair = findPair(doc, s, key, depth + 1);
      if (pair) return pair;
    }
  }
  return undefined;
}

/** The offset of the node at `path` (or of its key), or of the nearest ancestor that exists. */
function findOffset(doc: Document, path: ConfigPath, key: boolean): number | undefined {
  let node: Resolved = deref(doc, doc.contents);
  let best: number | undefined = node?.range?.[0];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = findPair(doc, node, String(seg));
      if (!pair) return best;
      const keyOffset = isNode(pair.key) ? pair.key.range?.[0] : undefined;
      const value = deref(doc, pair.value);
      if (last && key) return keyOffset ?? best;
      // An empty value (`path:`) points at its key.
      const valueOffset = isScalar(value) && value.value === null ? undefined : value?.range?.[0];
      best = valueOffset ?? keyOffset ?? best;
      node = value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return best;
      const value = deref(doc, item);
      best = value?.range?.[0] ?? best;
      node = value;
    } else {
      return best;
    }
  }
  return best;
}

/** The config path of the innermost node covering `offset`, for errors the parser reports by offset only. */
function pathAtOffset(doc: Document, offset: number): PathSegment[] {
  const path: PathSegment[] = [];
  let node: unknown = doc.contents;
  const covers = (n: unknown) => {
    const r = isNode(n) ? n.range : undefined;
    return r !== undefined && r !== null && offset >= r[0] && offset <= r[2];
  };
  for (let depth = 0; depth < 1000; depth++) {
    if (isMap(node)) {
      // A pair spans from its key to the end of its value; a tag or anchor before the value belongs to it too.
      const pair = node.items.find((p) => {
        const start = isNode(p.key) ? p.key.range?.[0] : undefined;
        const end =
          (isNode(p.value) ? p.value.range?.[2] : undefined) ??
          (isNode(p.key) ? p.key.range?.[2] : undefined);
        return start !== undefined && end !== undefined && offset >= start && offset <= end;
      });
      if (!pair) break;
      path.push(keyText(pair.key) ?? '?');
      if (!covers(pair.value)) break;
      node = pair.value;
    } else if (isSeq(node)) {
      const i = node.items.findIndex((item) => covers(isPair(item) ? item.key : item));
      if (i < 0) break;
      path.push(i);
      node = node.items[i];
    } else {
      break;
    }
  }
  return path;
}

function firstAliasOffset(doc: Document): number | undefined {
  let found: number | undefined;
  const walk = (n: unknown): void => {
    if (found !== undefined) return;
    if (isAlias(n)) found = n.range?.[0];
    else if (isMap(n)) for (const p of n.items) walk(p.value);
    else if (isSeq(n)) for (const item of n.items) walk(item);
  };
  walk(doc.contents);
  return found;
}
