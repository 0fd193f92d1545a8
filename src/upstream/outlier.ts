import { performance } from 'node:perf_hooks';
import type { Outcome } from '../core/outcome.js';
import type { Endpoint } from './endpoint.js';
import { outlierChannel } from './events.js';

export type OutlierReason = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'success_rate';

export interface OutlierOptions {
  /**
   * Eject after this many consecutive failures of any kind: `http_5xx` and the gateway failures below (Envoy's
   * semantics). A `success` (any status < 500, so 4xx too) resets it. 0 disables. Default 5.
   */
  consecutive5xx: number;
  /**
   * Eject after this many consecutive gateway (locally originated) failures: `connect_refused`,
   * `connect_timeout`, `connect_failed`, `reset`, `timeout`, `protocol_error`. A `success` or an `http_5xx`
   * resets it (the upstream answered). 0 disables. Default 5.
   */
  consecutiveGatewayFailure: number;
  /**
   * Success-rate outliers, evaluated every `interval`: among the endpoints with at least `requestVolume`
   * attempts in the interval, and only when there are at least `minimumHosts` of them, eject those whose success
   * rate is below `mean - stdevFactor * stdev`. Defaults 5, 100, 1.9. `undefined` disables.
   */
  successRate: { minimumHosts: number; requestVolume: number; stdevFactor: number } | undefined;
  /** ms between success-rate evaluations and ejection-multiplier decay steps. Default 10_000. */
  interval: number;
  /** ms; the n-th ejection of an endpoint lasts `baseEjectionTime * n`, capped by `maxEjectionTime`. Default 30_000. */
  baseEjectionTime: number;
  /** ms; the cap on one ejection's duration (raised to `baseEjectionTime` if lower). Default 300_000. */
  maxEjectionTime: number;
  /**
   * At most this percentage of the service's endpoints may be ejected at once, counting the ejection being
   * considered. Whatever the value (even 0), one endpoint may always be ejected when none is (Envoy's semantics):
   * with 3 endpoints and 10%, one can be ejected but not two. Default 10.
   */
  maxEjectionPercent: number;
}

export const defaultOutlierOptions: Readonly<OutlierOptions> = Object.freeze({
  consecutive5xx: 5,
  consecutiveGatewayFailure: 5,
  successRate: Object.freeze({ minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 }),
  interval: 10_000,
  baseEjectionTime: 30_000,
  maxEjectionTime: 300_000,
  maxEjectionPercent: 10,
});

/** One endpoint's outlier-detection status, for admin/status. */
export interface OutlierStatus {
  /** The ejection multiplier: the next ejection lasts baseEjectionTime * (ejections + 1), capped. */
  ejections: number;
  /** performance.now() time the current ejection ends; 0 when not ejected. */
  ejectedUntil: number;
  /** Why it is ejected; undefined when not ejected (or when the ejection was adopted across a reload). */
  reason: OutlierReason | undefined;
}

/** setTimeout's largest delay; a longer ejection re-arms when the timer fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Per-endpoint state, allocated once in the constructor. */
class EndpointState {
  readonly ep: Endpoint;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  /** Ejection multiplier: +1 per ejection (while that still lengthens it), −1 per whole interval spent back. */
  ejections = 0;
  ejected = false;
  /** performance.now() time the current ejection ends; 0 when not ejected. */
  until = 0;
  reason: OutlierReason | undefined = undefined;
  /** When the endpoint came back or its multiplier last decayed: the start of its current healthy interval. */
  decayFrom = 0;
  /** Attempts and successes in the current interval, for the success-rate evaluation. */
  successes = 0;
  total = 0;
  timer: NodeJS.Timeout | undefined = undefined;
  readonly onTimer: () => void;

  constructor(ep: Endpoint, onTimer: (st: EndpointState) => void) {
    this.ep = ep;
    this.onTimer = () => onTimer(this);
  }

  resetCounters(): void {
    this.consecutive5xx = 0;
    this.consecutiveGateway = 0;
    this.successes = 0;
    this.total = 0;
  }
}

/**
 * Passive outlier detection for one service (Envoy style): watches the outcome of every attempt and ejects
 * endpoints that fail consecutively (synchronously, inside `record()`) or whose success rate is a statistical
 * outlier (periodically, in `sweep()`). An ejection sets `ep.ejectedUntil`; a timer returns the endpoint on time
 * (`ep.setEjectedUntil(0)`) even without traffic. State changes are published on `outlierChannel`.
 *
 * An endpoint that is already ejected when the detector is built (Endpoint objects survive reloads) keeps its
 * ejection, with multiplier 1 and reason `undefined`; a stale, expired `ejectedUntil` is cleared.
 */
