import type { Balancer } from './balancer.js';
import type { Endpoint } from './endpoint.js';

export interface EndpointSetOptions {
  /** The gateway's zone; '' = no locality preference. */
  localZone: string;
  /** Percent 0-100, default 50: below this normalized health (see the class comment), ignore health. */
  panicThreshold: number;
  /** Default 1.4 (Envoy): a group carries all traffic while available × overprovisioning >= its size. */
  overprovisioning: number;
}

/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A service's endpoints and the subset its balancer balances over.
 *
 * Which endpoints are eligible:
 *
 * 1. Groups. Endpoints are grouped by priority, then, inside a priority, the endpoints of the gateway's
 *    zone (`localZone`) come before the others: groups in order (priority 0 local, priority 0 other zones,
 *    priority 1 local, ...). When `localZone` is '' there is no zone preference: one group per priority.
 * 2. Spill-over. The groups are walked in order, adding each group's available endpoints (healthy and not
 *    ejected). The walk stops as soon as available × overprovisioning >= the size of the first group
 *    (healthy capacity as large as the preferred group's; with 1.4, 72% of it is enough), else it goes on
 *    to the next group. So traffic stays in the local zone of priority 0 while enough of it is up, and
 *    spills to other zones, then to the next priorities, when too much of it is down.
 * 3. Panic. Health is normalized as Envoy does: each group adds min(100, its available % × overprovisioning)
 *    and the total is capped at 100, so a healthy backup group keeps the service out of panic. When that total
 *    is below panicThreshold, or nothing at all is available, health is ignored: every endpoint of the
 *    groups the walk reached (all their members, available or not) is eligible. With that few endpoints up, health checks or outlier detection are
 *    probably wrong, or the few healthy ones would be overloaded; spreading over everything serves more.
 *
 * So the eligible set is never empty while the service has endpoints. Eligibility is recomputed only on a
 * change: each endpoint's watcher hook (health checks, outlier detection), and a timer at the earliest
 * time an ejection ends. The balancer is updated only when the eligible list actually changed.
 */
export class EndpointSet {
  readonly #all: readonly Endpoint[];
  readonly #groups: readonly (readonly Endpoint[])[];
  readonly #balancer: Balancer;
  readonly #panicThreshold: number;
  readonly #overprovisioning: number;
  readonly #now: () => number;
  readonly #hook: () => void;
  #eligible: readonly Endpoint[] = [];
  #panic = false;
  #updated = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined = undefined;
  #timerAt = 0;

  constructor(
    endpoints: readonly Endpoint[],
    balancer: Balancer,
    o: EndpointSetOptions,
    now: () => number = () => performance.now(),
  ) {
    this.#all = Object.freeze(endpoints.slice());
    this.#balancer = balancer;
    this.#panicThreshold = o.panicThreshold;
    this.#overprovisioning = o.overprovisioning > 0 ? o.overprovisioning : 1.4;
    this.#now = now;

    const zone = o.localZone;
    const byKey = new Map<number, Endpoint[]>();
    for (const ep of this.#all) {
      const key = ep.priority * 2 + (zone === '' || ep.zone === zone ? 0 : 1);
      const group = byKey.get(key);
      if (group === undefined) byKey.set(key, [ep]);
      else group.push(ep);
    }
    this.#groups = [...byKey.keys()].sort((a, b) => a - b).map((k) => byKey.get(k)!);

    this.#hook = () => this.recompute();
    for (const ep of this.#all) ep.watch(this.#hook);
    this.recompute();
  }

  get all(): readonly Endpoint[] {
    return this.#all;
  }

  /** The endpoints the balancer currently balances over (for admin/status and tests). */
  get eligible(): readonly Endpoint[] {
    return this.#eligible;
  }

  get panic(): boolean {
    return this.#panic;
  }

  pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    return this.#balancer.pick(hash, avoid);
  }

  /** Recompute eligibility; also called through each endpoint's watcher hook (the constructor installs it). */
  recompute(): void {
    if (this.#closed) return;
    const now = this.#now();
    const all = this.#all;
    let nextExpiry = Number.POSITIVE_INFINITY;
    for (const ep of all) {
      if (!ep.available(now) && ep.healthy && ep.ejectedUntil < nextExpiry) nextExpiry = ep.ejectedUntil;
    }

    const groups = this.#groups;
    const need = groups.length > 0 ? groups[0]!.length : 0;
    const eligible: Endpoint[] = [];
    let reached = 0;
    while (reached < groups.length) {
      for (const ep of groups[reached++]!) if (ep.available(now)) eligible.push(ep);
      if (eligible.length * this.#overprovisioning >= need) break;
    }
    // Envoy's normalized health: each priority group counts up to 100 (its available share × overprovisioning)
    // and the sum is capped at 100, so a healthy backup priority keeps the service out of panic.
    let health = 0;
    for (const g of groups) {
      let up = 0;
      for (const ep of g) if (ep.available(now)) up++;
      health += Math.min(100, ((up * 100) / g.length) * this.#overprovisioning);
    }
    const panic = all.length > 0 && (Math.min(100, health) < this.#panicThreshold || eligible.length === 0);
    if (panic) {
      eligible.length = 0;
      for (let g = 0; g < reached; g++) for (const ep of groups[g]!) eligible.push(ep);
    }

    this.#panic = panic;
    if (!this.#updated || !sameList(eligible, this.#eligible)) {
      this.#eligible = Object.freeze(eligible);
      this.#updated = true;
      this.#balancer.update(this.#eligible);
    }
    this.#schedule(nextExpiry, now);
  }

  /** Unregister the watcher hooks (on reload when the set is replaced). */
  close(): void {
    this.#closed = true;
    this.#schedule(Number.POSITIVE_INFINITY, 0);
    for (const ep of this.#all) ep.unwatch(this.#hook);
  }

  /** Recompute when the earliest ejection of a healthy endpoint ends. */
  #schedule(at: number, now: number): void {
    if (at === this.#timerAt && this.#timer !== undefined) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at;
    if (at === Number.POSITIVE_INFINITY) return;
    // + 1: the timer clock's granularity is a millisecond; being a little late is harmless, early is not.
    const delay = Math.min(Math.max(0, at - now) + 1, MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.recompute();
    }, delay);
    this.#timer.unref();
  }
}

function sameList(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
