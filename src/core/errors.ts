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
  upstream_tls_failed: {
    status: 502,
    title: 'TLS to the upstream failed',
    description:
      "The TLS handshake with the endpoint failed: its certificate does not chain to the service's `tls.ca` (or the system CAs), does not name `tls.sni` (or the endpoint host), has expired, the endpoint asked for a client certificate that `tls.cert` does not provide or it refused, no TLS version is shared, or (protocol h2) it did not agree to HTTP/2 by ALPN. The detail has OpenSSL's reason.",
    grpc: 14, // UNAVAILABLE
  },
  upstream_reset: {
    status: 502,
    title: 'Upstream reset the connection',
    description:
      'The endpoint closed or reset the connection (HTTP/2: the stream, or refused it) before it sent a complete response.',
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
  token_invalid: {
    status: 401,
    title: 'Token rejected',
    description:
      'A `jwt` or `introspection` policy found a bearer token and refused it. The detail says why (malformed, too large, algorithm not allowed, no key for its `kid`, bad signature, expired, not yet valid, wrong issuer or audience, a required claim missing, inactive at the authorization server, or the issuer\'s keys could not be fetched); the token itself is never echoed. The reply carries `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750).',
    grpc: 16, // UNAUTHENTICATED
  },
  authz_denied: {
    status: 403,
    title: 'Access denied',
    description:
      "An `authz` policy (a deny rule matched, or no allow rule did) or an `ext-authz` service refused the request. The detail names the policy and, for `authz`, the rule. Check the identity the request carried (consumer, groups, claims) against the policy's rules.",
    grpc: 7, // PERMISSION_DENIED
  },
  auth_unavailable: {
    status: 503,
    title: 'Authorization service unavailable',
    description:
      'An `introspection` or `ext-authz` policy could not get an answer (connection refused, timeout, an error status or a malformed reply) and fails closed (`onError: deny` / `failureMode: deny`). The detail names the policy and what went wrong. Check the service, or choose to fail open.',
    grpc: 14, // UNAVAILABLE
  },
  unauthenticated: {
    status: 401,
    title: 'Authentication required',
    description:
      'An authentication policy on the route (`api-key`, `basic-auth`, `mtls`, ...) found no credential, or one it does not accept: unknown, expired or wrong. The `WWW-Authenticate` header names the scheme where HTTP has one; the detail says which case it was, never the credential. Send a valid credential, or check `consumers[].credentials`.',
    grpc: 16, // UNAUTHENTICATED
  },
  client_address_denied: {
    status: 403,
    title: 'Client address not allowed',
    description:
      "An `ip-filter` policy refused the client address: it is in the policy's `deny` list, or `allow` is set and it is not in it. The address is the peer's, or through the listener's `trustedProxies` the nearest untrusted X-Forwarded-For hop.",
    grpc: 7, // PERMISSION_DENIED
  },
  auth_overloaded: {
    status: 503,
    title: 'Too many credential checks in progress',
    description:
      "A `basic-auth` policy has `maxConcurrentVerifications` password hashes computing and `maxQueuedVerifications` more waiting, so this request was refused at once instead of queueing: a flood of wrong passwords cannot take the gateway's CPU. Successful logins are cached (`cacheTtl`) and skip the hash. `Retry-After` says when to try again.",
    grpc: 14, // UNAVAILABLE
  },
  waf_blocked: {
    status: 403,
    title: 'Blocked by the web application firewall',
    description:
      'A `waf` policy in `mode: block` refused the request: the rules it runs (the OWASP Core Rule Set and your own) scored it at or above `inboundThreshold`, or a rule denied it outright. The reply names no rule; the matched rule ids are published on the `trellis:waf` diagnostics channel. See docs/waf.md.',
    grpc: 7, // PERMISSION_DENIED
  },
  waf_body_invalid: {
    status: 400,
    title: 'Request body malformed',
    description:
      "A `waf` policy with `bodyChecks` (on by default with the CRS) refused a body it could not inspect: JSON or multipart that does not parse (truncated, a broken boundary, a part without Content-Disposition), or multipart that fails ModSecurity's strict checks (data after the closing boundary, a quoted boundary, folded or LF-only part headers, a line like a boundary that is not one). Such bodies are how a WAF and an application are made to read a request differently. The reply names no rule; the audit log and the `trellis:waf` channel do. See docs/waf.md.",
    grpc: 3, // INVALID_ARGUMENT
  },
  rate_limited: {
    status: 429,
    title: 'Rate limit exceeded',
    description:
      'A `rate-limit` policy refused the request: one of its `limits` has no budget left for this key (consumer, client address, header value, route or global). `Retry-After` says when the next request would pass; `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) name the limit. See docs/rate-limits.md.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  quota_exceeded: {
    status: 429,
    title: 'Quota exhausted',
    description:
      'A `quota` policy refused the request: the key (usually the consumer) has used all of its `limit` for the current calendar `period` (hour, day, week or month, UTC). `Retry-After` says when the period ends. See docs/rate-limits.md.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  rate_limit_unavailable: {
    status: 503,
    title: 'Rate-limit store unavailable',
    description:
      'A `rate-limit` or `quota` policy with `store: redis` and `onStoreError: deny` could not get an answer from Redis in its `redis.timeout` (down, unreachable, or slow), so it refused the request rather than let it through uncounted. The gateway logs the failure (at most once per 10 s per policy) and counts it in `trellis_rate_limit_store_errors_total`. Check Redis, or choose `onStoreError: allow`.',
    grpc: 14, // UNAVAILABLE
  },
  cors_origin_not_allowed: {
    status: 403,
    title: 'CORS preflight refused',
    description:
      'A `cors` policy answered a preflight (OPTIONS with Origin and Access-Control-Request-Method) whose origin, method or request headers it does not allow. The detail says which. Add the origin to `origins` (or the method or header to `methods` / `headers`). Actual requests from other origins are not refused: they go through without CORS headers, and the browser keeps the response from the page.',
    grpc: 7, // PERMISSION_DENIED
  },
  graphql_request_invalid: {
    status: 400,
    title: 'Not a valid GraphQL request',
    description:
      'A `graphql` policy could not find one operation to run in the request: not a GET with `query` or a POST of `application/json` (or `application/graphql`), a body or `variables` that is not valid JSON, a syntax error in the document (the detail has its line and column), an unknown or cyclic fragment, several operations and no `operationName`, a mutation sent by GET, or a persisted-query hash that is not the SHA-256 of the query sent. See docs/graphql.md.',
    grpc: 3, // INVALID_ARGUMENT
  },
  graphql_query_too_large: {
    status: 400,
    title: 'GraphQL request too large',
    description:
      'A `graphql` policy refused a request over one of its size limits: the POST body over `maxBodyBytes`, the document over `maxQueryBytes` or `maxTokens` (parsing stops there), or a batch of more than `maxBatchSize` operations. The detail names the limit and the measured value.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  graphql_depth_exceeded: {
    status: 400,
    title: 'GraphQL query too deep',
    description:
      "The operation nests fields deeper than the `graphql` policy's `maxDepth` (fragments count where they are spread). The detail has the depth measured and the limit.",
    grpc: 3, // INVALID_ARGUMENT
  },
  graphql_aliases_exceeded: {
    status: 400,
    title: 'Too many aliases in the GraphQL query',
    description:
      "The operation has more aliased fields than the `graphql` policy's `maxAliases` (aliases let one request run a field many times). The detail has the count and the limit.",
    grpc: 3, // INVALID_ARGUMENT
  },
  graphql_cost_exceeded: {
    status: 400,
    title: 'GraphQL query too expensive',
    description:
      "The operation's estimated cost is over the `graphql` policy's `maxCost`. The cost model (docs/graphql.md): each field 1, a list field (one with a `first`/`last`/`limit` argument, or listed in `listFields`) its size times the cost of what it selects. The detail has the cost and the limit: ask for smaller pages.",
    grpc: 3, // INVALID_ARGUMENT
  },
  graphql_introspection_denied: {
    status: 403,
    title: 'GraphQL introspection not allowed',
    description:
      'The operation asks for `__schema` or `__type`, and the `graphql` policy has `introspection: false` (the default).',
    grpc: 7, // PERMISSION_DENIED
  },
  graphql_persisted_query_not_allowed: {
    status: 403,
    title: 'GraphQL document not on the allow-list',
    description:
      "The `graphql` policy has `persistedQueries.mode: allow-list` and the request's document (or its `extensions.persistedQuery.sha256Hash`) is not one of the documents it lists. Add the document to the manifest, or send a listed one.",
    grpc: 7, // PERMISSION_DENIED
  },
  graphql_variable_invalid: {
    status: 400,
    title: 'Request does not fit the GraphQL operation',
    description:
      "A route with `translate: { type: graphql }` could not make the operation's variables from the request: a required variable is in neither the path, the query string nor the body; a value does not convert to the declared type (`Int`, `Float`, `Boolean`); or the body is not a JSON object. The detail names the variable. See docs/graphql.md.",
    grpc: 3, // INVALID_ARGUMENT
  },
  graphql_not_found: {
    status: 404,
    title: 'Not found',
    description:
      'A route with `translate: { type: graphql }` ran its operation and the selected part of the result (`select`, such as `data.user`) was null, or the GraphQL server answered an error with `extensions.code` NOT_FOUND.',
    grpc: 5, // NOT_FOUND
  },
  graphql_operation_failed: {
    status: 502,
    title: 'GraphQL operation failed',
    description:
      "A route with `translate: { type: graphql }` ran its operation and the GraphQL server answered `errors` without the selected data. The status follows the first error's `extensions.code`: BAD_USER_INPUT 400, UNAUTHENTICATED 401, FORBIDDEN 403, anything else 502. The detail has the errors' messages.",
    grpc: 13, // INTERNAL
  },
  graphql_upstream_invalid: {
    status: 502,
    title: 'Upstream did not answer GraphQL',
    description:
      "A route with `translate: { type: graphql }` got a response that is not a GraphQL response: not JSON, neither `data` nor `errors`, or larger than `maxResponseBytes`. Check the route's service and `translate.path`.",
    grpc: 13, // INTERNAL
  },
  websocket_bridge_unavailable: {
    status: 502,
    title: 'WebSocket upstream unavailable',
    description:
      'A route with `translate: { type: websocket }` could not open a WebSocket to its service, or the connection closed before the reply came. The detail says which (and the close code). The bridge reconnects with backoff; requests meanwhile fail fast with this code.',
    grpc: 14, // UNAVAILABLE
  },
  websocket_bridge_timeout: {
    status: 504,
    title: 'No WebSocket reply in time',
    description:
      "A route with `translate: { type: websocket }` sent the request as a message and no message with its correlation id came back within the route's `timeouts.request`.",
    grpc: 4, // DEADLINE_EXCEEDED
  },
  websocket_bridge_request_too_large: {
    status: 413,
    title: 'Message too large for the WebSocket upstream',
    description:
      'The message a route with `translate: { type: websocket }` would send (the request body in its envelope) is over `maxMessageBytes`.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  websocket_bridge_reply_too_large: {
    status: 502,
    title: 'WebSocket reply too large',
    description:
      'The WebSocket upstream of a route with `translate: { type: websocket }` sent a message over `maxMessageBytes`: the connection was closed (1009) and the requests waiting on it got this code.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  websocket_bridge_request_invalid: {
    status: 400,
    title: 'Request cannot be sent as a WebSocket message',
    description:
      'A route with `translate: { type: websocket }` could not make a message of the request: a JSON body that does not parse, a body that is not a JSON object with `envelope: body`, or (`mode: events` with `events.filter`) no parameter to filter by. The detail says which.',
    grpc: 3, // INVALID_ARGUMENT
  },
  websocket_bridge_overloaded: {
    status: 503,
    title: 'WebSocket bridge at its limit',
    description:
      'A route with `translate: { type: websocket }` already has `maxPending` requests waiting for replies (or `maxSubscribers` event-stream clients), so this one was refused at once. `Retry-After` says when to try again.',
    grpc: 8, // RESOURCE_EXHAUSTED
  },
  transcode_bad_request: {
    status: 400,
    title: 'Request cannot be transcoded',
    description:
      'A route with `translate: { type: grpc }` could not build the gRPC request message: the body is not valid JSON, a field is unknown or has the wrong type (an int64 that is not a number, an enum name that does not exist, a malformed Timestamp), or a query parameter names no field of the request message. The detail names the field and what was expected. See docs/transcoding.md.',
    grpc: 3, // INVALID_ARGUMENT
  },
  unsupported_media_type: {
    status: 415,
    title: 'Unsupported request content type',
    description:
      'A translating route (`translate`) takes a JSON request body (`application/json` or a `+json` type, without `Content-Encoding`), and this request sent another content type. Send JSON.',
    grpc: 3, // INVALID_ARGUMENT
  },
  upstream_grpc_error: {
    status: 502,
    title: 'The gRPC service returned an error',
    description:
      "A transcoded call (`translate: { type: grpc }`) ended with a gRPC status other than OK. The HTTP status follows the standard mapping (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409, FAILED_PRECONDITION 400, RESOURCE_EXHAUSTED 429, CANCELLED 499, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500); the body's `detail` is the service's grpc-message, `grpcStatus` / `grpcCode` name the status and `grpcDetails` holds the rich error details the service sent, if any. 502 is the status when the service's reply was not valid gRPC. See docs/transcoding.md.",
    grpc: 2, // UNKNOWN
  },
  api_version_unknown: {
    status: 400,
    title: 'Unknown API version',
    description:
      "The request named a version (path segment, header, media type or query parameter, as the API's `select` says) that the API does not have. The detail says where it was read; `knownVersions` in the body lists the version names of `apis[].versions`. See docs/api-versions.md.",
    grpc: 3, // INVALID_ARGUMENT
  },
  api_version_retired: {
    status: 410,
    title: 'API version retired',
    description:
      'The selected API version has `status: retired`: it is no longer served. The `Link` field (rel="deprecation") points at the migration docs of the version, when it has a `link`; move to a version the detail names.',
    grpc: 5, // NOT_FOUND
  },
  openapi_request_invalid: {
    status: 400,
    title: 'Request does not match the API description',
    description:
      'An `openapi` policy checked the request against its OpenAPI operation and found violations: path or query parameters, headers, a missing or wrong content type, or a JSON body that does not match the schema. `errors` in the body lists every violation with a JSON pointer (`/query/limit`, `/body/tags/0`) and a message. The upstream did not see the request. See docs/openapi.md.',
    grpc: 3, // INVALID_ARGUMENT
  },
  openapi_operation_not_found: {
    status: 404,
    title: 'No API operation for this request',
    description:
      'An `openapi` policy with `unknownOperations: reject` (the default) found no operation in its document for the request method and path. Document the operation, or attach the policy only to the routes it describes.',
    grpc: 12, // UNIMPLEMENTED
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
