/**
 * `translate: { type: graphql }`: a REST endpoint runs one named GraphQL operation against the route's service
 * (a POST of `{ query, operationName, variables }`), with variables from the path parameters, the query string
 * and the JSON body, and answers with a selection of the result (`data.user`) or a problem+json reply mapped
 * from the GraphQL `errors` (docs/graphql.md). The document is parsed and checked once, at config load; a
 * request costs the variable lookups, one JSON encode and one JSON parse. The forwarding is the route's own:
 * balancing, retries (the body is kept), timeouts over the whole response, outlier detection, metrics.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { type DocumentNode, GraphQLError, Kind, type OperationDefinitionNode, parse } from 'graphql';
import { z } from 'zod';
import { byteSize, pathValue } from '../../config/primitives.js';
import type { LocalReply, StageContext } from '../../proxy/stage.js';
import type { TranslatedRequest, Translator } from '../../proxy/translate.js';
import type { TranslateKind } from '../kinds.js';
import { GraphqlResponse, parseSelect } from './response.js';
import { buildVariables, parseSource, planVariables, type Source, VariableError } from './variables.js';

const schema = z
  .strictObject({
    query: z.string().min(1).optional().describe('The GraphQL document, inline (one or more operations).'),
    queryFile: z
      .string()
      .min(1)
      .optional()
      .describe('A file holding the GraphQL document (relative to the config file), instead of `query`.'),
    operationName: z
      .string()
      .regex(/^[_A-Za-z][_0-9A-Za-z]*$/, { message: 'expected a GraphQL name such as "GetUser"' })
      .optional()
      .describe('The operation to run; may be omitted when the document has exactly one.'),
    path: pathValue.default('/graphql').describe('Path of the GraphQL endpoint on the upstream.'),
    variables: z
      .record(z.string(), z.string())
      .default({})
      .describe(
        'Where variables come from: `path.NAME` (a path parameter of `match.path.template`), `query.NAME`, `body.NAME` (a field of the JSON body) or `body` (the whole JSON body, for an input object). A variable not listed is looked up by its own name in the path parameters, then the query string, then the body.',
      ),
    select: z
      .string()
      .regex(/^data(?:\.[^.]+)*$/, {
        message: 'expected a path into the response such as "data" or "data.user"',
      })
      .default('data')
      .describe(
        'The part of the GraphQL response sent to the client: `data`, or a path below it (`data.user`). A null there is 404 `graphql_not_found`.',
      ),
    status: z
      .number()
      .int()
      .min(200)
      .max(299)
      .default(200)
      .describe('Status of a successful reply (201 for an endpoint that creates).'),
    maxBodyBytes: byteSize
      .prefault('1MiB')
      .describe("Largest JSON request body; the route's `limits.maxBodyBytes` caps it."),
    maxResponseBytes: byteSize
      .prefault('8MiB')
      .describe('Largest GraphQL response read from the upstream (502 `graphql_upstream_invalid` beyond).'),
  })
  .refine((c) => (c.query === undefined) !== (c.queryFile === undefined), {
    message: 'expected exactly one of `query` (inline) or `queryFile`',
  })
  .describe('REST → GraphQL: run one named GraphQL operation (docs/graphql.md).');

export type GraphqlTranslateConfig = z.output<typeof schema>;

/** A problem with the config, at a path below `translate`. */
class ConfigProblem extends Error {
  constructor(
    readonly path: readonly (string | number)[],
    message: string,
  ) {
    super(message);
  }
}

interface Prepared {
  readonly doc: DocumentNode;
  readonly op: OperationDefinitionNode;
  readonly text: string;
  readonly mapping: Record<string, Source>;
}

