/**
 * A radix tree over path characters. Literal runs are compared with charCodeAt, so a lookup allocates nothing and
 * takes time in the length of the path, not in the number of routes. A parameter node takes one non-empty segment.
 */

const SLASH = 47;
/** Above this many children a node gets a lookup table indexed by character code. */
const TABLE_THRESHOLD = 8;
const TABLE_SIZE = 128;

export class PathNode<P> {
  label: string;
  readonly isParam: boolean;
  /** First character code of each static child, parallel to `children`. */
  codes: number[] = [];
  children: PathNode<P>[] = [];
  table: (PathNode<P> | undefined)[] | null = null;
  param: PathNode<P> | null = null;
  /** What ends here: a template leaf or the routes of one prefix. */
  payload: P | null = null;

  constructor(label: string, isParam: boolean) {
    this.label = flat(label);
    this.isParam = isParam;
  }
}

export function createRoot<P>(): PathNode<P> {
  return new PathNode<P>('', false);
}

/**
 * Inserts a path made of literal runs and parameters (`null`) and returns the node where it ends, so the caller
 * can attach its payload. Equal shapes (`/a/:x` and `/a/:y`) end at the same node.
 */
export function insertTokens<P>(root: PathNode<P>, tokens: readonly (string | null)[]): PathNode<P> {
  let node = root;
  for (const token of tokens) {
    if (token === null) {
      node.param ??= new PathNode<P>('', true);
      node = node.param;
    } else {
      node = insertLiteral(node, token);
    }
  }
  return node;
}

function insertLiteral<P>(parent: PathNode<P>, s: string): PathNode<P> {
  let node = parent;
  let rest = s;
  while (rest !== '') {
    const i = node.codes.indexOf(rest.charCodeAt(0));
    if (i < 0) {
      const leaf = new PathNode<P>(rest, false);
      node.codes.push(rest.charCodeAt(0));
      node.children.push(leaf);
      return leaf;
    }
    let child = node.children[i]!;
    const common = commonPrefixLength(child.label, rest);
    if (common < child.label.length) {
      // Split the child: the shared part becomes a new node holding the old child under its remainder.
      const mid = new PathNode<P>(child.label.slice(0, common), false);
      child.label = flat(child.label.slice(common));
      mid.codes.push(child.label.charCodeAt(0));
      mid.children.push(child);
      node.children[i] = mid;
      child = mid;
    }
    node = child;
    rest = rest.slice(common);
  }
  return node;
}

/**
 * A sequential copy of the string. Labels built by concatenation or slicing are cons or sliced strings, which
 * charCodeAt reaches through an extra indirection on every lookup; a flat copy is read directly.
 */
function flat(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Builds lookup tables for wide nodes; call once after the last insert. */
export function finalizeTree<P>(node: PathNode<P>): void {
  if (node.children.length > TABLE_THRESHOLD && node.codes.every((c) => c < TABLE_SIZE)) {
    const table: (PathNode<P> | undefined)[] = new Array(TABLE_SIZE).fill(undefined);
    node.children.forEach((child, i) => {
      table[node.codes[i]!] = child;
    });
    node.table = table;
  }
  for (const child of node.children) finalizeTree(child);
  if (node.param !== null) finalizeTree(node.param);
}

function childFor<P>(node: PathNode<P>, code: number): PathNode<P> | undefined {
  const table = node.table;
  if (table !== null) return code < TABLE_SIZE ? table[code] : undefined;
  const codes = node.codes;
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] === code) return node.children[i];
  }
  return undefined;
}

/** Scratch space for collectTemplates, owned by one router and reused by every match. */
export class TemplateScratch<P> {
  /** The payload of every template found. */
  readonly leaves: P[] = [];
  /** Start and end of each parameter on the branch being walked. */
  readonly stack: number[] = [];
  /** Start and end of each parameter of each leaf found: leaf j's start at `found[j * stride + 2 * p]`. */
  readonly found: number[] = [];
  /** Twice the most parameters of any template in the tree being walked. */
  stride = 0;
}

/**
 * Finds every template that matches the whole path, with where its parameters are, and returns how many. All of
 * them are wanted, not only the first: the order between templates is decided by precedence, not by the shape of
 * the tree, and a template whose route fails on headers hands over to the next.
 */
export function collectTemplates<P>(
  node: PathNode<P>,
  path: string,
  pos: number,
  depth: number,
  n: number,
  scratch: TemplateScratch<P>,
): number {
  const len = path.length;
  if (node.isParam) {
    let end = pos;
    while (end < len && path.charCodeAt(end) !== SLASH) end++;
    if (end === pos) return n;
    scratch.stack[depth] = pos;
    scratch.stack[depth + 1] = end;
    depth += 2;
    pos = end;
  } else {
    const label = node.label;
    const labelLength = label.length;
    if (len - pos < labelLength) return n;
    for (let i = 0; i < labelLength; i++) {
      if (path.charCodeAt(pos + i) !== label.charCodeAt(i)) return n;
    }
    pos += labelLength;
  }
  if (pos === len) {
    if (node.payload === null) return n;
    scratch.leaves[n] = node.payload;
    const stack = scratch.stack;
    const found = scratch.found;
    const base = n * scratch.stride;
    for (let i = 0; i < depth; i++) found[base + i] = stack[i]!;
    return n + 1;
  }
  const child = childFor(node, path.charCodeAt(pos));
  if (child !== undefined) n = collectTemplates(child, path, pos, depth, n, scratch);
  if (node.param !== null) n = collectTemplates(node.param, path, pos, depth, n, scratch);
  return n;
}

/**
 * Writes to `out` the payload of every prefix that matches the path on a segment boundary, shortest first, and
 * returns how many. Prefixes hold no parameters, so this is one walk down without backtracking.
 */
export function collectPrefixes<P>(root: PathNode<P>, path: string, out: P[]): number {
  const len = path.length;
  let node = root;
  let pos = 0;
  let n = 0;
  for (;;) {
    const label = node.label;
    const labelLength = label.length;
    if (len - pos < labelLength) return n;
    for (let i = 0; i < labelLength; i++) {
      if (path.charCodeAt(pos + i) !== label.charCodeAt(i)) return n;
    }
    pos += labelLength;
    // On a boundary: the path ends here, a new segment starts here, or the prefix itself ends with `/` (only `/`).
    if (
      node.payload !== null &&
      (pos === len || path.charCodeAt(pos) === SLASH || path.charCodeAt(pos - 1) === SLASH)
    ) {
      out[n++] = node.payload;
    }
    if (pos === len) return n;
    const child = childFor(node, path.charCodeAt(pos));
    if (child === undefined) return n;
    node = child;
  }
}

/**
 * Host wildcards live in a tree of reversed suffixes (`*.example.com` is inserted as `moc.elpmaxe.`), walked from
 * the last character of the host backwards. Writes the payload of every wildcard that covers the host, shortest
 * suffix first, and returns how many. A suffix covers the host only with at least one character in front of it.
 */
export function collectSuffixes<P>(root: PathNode<P>, host: string, out: P[]): number {
  const last = host.length - 1;
  let node = root;
  let pos = 0;
  let n = 0;
  for (;;) {
    const label = node.label;
    const labelLength = label.length;
    if (last + 1 - pos < labelLength) return n;
    for (let i = 0; i < labelLength; i++) {
      if (host.charCodeAt(last - pos - i) !== label.charCodeAt(i)) return n;
    }
    pos += labelLength;
    if (pos > last) return n;
    if (node.payload !== null) out[n++] = node.payload;
    const child = childFor(node, host.charCodeAt(last - pos));
    if (child === undefined) return n;
    node = child;
  }
}
