import { ERROR_TYPE_BASE, errorCatalog } from './errors.js';
import { GRPC_CODE_NAMES } from './grpc-codes.js';

/** docs/errors.md, generated from the catalog (`npm run docs:errors`); a test fails when the file is stale. */
export function renderErrorDocs(): string {
  const lines = [
    '# Error codes',
    '',
    '<!-- Generated from src/core/errors.ts by `npm run docs:errors`. Do not edit by hand. -->',
    '',
    'Every reply that Trellis makes itself carries one of these codes: in the `x-trellis-error` response header',
    'and in an `application/problem+json` body (RFC 9457):',
    '',
    '```json',
    '{',
    `  "type": "${ERROR_TYPE_BASE}route_not_found",`,
    '  "title": "No route matches this request",',
    '  "status": 404,',
    '  "detail": "no route for api.example.com/nope",',
    '  "code": "route_not_found",',
    '  "requestId": "6f1c2a4e-0d0b-4a59-9a53-2f1f3f6d9b7e"',
    '}',
    '```',
    '',
    'Codes are stable: a code is never reused for another meaning. The `x-request-id` header of the reply',
    'matches `requestId` and the access log line of the request.',
    '',
    '| code | status | gRPC | title |',
    '| --- | --- | --- | --- |',
  ];
  for (const [code, spec] of Object.entries(errorCatalog)) {
    lines.push(
      `| [\`${code}\`](#${code}) | ${spec.status} | ${GRPC_CODE_NAMES[spec.grpc] ?? spec.grpc} | ${spec.title} |`,
    );
  }
  lines.push('');
  for (const [code, spec] of Object.entries(errorCatalog)) {
    lines.push(`## ${code}`, '', `**${spec.status}** — ${spec.title}.`, '', spec.description, '');
  }
  return lines.join('\n');
}