function prepare(c: GraphqlTranslateConfig): Prepared {
  let text: string;
  const at = c.query !== undefined ? 'query' : 'queryFile';
  if (c.query !== undefined) text = c.query;
  else {
    try {
      text = readFileSync(c.queryFile!, 'utf8');
    } catch (err) {
      throw new ConfigProblem(['queryFile'], `cannot read ${c.queryFile}: ${(err as Error).message}`);
    }
  }
  let doc: DocumentNode;
  try {
    doc = parse(text);
  } catch (err) {
    if (!(err instanceof GraphQLError)) throw err;
    const loc = err.locations?.[0];
    throw new ConfigProblem(
      [at],
      `${err.message}${loc !== undefined ? ` (line ${loc.line}, column ${loc.column})` : ''}`,
    );
  }
  const ops = doc.definitions.filter(
    (d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION,
  );
  let op: OperationDefinitionNode | undefined;
  if (c.operationName !== undefined) {
    op = ops.find((o) => o.name?.value === c.operationName);
    if (op === undefined) {
      const names = ops.map((o) => o.name?.value).filter((n) => n !== undefined);
      throw new ConfigProblem(
        ['operationName'],
        `no operation "${c.operationName}" in the document${names.length > 0 ? `; it has: ${names.join(', ')}` : ''}`,
      );
    }
  } else if (ops.length !== 1) {
    throw new ConfigProblem(
      ['operationName'],
      ops.length === 0 ? 'the document has no operation' : 'the document has several operations: name one',
    );
  } else op = ops[0]!;
  if (op.operation === 'subscription')
    throw new ConfigProblem([at], 'a subscription cannot be run as a REST call (use a query or a mutation)');
  const declared = new Set((op.variableDefinitions ?? []).map((d) => d.variable.name.value));
  const mapping: Record<string, Source> = {};
  for (const [name, src] of Object.entries(c.variables)) {
    if (!declared.has(name))
      throw new ConfigProblem(
        ['variables', name],
        `the operation declares no variable $${name}${declared.size > 0 ? ` (it has: ${[...declared].map((d) => `$${d}`).join(', ')})` : ''}`,
      );
    const s = parseSource(src);
    if (s === undefined)
      throw new ConfigProblem(
        ['variables', name],
        `expected "path.NAME", "query.NAME", "body.NAME" or "body", got "${src}"`,
      );
    mapping[name] = s;
  }
  return { doc, op, text, mapping };
}

function resolveQueryFile(c: GraphqlTranslateConfig, baseDir: string): GraphqlTranslateConfig {
  if (c.queryFile === undefined || isAbsolute(c.queryFile)) return c;
  return { ...c, queryFile: resolve(baseDir, c.queryFile) };
}

const JSON_TYPE = /^application\/(?:[a-z0-9.+-]*\+)?json\s*(?:;|$)/i;

function invalid(detail: string): LocalReply {
  return { kind: 'error', code: 'graphql_variable_invalid', detail };
}

export const graphqlTranslateKind: TranslateKind<GraphqlTranslateConfig> = {
  type: 'graphql',
  schema: schema as unknown as TranslateKind<GraphqlTranslateConfig>['schema'],
  resolvePaths: resolveQueryFile,
  validate(c, ctx) {
    try {
      // Validation sees the config before its paths are resolved (load resolves them after the checks).
      prepare(resolveQueryFile(c, ctx.baseDir));
    } catch (err) {
      if (!(err instanceof ConfigProblem)) throw err;
      ctx.issue(err.path, err.message);
    }
  },
  compile(c, ctx) {
    let p: Prepared;
    try {
      p = prepare(c);
    } catch (err) {
      if (!(err instanceof ConfigProblem)) throw err;
      throw new Error(`route ${ctx.route.name}: translate.${err.path.join('.')}: ${err.message}`);
    }
    const plans = planVariables(p.op, p.mapping);
    const operationName = p.op.name?.value;
    // The body up to the variables is the same for every request: encoded once.
    const prefix = `{"query":${JSON.stringify(p.text)}${operationName !== undefined ? `,"operationName":${JSON.stringify(operationName)}` : ''},"variables":`;
    const select = parseSelect(c.select);
    const needsBody = plans.some(
      (v) => v.source.from === 'body' || v.source.from === 'body-whole' || v.source.from === 'any',
    );
    const upstreamPath = c.path;
    const headers = {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      // The reply is parsed here: no compression.
      'accept-encoding': 'identity',
    };

    const translator: Translator = {
      maxBodyBytes: c.maxBodyBytes,
      wantsBody: (sc) => needsBody && sc.method !== 'GET' && sc.method !== 'HEAD',
      request(sc: StageContext, body: Buffer): TranslatedRequest | LocalReply {
        if (operationName !== undefined) sc.operation = operationName;
        let json: Record<string, unknown> | undefined;
        if (body.length > 0) {
          const ct = String(sc.headers['content-type'] ?? '');
          if (!JSON_TYPE.test(ct)) return invalid(`expected a JSON body (application/json), got "${ct}"`);
          let v: unknown;
          try {
            v = JSON.parse(body.toString('utf8'));
          } catch {
            return invalid('the body is not valid JSON');
          }
          if (typeof v !== 'object' || v === null || Array.isArray(v))
            return invalid('the body is not a JSON object');
          json = v as Record<string, unknown>;
        }
        let variables: Record<string, unknown>;
        try {
          variables = buildVariables(plans, {
            params: sc.params,
            query: new URLSearchParams(sc.query),
            body: json,
          });
        } catch (err) {
          if (err instanceof VariableError) return invalid(err.message);
          throw err;
        }
        return {
          method: 'POST',
          path: upstreamPath,
          headers,
          body: Buffer.from(`${prefix}${JSON.stringify(variables)}}`),
          wholeResponse: true,
          response: new GraphqlResponse(select, c.status, c.maxResponseBytes),
        };
      },
    };
    return { translator };
  },
};
