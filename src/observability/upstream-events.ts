import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Logger } from 'pino';
import type { JwksEvent } from '../stages/jwt/jwks.js';
import type { StoreEvent } from '../stages/rate-limit/events.js';
import type { BudgetEvent, CircuitEvent, HealthEvent, OutlierEvent } from '../upstream/events.js';

/**
 * Logs the state changes of the upstream machinery (health verdicts, ejections, breaker transitions, an empty
 * retry budget), of rate-limit stores (Redis failing and recovering) and of JWKS fetches (failing, recovering), so an operator reading the gateway log sees why traffic moved. Returns the unsubscriber.
 */
export function logUpstreamEvents(log: Logger): () => void {
  const handlers: Array<[string, (m: unknown) => void]> = [
    [
      'trellis:health',
      (m) => {
        const e = m as HealthEvent;
        if (e.healthy)
          log.info({ service: e.service, endpoint: e.endpoint }, 'endpoint passes its health check');
        else
          log.warn(
            { service: e.service, endpoint: e.endpoint, reason: e.lastError },
            'endpoint fails its health check; no traffic until it passes',
          );
      },
    ],
    [
      'trellis:outlier',
      (m) => {
        const e = m as OutlierEvent;
        if (e.event === 'eject')
          log.warn(
            { service: e.service, endpoint: e.endpoint, reason: e.reason, ejectionMs: e.ejectionMs },
            'endpoint ejected by outlier detection',
          );
        else log.info({ service: e.service, endpoint: e.endpoint }, 'ejected endpoint returns to service');
      },
    ],
    [
      'trellis:circuit',
      (m) => {
        const e = m as CircuitEvent;
        const fields = { service: e.service, from: e.from, to: e.to, reason: e.reason };
        if (e.to === 'open') log.warn(fields, 'circuit opened: requests fail fast with 503 circuit_open');
        else log.info(fields, `circuit ${e.to === 'closed' ? 'closed' : 'half-open'}`);
      },
    ],
    [
      'trellis:retry-budget',
      (m) => {
        const e = m as BudgetEvent;
        log.warn({ service: e.service }, 'retry budget exhausted: failed attempts are not retried');
      },
    ],
    [
      'trellis:rate-limit-store',
      (m) => {
        const e = m as StoreEvent;
        const fields = { policy: e.policy, type: e.type, store: e.store, failures: e.failures };
        if (e.event === 'error')
          log.warn(
            { ...fields, error: e.error, onStoreError: e.onStoreError },
            e.onStoreError === 'allow'
              ? 'rate-limit store failed: requests pass uncounted (onStoreError: allow)'
              : 'rate-limit store failed: requests are refused with 503 rate_limit_unavailable (onStoreError: deny)',
          );
        else log.info(fields, 'rate-limit store answers again');
      },
    ],
    [
      'trellis:jwks',
      (m) => {
        const e = m as JwksEvent;
        if (!e.ok)
          log.warn(
            { jwks: e.url, error: e.error, keysKept: e.keys },
            e.keys > 0
              ? 'JWKS fetch failed: the keys fetched before stay in use'
              : 'JWKS fetch failed: no keys yet, tokens of this issuer are refused with 401 token_invalid',
          );
        else if (e.recovered) log.info({ jwks: e.url, keys: e.keys }, 'JWKS fetched again after failures');
      },
    ],
  ];
  for (const [name, fn] of handlers) subscribe(name, fn);
  return () => {
    for (const [name, fn] of handlers) unsubscribe(name, fn);
  };
}
