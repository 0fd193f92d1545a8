import type { ServerResponse } from 'node:http';
import { ERROR_TYPE_BASE, type ErrorCode, errorCatalog } from './errors.js';

/** RFC 9457 problem details body for a catalogued error. */
export function problemBody(
  code: ErrorCode,
  detail: string | undefined,
  requestId: string | undefined,
  status?: number,
  traceId?: string,
): string {
  const spec = errorCatalog[code];
  return JSON.stringify({
    type: ERROR_TYPE_BASE + code,
    title: spec.title,
    status: status ?? spec.status,
    detail: detail ?? spec.title,
    code,
    requestId,
    traceId,
  });
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
): void {
  const body = problemBody(code, detail, requestId, status, traceId);
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
