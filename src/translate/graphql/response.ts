/**
 * The response side of REST → GraphQL: the upstream's GraphQL response is read whole (up to a limit), and the
 * client gets the selected part of `data`, or a problem+json reply mapped from `errors` (docs/graphql.md):
 *
 * | GraphQL response                                           | reply                                      |
 * | ---------------------------------------------------------- | ------------------------------------------ |
 * | the selection is a value (errors or not)                   | `status` (200) with the value as JSON; errors counted in `x-trellis-graphql-errors` |
 * | the selection is null, no errors                           | 404 `graphql_not_found`                    |
 * | errors, first `extensions.code` NOT_FOUND                  | 404 `graphql_not_found`                    |
 * | errors, BAD_USER_INPUT                                     | 400 `graphql_operation_failed`             |
 * | errors, UNAUTHENTICATED / FORBIDDEN                        | 401 / 403 `graphql_operation_failed`       |
 * | errors, any other code or none                             | 502 `graphql_operation_failed`             |
 * | not JSON, neither `data` nor `errors`, over the size limit | 502 `graphql_upstream_invalid`             |
 */
import type { ErrorCode } from '../../core/errors.js';
import type { ResponseSink, ResponseTranslation } from '../../proxy/translate.js';

/** `data.user.name` → ['user', 'name'] (below `data`). */
export function parseSelect(select: string): readonly string[] {
  return select.split('.').slice(1);
}

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  BAD_USER_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
};

interface GraphqlError {
  readonly message?: unknown;
  readonly extensions?: { readonly code?: unknown };
}

function messages(errors: readonly GraphqlError[]): string {
  const list = errors.slice(0, 3).map((e) => (typeof e?.message === 'string' ? e.message : 'error'));
  const more = errors.length > 3 ? ` (and ${errors.length - 3} more)` : '';
  const text = `${list.join('; ')}${more}`;
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

export class GraphqlResponse implements ResponseTranslation {
  readonly #select: readonly string[];
  readonly #status: number;
  readonly #max: number;
  #upstreamStatus = 0;
  #chunks: Buffer[] = [];
  #size = 0;
  #over = false;

  constructor(select: readonly string[], status: number, maxBytes: number) {
    this.#select = select;
    this.#status = status;
    this.#max = maxBytes;
  }

  headers(status: number): void {
    this.#upstreamStatus = status;
  }

  data(chunk: Buffer): boolean {
    if (this.#over) return true;
    this.#size += chunk.length;
    if (this.#size > this.#max) {
      this.#over = true;
      this.#chunks = [];
    } else this.#chunks.push(chunk);
    return true;
  }

  end(_trailers: Readonly<Record<string, string>>, sink: ResponseSink): void {
    if (this.#over) {
      sink.fail('graphql_upstream_invalid', `the GraphQL response is over maxResponseBytes ${this.#max}`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(this.#chunks, this.#size).toString('utf8'));
    } catch {
      sink.fail(
        'graphql_upstream_invalid',
        `the upstream answered ${this.#upstreamStatus} without a JSON body`,
      );
      return;
    }
    const res = body as { data?: unknown; errors?: unknown };
    const errors =
      Array.isArray(res?.errors) && res.errors.length > 0 ? (res.errors as GraphqlError[]) : undefined;
    if (typeof res !== 'object' || res === null || (res.data === undefined && errors === undefined)) {
      sink.fail(
        'graphql_upstream_invalid',
        `the upstream answered ${this.#upstreamStatus} with JSON that is not a GraphQL response (no data, no errors)`,
      );
      return;
    }
    let value: unknown = res.data;
    for (const key of this.#select) {
      if (value === null || typeof value !== 'object') {
        value = undefined;
        break;
      }
      value = (value as Record<string, unknown>)[key];
    }
    if (value !== null && value !== undefined) {
      const json = JSON.stringify(value);
      const headers: Record<string, string | number> = {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(json),
      };
      if (errors !== undefined) headers['x-trellis-graphql-errors'] = errors.length;
      sink.writeHead(this.#status, headers);
      sink.end(json);
      return;
    }
    const where = ['data', ...this.#select].join('.');
    if (errors === undefined) {
      sink.fail('graphql_not_found', `${where} is null`);
      return;
    }
    const code = errors[0]?.extensions?.code;
    if (code === 'NOT_FOUND') {
      sink.fail('graphql_not_found', messages(errors));
      return;
    }
    const failed: ErrorCode = 'graphql_operation_failed';
    sink.fail(failed, messages(errors), typeof code === 'string' ? STATUS_BY_CODE[code] : undefined);
  }

  error(code: ErrorCode, detail: string, sink: ResponseSink): void {
    sink.fail(code, detail);
  }
}
