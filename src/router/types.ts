import type { IncomingHttpHeaders } from 'node:http';

/** One string matcher on a header or query parameter: exactly one of exact, regex, present. */
export interface ValueMatchSpec {
  name: string;
  exact?: string;
  regex?: string;
  present?: boolean;
}

export type PathMatchSpec = { exact: string } | { prefix: string } | { template: string } | { regex: string };

/** What the router is built from: the match part of a route plus an opaque payload. */
export interface RouteMatchSpec<T> {
  /** Exact (`api.example.com`) or wildcard (`*.example.com`) host names, lower case. Absent: any host. */
  hosts?: readonly string[] | undefined;
  /** Absent: prefix `/`. */
  path?: PathMatchSpec | undefined;
  /** Absent: any method. */
  methods?: readonly string[] | undefined;
  headers?: readonly ValueMatchSpec[] | undefined;
  query?: readonly ValueMatchSpec[] | undefined;
  /** Handed back on a match. */
  value: T;
}

/** What the router needs from a request. */
export interface RouterRequest {
  method: string;
  /** Lower case, port stripped. */
  host: string;
  /** The path without the query string, as received (not decoded). */
  path: string;
  /** The raw query string without `?`, or '' when there is none. */
  query: string;
  headers: IncomingHttpHeaders;
}

export type MatchResult<T> =
  | { kind: 'match'; value: T; params: Readonly<Record<string, string>> | undefined }
  | { kind: 'method_not_allowed'; allow: readonly string[] }
  | { kind: 'not_found' };

export interface Router<T> {
  match(req: RouterRequest): MatchResult<T>;
  /** Number of routes the router was built from. */
  readonly size: number;
}
