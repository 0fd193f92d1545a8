import type { PathMatchSpec, ValueMatchSpec } from './types.js';

/** A route's `match.grpc`: the Gateway API GRPCRoute's method match. */
export interface GrpcMatchSpec {
  service?: string | undefined;
  method?: string | undefined;
}

/** `application/grpc`, `application/grpc+proto`, `application/grpc+json`…, parameters allowed. */
const GRPC_CONTENT_TYPE = 'application/grpc(\\+[^;]*)?(;.*)?';
/** The same, and the gRPC-Web kinds (`application/grpc-web`, `-web+proto`, `-web-text`, `-web-text+proto`). */
const GRPC_OR_WEB_CONTENT_TYPE = 'application/grpc(-web(-text)?)?(\\+[^;]*)?(;.*)?';

/**
 * `match.grpc` in the router's own terms, so that a gRPC route costs nothing more per request than any route
 * matching on a path and a header: POST, the path `/service/method` (exact when both are named, a prefix for a
 * whole service, a regex for a method of any service), and the content type of gRPC (and of gRPC-Web when the
 * route translates it).
 */
export function grpcMatchParts(
  m: GrpcMatchSpec,
  web: boolean,
): { path: PathMatchSpec; methods: string[]; header: ValueMatchSpec } {
  let path: PathMatchSpec;
  if (m.service !== undefined && m.method !== undefined) path = { exact: `/${m.service}/${m.method}` };
  else if (m.service !== undefined) path = { prefix: `/${m.service}` };
  else if (m.method !== undefined) path = { regex: `/[^/]+/${m.method}` };
  else path = { regex: '/[^/]+/[^/]+' };
  return {
    path,
    methods: ['POST'],
    header: { name: 'content-type', regex: web ? GRPC_OR_WEB_CONTENT_TYPE : GRPC_CONTENT_TYPE },
  };
}
