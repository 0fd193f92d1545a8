import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';

/**
 * DNS discovery of a service's endpoints: A/AAAA records of a hostname (with a configured port), or SRV records
 * (which give targets and ports). Refreshes follow the records' TTL, clamped to [minRefresh, maxRefresh].
 *
 * Contract with the caller:
 * - `start()` resolves with the first answer. That first set is NOT also reported through `onChange`; every
 *   later change of `current` is (including the first set when it arrives only after `start()` rejected).
 * - `onChange` fires only when the sorted address set differs from the last one.
 * - A failed refresh never drops addresses: `current` keeps the last good set and `onError` is called. An answer
 *   that is legitimately empty (NXDOMAIN, or NOERROR without records, after having resolved before) is treated
 *   the same way: a name that vanishes from DNS is far more often a DNS mishap (a botched zone push, a split
 *   horizon) than a deliberate removal of every instance, and an empty set would fail every request. So the last
 *   good set stays and the condition is reported through `onError`, on every refresh while it lasts.
 * - The first failure rejects `start()` and is not also passed to `onError`; the retries that follow every
 *   `failureRefresh` call `onError` while they keep failing, and `onChange` once one succeeds.
 */

export interface ResolvedAddress {
  address: string;
  port: number;
  family: 4 | 6;
  /** SRV only: the record's target host name (the Host an upstream expects). Absent for A/AAAA discovery. */
  target?: string;
  /** SRV only: the record's priority (lower is preferred). Absent for A/AAAA discovery. */
  priority?: number;
  /** SRV only: the record's weight (relative share within a priority). Absent for A/AAAA discovery. */
  weight?: number;
}

export interface DnsTarget {
  hostname: string;
  /** undefined → SRV lookup on hostname gives ports and targets. */
  port: number | undefined;
  family: 'any' | 4 | 6;
}

export interface DnsDiscoveryOptions {
  target: DnsTarget;
  /** ms, default 1000 */
  minRefresh: number;
  /** ms, default 300_000 */
  maxRefresh: number;
  /** ms, default 5000 */
  failureRefresh: number;
  /**
   * ms between SRV refreshes, default 30_000 (clamped to [minRefresh, maxRefresh]). Node's resolver does not
   * expose SRV record TTLs, so SRV sets refresh on this fixed period, or sooner when the targets' A/AAAA records
   * have a shorter TTL.
   */
  srvRefresh?: number;
  /** Tests inject one pointed at the test server. Without it a private Resolver on the system's servers is used. */
  resolver?: dnsPromises.Resolver;
  /** DNS servers (`ip` or `ip:port`) for the private Resolver; absent: the system's. */
  servers?: readonly string[];
}

export const DEFAULT_SRV_REFRESH = 30_000;

/** DNS answers that mean "no such records", as opposed to a failure to get an answer. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

interface FamilyAnswer {
  addrs: ResolvedAddress[];
  /** Smallest TTL in seconds; undefined when there were no records. */
  ttl: number | undefined;
}

interface Answer {
  addrs: ResolvedAddress[];
  /** The refresh delay in ms before clamping. */
  refreshIn: number;
  /** A problem that did not fail the resolution (one family failed, the other answered). */
  partial: Error | undefined;
}

export class DnsDiscovery {
  readonly #o: DnsDiscoveryOptions;
  readonly #onChange: (addrs: readonly ResolvedAddress[]) => void;
  readonly #onError: (err: Error) => void;
  readonly #resolver: dnsPromises.Resolver;
  readonly #ownResolver: boolean;

  #current: readonly ResolvedAddress[] = Object.freeze([]);
  #key = '';
  #resolvedOnce = false;
  #started: Promise<readonly ResolvedAddress[]> | undefined;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** Last good addresses per family (A/AAAA discovery), reused when only that family's query fails. */
  #lastByFamily: { 4: ResolvedAddress[]; 6: ResolvedAddress[] } = { 4: [], 6: [] };

  constructor(
    o: DnsDiscoveryOptions,
    onChange: (addrs: readonly ResolvedAddress[]) => void,
    onError: (err: Error) => void,
  ) {
    this.#o = o;
    this.#onChange = onChange;
    this.#onError = onError;
    this.#ownResolver = o.resolver === undefined;
    this.#resolver = o.resolver ?? new dnsPromises.Resolver({ timeout: 2000, tries: 2 });
    if (o.resolver === undefined && o.servers !== undefined) this.#resolver.setServers([...o.servers]);
  }

  get current(): readonly ResolvedAddress[] {
    return this.#current;
  }

