import type { ErrorCode } from './errors.js';

/**
 * How one upstream attempt ended, classified once. Access logs, metrics and (later) retries, breakers and
 * outlier detection all read this value; none of them re-inspects errors or responses.
 */
export type Outcome =
  | 'success' // a response with status < 500 was received
  | 'http_5xx' // the upstream answered with a 5xx
  | 'connect_refused'
  | 'connect_timeout'
  | 'connect_failed'
  | 'reset' // the connection closed or reset before the response completed
  | 'timeout' // no response headers in time, or the body went idle
  | 'protocol_error' // the upstream sent invalid HTTP
  | 'refused_stream' // HTTP/2: the endpoint refused the stream (REFUSED_STREAM, GOAWAY): nothing was processed
  | 'grpc_error' // a gRPC reply whose grpc-status says the server failed (UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS)
  | 'client_abort' // the client went away first; nobody to answer
  | 'local_reply'; // Trellis answered without an upstream attempt

interface Classified {
  outcome: Outcome;
  code: ErrorCode;
}

const REFUSED: Classified = { outcome: 'connect_refused', code: 'upstream_connect_refused' };
const CONNECT_TIMEOUT: Classified = { outcome: 'connect_timeout', code: 'upstream_connect_timeout' };
const CONNECT_FAILED: Classified = { outcome: 'connect_failed', code: 'upstream_connect_failed' };
const RESET: Classified = { outcome: 'reset', code: 'upstream_reset' };
const TIMEOUT: Classified = { outcome: 'timeout', code: 'upstream_timeout' };
const IDLE: Classified = { outcome: 'timeout', code: 'upstream_idle_timeout' };
const PROTOCOL: Classified = { outcome: 'protocol_error', code: 'upstream_protocol_error' };
const INTERNAL: Classified = { outcome: 'reset', code: 'internal_error' };
const REFUSED_STREAM: Classified = { outcome: 'refused_stream', code: 'upstream_reset' };
const TLS_FAILED: Classified = { outcome: 'connect_failed', code: 'upstream_tls_failed' };

/** OpenSSL and Node codes of a TLS handshake that failed: certificate checks, alerts, no common version. */
export function isTlsFailure(code: string): boolean {
  return (
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.startsWith('CERT_') ||
    code.startsWith('UNABLE_TO_') ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'HOSTNAME_MISMATCH' ||
    code === 'INVALID_CA' ||
    code === 'PATH_LENGTH_EXCEEDED' ||
    code === 'INVALID_PURPOSE' ||
    code === 'CERT_UNTRUSTED' ||
    code === 'CERT_REJECTED' ||
    code === 'TRELLIS_H2_ALPN'
  );
}

/**
 * gRPC status codes that say the server (or something on the way) failed, as 5xx would: UNKNOWN, DEADLINE_EXCEEDED,
 * INTERNAL, UNAVAILABLE, DATA_LOSS. The others (NOT_FOUND, INVALID_ARGUMENT, …) answer the caller, as 4xx do.
 */
export function isGrpcFailure(status: string): boolean {
  switch (status) {
    case '2':
    case '4':
    case '13':
    case '14':
    case '15':
      return true;
    default:
      return false;
  }
}

/** Classifies an error raised by the upstream client (undici) or the socket layer. */
export function classifyUpstreamError(err: unknown): Classified {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return REFUSED;
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return CONNECT_TIMEOUT;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return CONNECT_FAILED;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return TIMEOUT;
    case 'UND_ERR_BODY_TIMEOUT':
      return IDLE;
    case 'TRELLIS_H2_REFUSED_STREAM':
      return REFUSED_STREAM;
    case 'UND_ERR_SOCKET':
    case 'TRELLIS_H2_RESET':
    case 'ERR_HTTP2_STREAM_ERROR':
    case 'ERR_HTTP2_SESSION_ERROR':
    case 'ERR_HTTP2_GOAWAY_SESSION':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return RESET;
    case 'HPE_INVALID_CONSTANT':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return PROTOCOL;
    default:
      if (typeof code === 'string' && code.startsWith('HPE_')) return PROTOCOL;
      if (typeof code === 'string' && isTlsFailure(code)) return TLS_FAILED;
      if ((err as Error | null)?.name === 'HTTPParserError') return PROTOCOL;
      return INTERNAL;
  }
}
