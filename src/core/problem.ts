import type { ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import { ERROR_TYPE_BASE, type ErrorCode, errorCatalog } from './errors.js';

/** RFC 9457 problem details body for a catalogued error. */
export function problemBody(
  code: ErrorCode,
  detail: string | undefined,
  requestId: string | undefined,
  status?: number,
  traceId?: string,
  extensions?: Readonly<Record<string, unknown>>,
): string {
  const spec = errorCatalog[code];
  const body = {
    type: ERROR_TYPE_BASE + code,
    title: spec.title,
    status: status ?? spec.status,
    detail: detail ?? spec.title,
    code,
    requestId,
    traceId,
  };
  // Extensions never replace the standard members.
  return JSON.stringify(extensions === undefined ? body : { ...extensions, ...body });
}

/**
 * Answers a request locally with problem+json. The one place that turns an error into an HTTP reply.
 * `x-trellis-error` carries the code so that a client (or a curl user) sees what happened without reading the body.
 */
export function sendProblem(
  res: ServerResponse,
  code: ErrorCode,
  detail: string | undefined,
  requestId: string | undefined,
  extraHeaders?: Record<string, string>,
  status?: number,
  traceId?: string,
  extensions?: Readonly<Record<string, unknown>>,
): void {
  const body = problemBody(code, detail, requestId, status, traceId, extensions);
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-trellis-error': code,
  };
  if (requestId) headers['x-request-id'] = requestId;
  if (extraHeaders) Object.assign(headers, extraHeaders);
  res.writeHead(status ?? errorCatalog[code].status, headers);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

/** A raw HTTP/1.1 reply for errors raised before a request object exists (parse errors, header overflow). */
export function rawProblemResponse(code: ErrorCode, detail: string): string {
  const spec = errorCatalog[code];
  const body = problemBody(code, detail, undefined);
  return (
    `HTTP/1.1 ${spec.status} ${spec.title}\r\n` +
    'content-type: application/problem+json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `x-trellis-error: ${code}\r\n` +
    'connection: close\r\n\r\n' +
    body
  );
}

/**
 * Percent-encodes a grpc-message (gRPC over HTTP/2 spec): bytes outside printable ASCII, and `%` itself, as %XX of
 * the UTF-8 encoding.
 */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(b);
  }
  return out;
}

/**
 * Answers a gRPC (or gRPC-Web) request with a catalogued error, the way gRPC clients read one: HTTP 200, the gRPC
 * content type, and a trailers-only response whose `grpc-status` is the catalog's `grpc` code and whose
 * `grpc-message` is the detail. Over HTTP/2 that is one HEADERS frame with END_STREAM; over HTTP/1.1 (gRPC-Web)
 * the fields are headers of an empty body, which gRPC-Web clients take as trailers.
 */
export function sendGrpcError(
  res: ServerResponse,
  code: ErrorCode,
  detail: string | undefined,
  requestId: string | undefined,
  contentType: string,
  traceId?: string,
  extraHeaders?: Record<string, string>,
): void {
  const spec = errorCatalog[code];
  const message = encodeGrpcMessage(detail ?? spec.title);
  const stream = (res as ServerResponse & { stream?: ServerHttp2Stream }).stream;
  if (stream !== undefined && res.req?.httpVersionMajor === 2) {
    const headers: Record<string, string | number> = {
      ':status': 200,
      'content-type': contentType,
      'grpc-status': spec.grpc,
      'grpc-message': message,
      'x-trellis-error': code,
    };
    if (requestId) headers['x-request-id'] = requestId;
    if (traceId) headers['x-trellis-trace-id'] = traceId;
    if (extraHeaders) for (const name in extraHeaders) headers[name.toLowerCase()] ??= extraHeaders[name]!;
    // Trailers-only: the compat API's writeHead + end would send HEADERS and then an empty DATA frame ending the
    // stream, which gRPC clients read as a reply without a status.
    if (!stream.destroyed && !stream.headersSent) stream.respond(headers, { endStream: true });
    res.end();
    return;
  }
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': 0,
    'grpc-status': spec.grpc,
    'grpc-message': message,
    'cache-control': 'no-store',
    'x-trellis-error': code,
  };
  if (requestId) headers['x-request-id'] = requestId;
  if (traceId) headers['x-trellis-trace-id'] = traceId;
  // Fields the route's response stages added (CORS, so that a browser may read the status; header edits).
  if (extraHeaders) for (const name in extraHeaders) headers[name.toLowerCase()] ??= extraHeaders[name]!;
  res.writeHead(200, headers);
  res.end();
}