export class OutlierDetector {
  readonly service: string;
  private readonly o: OutlierOptions;
  private readonly now: () => number;
  private readonly states = new Map<Endpoint, EndpointState>();
  private readonly list: EndpointState[] = [];
  private readonly maxEjectionMs: number;
  private ejectedCount = 0;
  private closed = false;
  private readonly interval: NodeJS.Timeout;

  constructor(
    service: string,
    endpoints: readonly Endpoint[],
    o: OutlierOptions,
    now: () => number = performance.now.bind(performance),
  ) {
    validate(o);
    this.service = service;
    this.o = o;
    this.now = now;
    this.maxEjectionMs = Math.max(o.maxEjectionTime, o.baseEjectionTime);
    const onTimer = (st: EndpointState) => this.expire(st);
    const t = now();
    for (const ep of endpoints) {
      if (this.states.has(ep)) continue;
      const st = new EndpointState(ep, onTimer);
      this.states.set(ep, st);
      this.list.push(st);
      st.decayFrom = t;
      if (ep.ejectedUntil > t) {
        st.ejected = true;
        st.ejections = 1;
        st.until = ep.ejectedUntil;
        this.ejectedCount++;
        this.schedule(st, ep.ejectedUntil - t);
      } else if (ep.ejectedUntil !== 0) {
        ep.setEjectedUntil(0);
      }
    }
    this.interval = setInterval(() => this.sweep(), o.interval);
    this.interval.unref();
  }

  /**
   * Takes over what `prev` (the detector this one replaces, when DNS changed the endpoint list) knew about the
   * endpoints both have: consecutive failure counters, ejection multiplier and reason, so an endpoint that
   * stayed is judged as if nothing had changed.
   */
  adopt(prev: OutlierDetector): void {
    for (const old of prev.list) {
      const st = this.states.get(old.ep);
      if (st === undefined) continue;
      st.consecutive5xx = old.consecutive5xx;
      st.consecutiveGateway = old.consecutiveGateway;
      st.ejections = Math.max(st.ejections, old.ejections);
      st.reason = old.reason ?? st.reason;
      st.decayFrom = old.decayFrom;
      st.successes = old.successes;
      st.total = old.total;
    }
  }

  /**
   * Called once per finished attempt. `success` (any status < 500, 4xx included) resets the consecutive
   * counters; `client_abort` and `local_reply` are ignored, as are attempts that end on an endpoint already
   * ejected (stragglers) or one this detector does not know.
   */
  record(ep: Endpoint, outcome: Outcome): void {
    if (this.closed) return;
    const st = this.states.get(ep);
    if (st === undefined || st.ejected) return;
    switch (outcome) {
      case 'success':
        st.consecutive5xx = 0;
        st.consecutiveGateway = 0;
        st.successes++;
        st.total++;
        return;
      case 'http_5xx':
        st.consecutiveGateway = 0;
        st.consecutive5xx++;
        st.total++;
        break;
      case 'connect_refused':
      case 'connect_timeout':
      case 'connect_failed':
      case 'reset':
      case 'timeout':
      case 'protocol_error':
        st.consecutiveGateway++;
        st.consecutive5xx++;
        st.total++;
        break;
      default:
        return;
    }
    const o = this.o;
    if (o.consecutiveGatewayFailure > 0 && st.consecutiveGateway >= o.consecutiveGatewayFailure) {
      this.eject(st, 'consecutive_gateway_failure');
    } else if (o.consecutive5xx > 0 && st.consecutive5xx >= o.consecutive5xx) {
      this.eject(st, 'consecutive_5xx');
    }
    // When maxEjectionPercent refused the ejection, the counter stays at or above the threshold, so the next
    // failure tries again (and succeeds once another endpoint has come back).
  }

  /**
   * Periodic work, also run every `interval` by an internal timer: returns ejected endpoints whose time is up,
   * decays the multiplier of endpoints back for a whole interval, and ejects success-rate outliers.
   */
  sweep(): void {
    if (this.closed) return;
    const now = this.now();
    const interval = this.o.interval;
    for (const st of this.list) {
      if (st.ejected) {
        if (st.until <= now) this.uneject(st, now);
      } else if (st.ejections > 0 && now - st.decayFrom >= interval) {
        st.ejections--;
        st.decayFrom = now;
      }
    }
    const sr = this.o.successRate;
    if (sr !== undefined) this.successRateOutliers(sr);
    for (const st of this.list) {
      st.successes = 0;
      st.total = 0;
    }
  }

