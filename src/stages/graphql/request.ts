/**
 * The GraphQL-over-HTTP request fields of one HTTP request: from the query string of a GET, or from a POST body
 * (`application/json`: one request object or a batch array; `application/graphql`: the document itself).
 */

/** One GraphQL request as sent: any field may be missing or of the wrong type (checked by the caller). */
export interface GraphqlParams {
  readonly query: string | undefined;
  readonly operationName: string | undefined;
  readonly variables: Record<string, unknown> | undefined;
  /** `extensions.persistedQuery.sha256Hash` (Apollo automatic persisted queries), lower case. */
  readonly hash: string | undefined;
}

/** A request that is not a GraphQL request: answered 400 `graphql_request_invalid` with this message. */
export class NotGraphql extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function jsonField(text: string | null, field: string): unknown {
  if (text === null || text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new NotGraphql(`${field} is not valid JSON`);
  }
}

/** Checks the types of one request object's fields. */
export function paramsOf(raw: unknown, where = 'the body'): GraphqlParams {
  if (!isObject(raw)) throw new NotGraphql(`${where} is not a JSON object`);
  const { query, operationName, variables, extensions } = raw;
  if (query !== undefined && query !== null && typeof query !== 'string')
    throw new NotGraphql('query must be a string');
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string')
    throw new NotGraphql('operationName must be a string');
  if (variables !== undefined && variables !== null && !isObject(variables))
    throw new NotGraphql('variables must be an object');
  if (extensions !== undefined && extensions !== null && !isObject(extensions))
    throw new NotGraphql('extensions must be an object');
  let hash: string | undefined;
  const pq = extensions?.persistedQuery;
  if (pq !== undefined && pq !== null) {
    const h = isObject(pq) ? pq.sha256Hash : undefined;
    if (typeof h !== 'string' || !/^[0-9a-fA-F]{64}$/.test(h))
      throw new NotGraphql('extensions.persistedQuery.sha256Hash must be 64 hex digits');
    hash = h.toLowerCase();
  }
  return {
    query: query ?? undefined,
    operationName: operationName ?? undefined,
    variables: variables ?? undefined,
    hash,
  };
}

/** The GraphQL request of a GET's query string. */
export function fromQueryString(query: string): GraphqlParams {
  const p = new URLSearchParams(query);
  return paramsOf(
    {
      query: p.get('query') ?? undefined,
      operationName: p.get('operationName') ?? undefined,
      variables: jsonField(p.get('variables'), 'variables'),
      extensions: jsonField(p.get('extensions'), 'extensions'),
    },
    'the query string',
  );
}

const JSON_TYPE = /^application\/(?:[a-z0-9.+-]*\+)?json\s*(?:;|$)/i;
const GRAPHQL_TYPE = /^application\/graphql\s*(?:;|$)/i;

/** The GraphQL requests of a POST body: one, or a batch (a JSON array). */
export function fromBody(contentType: string, body: Buffer): GraphqlParams[] {
  if (GRAPHQL_TYPE.test(contentType))
    return [
      { query: body.toString('utf8'), operationName: undefined, variables: undefined, hash: undefined },
    ];
  if (!JSON_TYPE.test(contentType))
    throw new NotGraphql(
      `content type "${contentType}" is not a GraphQL request (application/json or application/graphql)`,
    );
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch {
    throw new NotGraphql('the body is not valid JSON');
  }
  if (Array.isArray(raw)) {
    if (raw.length === 0) throw new NotGraphql('the batch is empty');
    return raw.map((r, i) => paramsOf(r, `batch entry ${i}`));
  }
  return [paramsOf(raw)];
}