  start(): Promise<readonly ResolvedAddress[]> {
    if (this.#started) return this.#started;
    this.#stopped = false;
    this.#started = this.#first();
    return this.#started;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    // Only a resolver of our own may be cancelled: an injected one may be shared.
    if (this.#ownResolver) this.#resolver.cancel();
  }

  async #first(): Promise<readonly ResolvedAddress[]> {
    const { hostname, port } = this.#o.target;
    const literal = isIP(stripBrackets(hostname));
    if (literal) {
      // No DNS for IP literals: the address is the answer, forever.
      if (port === undefined) throw new Error(`an SRV lookup needs a hostname, not the address ${hostname}`);
      this.#accept([{ address: stripBrackets(hostname), port, family: literal as 4 | 6 }]);
      this.#resolvedOnce = true;
      return this.#current;
    }
    try {
      const answer = await this.#resolve();
      if (this.#stopped)
        throw new Error(`DNS: discovery of ${describe(this.#o.target)} stopped before an answer`);
      if (answer.addrs.length === 0) throw new Error(`DNS: no addresses for ${describe(this.#o.target)}`);
      this.#accept(answer.addrs);
      this.#resolvedOnce = true;
      if (answer.partial) this.#report(answer.partial);
      this.#schedule(this.#clamp(answer.refreshIn));
      return this.#current;
    } catch (err) {
      if (!this.#stopped) this.#schedule(this.#o.failureRefresh);
      throw wrap(err, this.#o.target);
    }
  }

  async #refresh(): Promise<void> {
    let answer: Answer;
    try {
      answer = await this.#resolve();
    } catch (err) {
      if (this.#stopped) return;
      this.#report(wrap(err, this.#o.target));
      this.#schedule(this.#o.failureRefresh);
      return;
    }
    if (this.#stopped) return;
    if (answer.addrs.length === 0) {
      // Legitimately empty: keep the last good set (see the class comment) and retry at the failure pace.
      this.#report(new Error(`DNS: no addresses for ${describe(this.#o.target)}; keeping the last good set`));
      this.#schedule(this.#o.failureRefresh);
      return;
    }
    if (answer.partial) this.#report(answer.partial);
    const changed = this.#accept(answer.addrs);
    const wasFirst = !this.#resolvedOnce;
    this.#resolvedOnce = true;
    this.#schedule(this.#clamp(answer.refreshIn));
    if (changed || wasFirst) this.#safe(() => this.#onChange(this.#current));
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#refresh().catch((err: unknown) => this.#report(wrap(err, this.#o.target)));
    }, ms);
    this.#timer.unref();
  }

  #clamp(ms: number): number {
    return Math.min(this.#o.maxRefresh, Math.max(this.#o.minRefresh, ms));
  }

  /** Sets `current` (sorted, frozen); true when the set differs from the previous one. */
  #accept(addrs: ResolvedAddress[]): boolean {
    const unique = new Map<string, ResolvedAddress>();
    for (const a of addrs) unique.set(keyOf(a), a);
    const sorted = [...unique.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const key = sorted.map(([k]) => k).join(',');
    if (key === this.#key) return false;
    this.#key = key;
    this.#current = Object.freeze(sorted.map(([, a]) => Object.freeze({ ...a })));
    return true;
  }

  #report(err: Error): void {
    if (this.#stopped) return;
    this.#safe(() => this.#onError(err));
  }

  /** Callbacks run from timers: a throwing one must not become an unhandled rejection. */
  #safe(fn: () => void): void {
    try {
      fn();
    } catch {
      // Ignored on purpose: the caller's callback is its own business.
    }
  }

  async #resolve(): Promise<Answer> {
    const { hostname, port, family } = this.#o.target;
    if (port !== undefined) {
      const [a4, a6] = await Promise.all([
        family === 6 ? skipped() : settle(this.#lookup(hostname, 4, port)),
        family === 4 ? skipped() : settle(this.#lookup(hostname, 6, port)),
      ]);
      return this.#mergeFamilies(a4, a6);
    }
    return this.#resolveSrv(hostname, family);
  }

  /**
   * Merges the A and AAAA outcomes. A family answering "no such records" simply contributes nothing (ENODATA on
   * AAAA is normal). A family that failed outright (timeout, refused) while the other answered keeps its last
   * good addresses, so that a flaky AAAA query does not churn the endpoint set, and is reported as partial.
   */
  #mergeFamilies(a4: Outcome<FamilyAnswer>, a6: Outcome<FamilyAnswer>): Answer {
    if (a4.status !== 'fulfilled' && a6.status !== 'fulfilled') {
      // Nothing answered: a hard failure wins over "no records" for the message; both fail the resolution.
      const rejected = [a4, a6].filter((r): r is Rejected => r.status === 'rejected');
      const hard = rejected.find((r) => !isNoRecords(r.reason));
      throw (hard ?? rejected[0])?.reason ?? new Error('no address family to resolve');
    }
    const addrs: ResolvedAddress[] = [];
    let ttl: number | undefined;
    let partial: Error | undefined;
    for (const [fam, r] of [
      [4, a4],
      [6, a6],
    ] as const) {
      if (r.status === 'fulfilled') {
        this.#lastByFamily[fam] = r.value.addrs;
        addrs.push(...r.value.addrs);
        if (r.value.ttl !== undefined) ttl = ttl === undefined ? r.value.ttl : Math.min(ttl, r.value.ttl);
      } else if (r.status === 'rejected') {
        if (isNoRecords(r.reason)) {
          this.#lastByFamily[fam] = [];
        } else {
          addrs.push(...this.#lastByFamily[fam]);
          partial = wrap(r.reason, this.#o.target);
        }
      }
    }
    // A partial failure refreshes at the failure pace so that the failing family is retried soon.
    const refreshIn = partial ? this.#o.failureRefresh : ttl === undefined ? this.#o.minRefresh : ttl * 1000;
    return { addrs, refreshIn, partial };
  }

  async #resolveSrv(hostname: string, family: 'any' | 4 | 6): Promise<Answer> {
    const records = await this.#resolver.resolveSrv(hostname);
    const srvRefresh = this.#o.srvRefresh ?? DEFAULT_SRV_REFRESH;
    let refreshIn = srvRefresh;
    const addrs: ResolvedAddress[] = [];
    // Targets are resolved in parallel; a target without addresses is skipped, any other failure fails the
    // refresh as a whole (the last good set is kept) rather than silently dropping that target's instances.
    const perTarget = await Promise.all(
      records.map(async (rec) => {
        const extra = { priority: rec.priority, weight: rec.weight, target: rec.name };
        const lit = isIP(rec.name);
        if (lit) {
          if (family !== 'any' && family !== lit) return { addrs: [], ttl: undefined };
          return {
            addrs: [{ address: rec.name, port: rec.port, family: lit as 4 | 6, ...extra }],
            ttl: undefined,
          };
        }
        const [a4, a6] = await Promise.all([
          family === 6 ? skipped() : settle(this.#lookup(rec.name, 4, rec.port)),
          family === 4 ? skipped() : settle(this.#lookup(rec.name, 6, rec.port)),
        ]);
        const out: ResolvedAddress[] = [];
        let ttl: number | undefined;
        for (const r of [a4, a6]) {
          if (r.status === 'fulfilled') {
            out.push(...r.value.addrs.map((a) => ({ ...a, ...extra })));
            if (r.value.ttl !== undefined) ttl = ttl === undefined ? r.value.ttl : Math.min(ttl, r.value.ttl);
          } else if (r.status === 'rejected' && !isNoRecords(r.reason)) {
            throw r.reason;
          }
        }
        return { addrs: out, ttl };
      }),
    );
    for (const t of perTarget) {
      addrs.push(...t.addrs);
      if (t.ttl !== undefined) refreshIn = Math.min(refreshIn, t.ttl * 1000);
    }
    return { addrs, refreshIn, partial: undefined };
  }

  async #lookup(name: string, family: 4 | 6, port: number): Promise<FamilyAnswer> {
    const records =
      family === 4
        ? await this.#resolver.resolve4(name, { ttl: true })
        : await this.#resolver.resolve6(name, { ttl: true });
    let ttl: number | undefined;
    for (const r of records) ttl = ttl === undefined ? r.ttl : Math.min(ttl, r.ttl);
    return { addrs: records.map((r) => ({ address: r.address, port, family })), ttl };
  }
}

type Outcome<T> = { status: 'fulfilled'; value: T } | Rejected | { status: 'skipped' };
type Rejected = { status: 'rejected'; reason: unknown };

function settle<T>(p: Promise<T>): Promise<Outcome<T>> {
  return p.then(
    (value) => ({ status: 'fulfilled', value }) as const,
    (reason: unknown) => ({ status: 'rejected', reason }) as const,
  );
}

function skipped(): Promise<{ status: 'skipped' }> {
  return Promise.resolve({ status: 'skipped' });
}

function isNoRecords(err: unknown): boolean {
  return (
    typeof (err as { code?: unknown })?.code === 'string' && NO_RECORDS.has((err as { code: string }).code)
  );
}

function keyOf(a: ResolvedAddress): string {
  return `${a.family}|${a.address}|${a.port}|${a.priority ?? ''}|${a.weight ?? ''}|${a.target ?? ''}`;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function describe(t: DnsTarget): string {
  return t.port === undefined ? `SRV ${t.hostname}` : `${t.hostname}:${t.port}`;
}

function wrap(err: unknown, target: DnsTarget): Error {
  if (err instanceof Error && err.message.startsWith('DNS: ')) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new Error(`DNS: resolving ${describe(target)} failed: ${detail}`, { cause: err });
}
