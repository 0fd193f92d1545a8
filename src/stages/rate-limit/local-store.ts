import { Cell } from './algorithms.js';

/**
 * The in-process store of one limit: key → cell, bounded. Lookups are one Map.get; a new key costs one small
 * object. At `maxKeys`, room is made first from cells that are as good as new (`fresh` passed: forgetting them
 * changes no decision), at most one sweep a second; if the map is still full (a flood of distinct live keys),
 * the oldest keys by first use are forgotten, a 64th of the cap at a time. A forgotten live key starts again
 * with a full budget, so at the cap the limit errs on the lenient side for the oldest keys rather than refusing
 * new ones: size `maxKeys` above the number of clients active within one window.
 */
export class LocalStore {
  readonly #cells = new Map<string, Cell>();
  #maxKeys: number;
  #lastSweep = Number.NEGATIVE_INFINITY;
  /** Live keys forgotten at the cap (a metric: a non-zero value means maxKeys is too small). */
  evicted = 0;

  constructor(maxKeys: number) {
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#cells.size;
  }

  /** The cap can change on reload without losing the state. */
  set maxKeys(n: number) {
    this.#maxKeys = n;
  }

  get(key: string): Cell | undefined {
    return this.#cells.get(key);
  }

  /** The cell for `key`, made (and room made for it) when there is none. */
  cell(key: string, now: number): Cell {
    let c = this.#cells.get(key);
    if (c !== undefined) return c;
    if (this.#cells.size >= this.#maxKeys) this.#makeRoom(now);
    c = new Cell();
    this.#cells.set(key, c);
    return c;
  }

  #makeRoom(now: number): void {
    const cells = this.#cells;
    if (now - this.#lastSweep >= 1000) {
      this.#lastSweep = now;
      // Deleting the entry being visited is safe in a Map iteration.
      for (const [k, c] of cells) if (c.fresh <= now) cells.delete(k);
    }
    if (cells.size < this.#maxKeys) return;
    let n = Math.max(1, this.#maxKeys >> 6, cells.size - this.#maxKeys + 1);
    for (const [k, c] of cells) {
      cells.delete(k);
      if (c.fresh > now) this.evicted++;
      if (--n === 0) break;
    }
  }
}
