import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../core/errors.js';
import type { Consumer, PolicyDecision } from '../stages/policy.js';
import type { ClientCertificate } from './client-cert.js';

/** A reply a stage makes instead of going upstream. */
export type LocalReply =
  | {
      kind: 'error';
      code: ErrorCode;
      detail?: string;
      headers?: Record<string, string>;
      /** Extra members of the problem+json body (RFC 9457 extensions): an `openapi` policy's `errors` list. */
      extensions?: Readonly<Record<string, unknown>>;
    }
  | { kind: 'response'; status: number; headers: Record<string, string | number>; body: string | Buffer };

/**
 * What every request stage sees. The same object is the upstream handler, so a request costs one allocation
 * for all of its state.
 */
export interface StageContext {
  readonly method: string;
  /** Lower-case host without port. */
  readonly host: string;
  /** The Host header as received (with port), or '' when absent. */
  readonly hostHeader: string;
  /** Path as received, without the query. */
  readonly path: string;
  /**
   * Query without `?`, or ''. A policy that removes a parameter before it goes upstream (api-key) sets this and
   * `upstreamPath`, so that a later rewrite does not bring it back.
   */
  query: string;
  /** Params from a `template` path match. */
  readonly params: Readonly<Record<string, string>> | undefined;
  /** The path and query sent upstream; stages may rewrite it. */
  upstreamPath: string;
  /** Flat [name, value, ...] list sent upstream, names lower case; stages may edit it. */
  readonly upstreamHeaders: string[];
  /** Host header sent upstream, when not the client's. */
  upstreamHost: string | undefined;
  /**
   * The client certificate verified on this connection (HTTPS listeners with `clientAuth`), read on first use and
   * once per connection; undefined on plain HTTP, without one, or with one that did not verify.
   */
  readonly clientCert: ClientCertificate | undefined;
  /** The request target (path and query) exactly as received, before normalization. */
  readonly rawTarget?: string;
  /**
   * Reads the request body for a stage that inspects it (WAF), up to `limit` bytes; the upstream still gets all
   * of it. Undefined when there is no body to read (none, or a gRPC stream).
   */
  peekBody?(limit: number): Promise<{ data: Buffer; complete: boolean }> | undefined;
  /** Request headers as received (names lower case). */
  readonly headers: IncomingHttpHeaders;
  /** The client's address: the peer, or through trusted proxies the nearest untrusted X-Forwarded-For hop. */
  clientAddress(): string;
  /** Set by the authentication policy that accepted the request; undefined: anonymous. */
  consumer: Consumer | undefined;
  /** Claims of a verified token (JWT or introspection), for authorization and header mapping. */
  claims: Readonly<Record<string, unknown>> | undefined;
  /** Policy decisions so far, written by the policy framework (src/compile/policies.ts); undefined: none ran. */
  decisions?: PolicyDecision[] | undefined;
  /** The matched route (set before any stage runs): a rate limit keyed by route counts per route name. */
  readonly route: { readonly name: string } | undefined;
  /**
   * The API operation the request runs, when a stage or translator knows it (a GraphQL operation name, names of
   * a batch joined by `,`): the access log's `operation` field. Never a metric label (clients choose it).
   */
  operation?: string | undefined;
  /** The API version the request runs (routes with `api`, src/api/): set by the route's version stage. */
  apiVersion?: ApiVersionRef | undefined;
  /** What a `waf` policy found (rule ids and anomaly score, never request data): the access log's `waf` field. */
  waf?: WafSummary | undefined;
}

/** A `waf` policy's findings for one request: the access log's `waf` field (src/stages/waf/kind.ts). */
export interface WafSummary {
  readonly policy: string;
  /** `blocked` (refused), `detected` (would have been, in detect mode or shadow), `matched` (scored, let on). */
  readonly action: 'blocked' | 'detected' | 'matched';
  /** The inbound anomaly score CRS reached. */
  readonly score: number;
  /** The logged rules that matched, in order, at most 16 (`rulesTruncated` when there were more). */
  readonly rules: readonly number[];
  readonly rulesTruncated?: true;
  /** The rule that refused the request (CRS: 949110, the inbound threshold). */
  readonly blockingRule?: number;
}

/** What the rest of the gateway knows of a selected API version: names for logs and metrics, and the path segment. */
export interface ApiVersionRef {
  readonly api: string;
  readonly version: string;
  /** `/v2` when the version was read from the first path segment, else ''. */
  readonly pathSegment: string;
}

/** What a stage returns: nothing to continue, a local reply, or a promise of either. Sync stages stay sync. */
export type StageResult = undefined | LocalReply | Promise<undefined | LocalReply>;

export interface RequestStage {
  readonly name: string;
  onRequest(ctx: StageContext): StageResult;
}

/** Runs after the upstream response headers arrive, in reverse route order, before they go to the client. */
export interface ResponseStage {
  readonly name: string;
  /**
   * `headers` is the flat list about to be written; edit it in place. `ctx` is the request's own context (CORS
   * echoes its Origin; a rate limit reports what the request left of the budget).
   */
  onResponse(status: number, headers: string[], ctx: StageContext): void;
}
