/**
 * @pm: many phrases, one pass (Aho-Corasick), case-insensitive as ModSecurity's. Built once per rule at load; a
 * match reports the phrase found first, for `capture`.
 */
interface Node {
  readonly next: Map<number, Node>;
  fail: Node | undefined;
  /** The longest phrase ending here (directly or through fail links), or undefined. */
  out: string | undefined;
  /** The node's row in the table (breadth-first order). */
  id: number;
}

const node = (): Node => ({ next: new Map(), fail: undefined, out: undefined, id: 0 });

interface Dfa {
  /** 16-bit entries while the states fit (half the memory), else 32-bit. */
  readonly delta: Uint16Array | Int32Array;
  readonly width: number;
  readonly classes: Uint16Array;
  readonly wide: ReadonlyMap<number, number>;
  readonly outs: readonly (string | undefined)[];
}

export class PhraseMatcher {
  readonly #root: Node = node();
  readonly #dfa: Dfa;
  readonly size: number;

  constructor(phrases: readonly string[]) {
    const root = this.#root;
    let size = 0;
    for (const raw of phrases) {
      const p = raw.toLowerCase();
      if (p === '') continue;
      let n = root;
      for (let i = 0; i < p.length; i++) {
        const c = p.charCodeAt(i);
        let m = n.next.get(c);
        if (m === undefined) {
          m = node();
          n.next.set(c, m);
        }
        n = m;
      }
      n.out ??= p;
      size++;
    }
    this.size = size;
    // Breadth-first: each node's fail link is the longest proper suffix that is also a prefix.
    const queue: Node[] = [];
    for (const child of root.next.values()) {
      child.fail = root;
      queue.push(child);
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const n = queue[qi]!;
      for (const [c, child] of n.next) {
        let f = n.fail;
        while (f !== undefined && !f.next.has(c)) f = f.fail;
        child.fail = f === undefined ? root : f.next.get(c)!;
        child.out ??= child.fail.out;
        queue.push(child);
      }
    }
    this.#dfa = this.#compile();
  }

  /** The first phrase found in `s`, or undefined. */
  find(s: string): string | undefined {
    const { delta, width, classes, wide, outs } = this.#dfa;
    let state = 0;
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 65 && c <= 90) c += 32;
      const k = c < 256 ? classes[c]! : (wide.get(c) ?? 0);
      state = delta[state * width + k]!;
      const out = outs[state];
      if (out !== undefined) return out;
    }
    return undefined;
  }

  /**
   * The automaton as a table: characters that occur in no phrase share class 0 (they lead back to the start),
   * the others get a class each; delta[state * width + class] is the next state with the fail links folded in,
   * so a character costs one array read (built at load, from the trie).
   */
  #compile(): Dfa {
    const classes = new Uint16Array(256);
    const wide = new Map<number, number>();
    const order: Node[] = [this.#root];
    for (let qi = 0; qi < order.length; qi++) for (const child of order[qi]!.next.values()) order.push(child);
    order.forEach((n, i) => {
      n.id = i;
    });
    let width = 1;
    for (const n of order) {
      for (const c of n.next.keys()) {
        if (c < 256) {
          if (classes[c] === 0) classes[c] = width++;
        } else if (!wide.has(c)) wide.set(c, width++);
      }
    }
    if (width > 256) {
      // Phrases over more than 255 distinct characters: every byte gets its own column.
      return this.#compileWide(order);
    }
    const delta =
      order.length <= 0xffff ? new Uint16Array(order.length * width) : new Int32Array(order.length * width);
    const outs: (string | undefined)[] = order.map((n) => n.out);
    const classOf = (c: number) => (c < 256 ? classes[c]! : wide.get(c)!);
    // Breadth-first, so a node's fail state's row is complete before the node's.
    order.forEach((n, i) => {
      const row = i * width;
      const failRow = n.fail === undefined ? -1 : n.fail.id * width;
      for (let k = 0; k < width; k++) delta[row + k] = failRow < 0 ? 0 : delta[failRow + k]!;
      for (const [c, child] of n.next) delta[row + classOf(c)] = child.id;
    });
    return { delta, width, classes, wide, outs };
  }

  #compileWide(order: Node[]): Dfa {
    const classes = new Uint16Array(256);
    const wide = new Map<number, number>();
    let width = 1;
    for (let c = 0; c < 256; c++) classes[c] = width++;
    for (const n of order) for (const c of n.next.keys()) if (c >= 256 && !wide.has(c)) wide.set(c, width++);
    const delta =
      order.length <= 0xffff ? new Uint16Array(order.length * width) : new Int32Array(order.length * width);
    const outs: (string | undefined)[] = order.map((n) => n.out);
    order.forEach((n, i) => {
      const row = i * width;
      const failRow = n.fail === undefined ? -1 : n.fail.id * width;
      for (let k = 0; k < width; k++) delta[row + k] = failRow < 0 ? 0 : delta[failRow + k]!;
      for (const [c, child] of n.next) delta[row + (c < 256 ? classes[c]! : wide.get(c)!)] = child.id;
    });
    return { delta, width, classes, wide, outs };
  }
}
