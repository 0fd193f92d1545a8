/**
 * The one catalog of errors that Trellis itself produces. Codes are stable and never reused:
 * a code that is retired stays here with `retired: true`. docs/errors.md is generated from this file.
 */
export interface ErrorSpec {
  /** HTTP status of the local reply. */
  readonly status: number;
  /** Short human title (the problem+json `title`). */
  readonly title: string;
  /** What happened and what an operator can do about it (docs only). */
  readonly description: string;
  /** gRPC status code used when the request was gRPC (issue 3 reads this). */
  readonly grpc: number;
}

export const errorCatalog = {
  route_not_found: {
    status: 404,
    title: 'No route matches this request',
    description:
      'No route on this listener matched the request host and path. Check `routes[].match.hosts` and `routes[].match.path`.',
    grpc: 12, // UNIMPLEMENTED
  },
  method_not_allowed: {
    status: 405,
    title: 'Method not allowed on this route',
    description:
      'A route matched the host and path, but none allows this method. The `Allow` header lists the methods that would match.',
    grpc: 12,
  },
  bad_request: {
    status: 400,
    title: 'Malformed request',
    description:
      'The request could not be parsed strictly as HTTP/1.1 (for example both Content-Length and Transfer-Encoding, a malformed or duplicate Content-Length, a bad chunk size, obs-fold, or an invalid header). It was not forwarded.',
    grpc: 13, // INTERNAL
  },
  headers_too_large: {
    status: 431,
    title: 'Request headers too large',
    description: 'The request line and headers exceeded the listener limit `limits.maxHeaderBytes`.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  body_too_large: {
    status: 413,
    title: 'Request body too large',
    description: 'The request body exceeded the route limit `limits.maxBodyBytes`.',
    grpc: 8,
  },
  request_timeout: {
    status: 408,
    title: 'Request not received in time',
    description:
      'The client did not send the complete request headers or body within the listener limits `timeouts.headers` / `timeouts.request`.',
    grpc: 4, // DEADLINE_EXCEEDED
  },
  upstream_connect_refused: {
    status: 502,
    title: 'Upstream refused the connection',
    description:
      'The selected endpoint refused the TCP connection (nothing is listening on that address and port).',
    grpc: 14, // UNAVAILABLE
  },
  upstream_connect_timeout: {
    status: 504,
    title: 'Upstream connect timed out',
    description:
      "The TCP connection to the endpoint was not established within the service's `connectTimeout`.",
    grpc: 14,
  },
  upstream_connect_failed: {
    status: 502,
    title: 'Upstream connection failed',
    description:
      'The connection to the endpoint failed for a reason other than refusal or timeout (DNS failure, unreachable host).',
    grpc: 14,
  },
  upstream_reset: {
    status: 502,
    title: 'Upstream reset the connection',
    description: 'The endpoint closed or reset the connection before it sent a complete response.',
    grpc: 14,
  },
  upstream_protocol_error: {
    status: 502,
    title: 'Upstream sent an invalid response',
    description: 'The endpoint sent a response that is not valid HTTP/1.1. It was not forwarded.',
    grpc: 13,
  },
  upstream_timeout: {
    status: 504,
    title: 'Upstream did not answer in time',
    description:
      "No endpoint answered within the route's `timeouts.request`: the total time for the request, every retry and backoff included.",
    grpc: 4,
  },
  upstream_per_try_timeout: {
    status: 504,
    title: 'Upstream attempt timed out',
    description:
      "An attempt got no response headers within the route's `retries.perTryTimeout`, and no retry was left (attempts, retry budget or total timeout) to try another endpoint.",
    grpc: 4,
  },
  upstream_idle_timeout: {
    status: 504,
    title: 'Upstream went idle',
    description:
      "The response body went silent for longer than the route's `timeouts.upstreamIdle`. The response had started, so the client sees it cut short; this code appears in the access log.",
    grpc: 4,
  },
  overloaded: {
    status: 503,
    title: 'Service overloaded',
    description:
      'A service limit in `circuitBreaker` (maxRequests, maxPending or maxRetries) was reached, so Trellis refused the request at once instead of queueing it. The detail names the limit. Raise the limit or add capacity.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  circuit_open: {
    status: 503,
    title: 'Circuit open',
    description:
      "The service's error-rate breaker (`circuitBreaker.errorRate`) is open after too many failures, so requests fail fast until half-open probes succeed. `Retry-After` says when it will next try.",
    grpc: 14,
  },
  fault_injected: {
    status: 503,
    title: 'Fault injected',
    description:
      "The route's `fault.abort` (or an `x-trellis-fault-abort` header on a route with `fault.headers`) answered this request on purpose, for a chaos test. The reply has the configured status.",
    grpc: 14,
  },
  no_healthy_upstream: {
    status: 503,
    title: 'No healthy upstream',
    description:
      'The service has no endpoint that can take the request: none configured, or DNS discovery has not resolved any address yet.',
    grpc: 14,
  },
  service_unavailable: {
    status: 503,
    title: 'Not accepting requests on this connection',
    description:
      'The listener this connection arrived on was removed by a config reload, so the connection is closing; or the gateway is shutting down (SIGTERM) and takes no new WebSocket. Open a new connection (to a listener that exists, or another instance).',
    grpc: 14,
  },
  websocket_not_enabled: {
    status: 403,
    title: 'WebSocket not enabled on this route',
    description:
      'A WebSocket upgrade (`Upgrade: websocket`) matched a route whose `websocket.enabled` is false, so it was refused before anything went upstream. Set `routes[].websocket.enabled: true` on the route that should accept it.',
    grpc: 7, // PERMISSION_DENIED
  },
  websocket_limit_reached: {
    status: 503,
    title: 'Too many WebSockets on this route',
    description:
      'The route already has `websocket.maxConnections` open WebSockets in this worker (handshakes in progress included), so the upgrade was refused. The limit frees up as WebSockets close; raise it or add workers.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  websocket_upgrade_failed: {
    status: 502,
    title: 'Upstream did not switch to WebSocket',
    description:
      'The endpoint answered the WebSocket handshake with 101 Switching Protocols but to another protocol than `websocket`. The connection to it was closed and nothing was relayed.',
    grpc: 13, // INTERNAL
  },
  upgrade_not_supported: {
    status: 400,
    title: 'Upgrade request not supported',
    description:
      'An HTTP/1.1 Upgrade request that Trellis cannot serve: a WebSocket upgrade that is not `GET` over HTTP/1.1 (RFC 6455 §4.1), or an upgrade request with a body. Upgrade requests to other protocols without a body (such as `h2c`) are served as plain requests instead.',
    grpc: 13,
  },
  internal_error: {
    status: 500,
    title: 'Internal gateway error',
    description: 'An unexpected error inside Trellis. The log line with the same request id has the details.',
    grpc: 13,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCatalog;

/** Problem `type` is this prefix plus the code: a stable URI that names the error without pointing at a host. */
export const ERROR_TYPE_BASE = 'urn:trellis:error:';