  /** For admin/status: the ejection multiplier, when the current ejection ends (0: not ejected) and why. */
  state(ep: Endpoint): OutlierStatus | undefined {
    const st = this.states.get(ep);
    if (st === undefined) return undefined;
    return { ejections: st.ejections, ejectedUntil: st.until, reason: st.reason };
  }

  /** Stops the timers. Ejections stay on the endpoints; a successor detector adopts them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.interval);
    for (const st of this.list) {
      if (st.timer !== undefined) clearTimeout(st.timer);
      st.timer = undefined;
    }
  }

  private successRateOutliers(sr: NonNullable<OutlierOptions['successRate']>): void {
    const volume = Math.max(1, sr.requestVolume);
    let n = 0;
    let sum = 0;
    for (const st of this.list) {
      if (!st.ejected && st.total >= volume) {
        n++;
        sum += st.successes / st.total;
      }
    }
    if (n === 0 || n < sr.minimumHosts) return;
    const mean = sum / n;
    let sq = 0;
    for (const st of this.list) {
      if (!st.ejected && st.total >= volume) {
        const d = st.successes / st.total - mean;
        sq += d * d;
      }
    }
    const threshold = mean - sr.stdevFactor * Math.sqrt(sq / n);
    const outliers: EndpointState[] = [];
    for (const st of this.list) {
      if (!st.ejected && st.total >= volume && st.successes / st.total < threshold) outliers.push(st);
    }
    // Worst first, so that maxEjectionPercent keeps the worst ones out.
    outliers.sort((a, b) => a.successes / a.total - b.successes / b.total);
    for (const st of outliers) this.eject(st, 'success_rate');
  }

  private eject(st: EndpointState, reason: OutlierReason): void {
    const n = this.ejectedCount;
    if (n > 0 && (n + 1) * 100 > this.o.maxEjectionPercent * this.list.length) return;
    const base = this.o.baseEjectionTime;
    if (base * st.ejections < this.maxEjectionMs) st.ejections++;
    const ms = Math.min(base * st.ejections, this.maxEjectionMs);
    const until = this.now() + ms;
    st.resetCounters();
    st.ejected = true;
    st.until = until;
    st.reason = reason;
    this.ejectedCount++;
    this.schedule(st, ms);
    if (outlierChannel.hasSubscribers) {
      outlierChannel.publish({
        service: this.service,
        endpoint: st.ep.origin,
        event: 'eject',
        reason,
        ejectionMs: ms,
      });
    }
    st.ep.setEjectedUntil(until);
  }

  private uneject(st: EndpointState, now: number): void {
    if (st.timer !== undefined) clearTimeout(st.timer);
    st.timer = undefined;
    st.resetCounters();
    st.ejected = false;
    st.until = 0;
    st.reason = undefined;
    st.decayFrom = now;
    this.ejectedCount--;
    if (outlierChannel.hasSubscribers) {
      outlierChannel.publish({ service: this.service, endpoint: st.ep.origin, event: 'uneject' });
    }
    st.ep.setEjectedUntil(0);
  }

  private schedule(st: EndpointState, ms: number): void {
    if (st.timer !== undefined) clearTimeout(st.timer);
    st.timer = setTimeout(st.onTimer, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms))));
    st.timer.unref();
  }

  /** The return timer fired: the timer clock and `now` may disagree by a little (or a lot, with a fake clock). */
  private expire(st: EndpointState): void {
    st.timer = undefined;
    if (this.closed || !st.ejected) return;
    const now = this.now();
    const remaining = st.until - now;
    if (remaining > 1) this.schedule(st, remaining);
    else this.uneject(st, now);
  }
}

function validate(o: OutlierOptions): void {
  const nonNegative = (name: string, v: number) => {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`outlier detection: ${name} must be >= 0`);
  };
  nonNegative('consecutive5xx', o.consecutive5xx);
  nonNegative('consecutiveGatewayFailure', o.consecutiveGatewayFailure);
  nonNegative('maxEjectionTime', o.maxEjectionTime);
  nonNegative('maxEjectionPercent', o.maxEjectionPercent);
  if (!(o.interval > 0) || !Number.isFinite(o.interval)) {
    throw new RangeError('outlier detection: interval must be > 0');
  }
  if (!(o.baseEjectionTime > 0) || !Number.isFinite(o.baseEjectionTime)) {
    throw new RangeError('outlier detection: baseEjectionTime must be > 0');
  }
  if (o.successRate !== undefined) {
    nonNegative('successRate.minimumHosts', o.successRate.minimumHosts);
    nonNegative('successRate.requestVolume', o.successRate.requestVolume);
    nonNegative('successRate.stdevFactor', o.successRate.stdevFactor);
  }
}
