/**
 * @pm: many phrases, one pass (Aho-Corasick), case-insensitive as ModSecurity's. Built once per rule at load; a
 * match reports the phrase found first, for `capture`.
 */
interface Node {
  readonly next: Map<number, Node>;
  fail: Node | undefined;
  /** The longest phrase ending here (directly or through fail links), or undefined. */
  out: string | undefined;
}

const node = (): Node => ({ next: new Map(), fail: undefined, out: undefined });

export class PhraseMatcher {
  readonly #root: Node = node();
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
  }

  /** The first phrase found in `s`, or undefined. */
  find(s: string): string | undefined {
    const root = this.#root;
    let n = root;
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 65 && c <= 90) c += 32;
      let m = n.next.get(c);
      while (m === undefined && n !== root) {
        n = n.fail!;
        m = n.next.get(c);
      }
      n = m ?? root;
      if (n.out !== undefined) return n.out;
    }
    return undefined;
  }
}
