/**
 * `graphql`: protects a GraphQL endpoint that the route passes through. Each request's operation is parsed with the
 * `graphql` package (from a GET's query string, or a POST body read up to `maxBodyBytes`) and measured without the
 * upstream's schema: size and tokens, depth, aliases, a cost estimate (src/stages/graphql/analyze.ts), whether it
 * asks for introspection; with `persistedQueries.mode: allow-list`, only known documents pass. A request over a
 * limit gets 400 with a code naming the limit and the measured value; a document not on the allow-list 403.
 * Operation names go to the access log (`operation`) and, bounded, to `trellis_graphql_operations_total`.
 */

import { resolve } from 'node:path';
import { type DocumentNode, GraphQLError, parse } from 'graphql';
import { z } from 'zod';
import { byteSize } from '../../config/primitives.js';
import type { ErrorCode } from '../../core/errors.js';
import type { LocalReply, StageContext, StageResult } from '../../proxy/stage.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';
import {
  type CostModel,
  InvalidOperation,
  measureOperation,
  type OperationMeasure,
  selectOperation,
} from './analyze.js';
import { countOperation } from './metrics.js';
import { type AllowedDocument, AllowListError, loadAllowList, sha256Hex } from './persisted.js';
import { fromBody, fromQueryString, type GraphqlParams, NotGraphql } from './request.js';

const limit = (what: string, dflt: number) =>
  z.number().int().nonnegative().default(dflt).describe(`${what} 0: no limit.`);

const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;
const graphqlName = z.string().regex(GRAPHQL_NAME, { message: 'expected a GraphQL name such as "GetUser"' });

const schema = z
  .strictObject({
    maxBodyBytes: byteSize
      .default(64 * 1024)
      .describe(
        'POST body bytes read to find the operation; a longer body is refused (400 `graphql_query_too_large`).',
      ),
    maxQueryBytes: byteSize.default(16 * 1024).describe('Bytes of the query document (UTF-8). 0: no limit.'),
    maxTokens: limit(
      'Lexical tokens of the query document (names, punctuation, values); parsing stops at the limit, so a huge document costs no more than this many tokens.',
      2000,
    ),
    maxDepth: limit(
      'Nesting of fields: `{ a }` is 1, `{ a { b } }` is 2; fragments count where they are spread.',
      10,
    ),
    maxAliases: limit('Fields with an alias in the operation, fragments counted where they are spread.', 15),
    maxCost: limit(
      'Estimated cost of the operation (docs/graphql.md: each field 1, list fields times their size).',
      5000,
    ),
    defaultListSize: z
      .number()
      .int()
      .nonnegative()
      .default(10)
      .describe('Size assumed for a list field whose size argument is absent or not an integer.'),
    listArguments: z
      .array(graphqlName)
      .default(['first', 'last', 'limit'])
      .describe('Arguments that give a list field its size: a field with one of them is a list.'),
    listFields: z
      .array(graphqlName)
      .default([])
      .describe(
        'Field names that return lists even without a size argument (cost `defaultListSize` times their selection).',
      ),
    introspection: z
      .boolean()
      .default(false)
      .describe('Allow `__schema` and `__type` (introspection). Off: 403 `graphql_introspection_denied`.'),
    maxBatchSize: z
      .number()
      .int()
      .min(1)
      .default(1)
      .describe(
        'Operations in one POST (a JSON array is a batch); limits apply to each, `maxCost` to their sum.',
      ),
    persistedQueries: z
      .strictObject({
        mode: z
          .enum(['off', 'allow-list'])
          .default('off')
          .describe(
            '`off`: any document within the limits (a hash-only Apollo APQ request passes to the upstream unmeasured); `allow-list`: only documents (by SHA-256) listed here, 403 `graphql_persisted_query_not_allowed` for others.',
          ),
        manifest: z
          .string()
          .optional()
          .describe(
            'A JSON file: Apollo\'s persisted query manifest (`operations[].body`), or an object of `{ "<sha256>": "<document>" }`.',
          ),
        documents: z.array(z.string()).default([]).describe('Documents allowed, inline.'),
        hashes: z
          .array(z.string().regex(/^[0-9a-fA-F]{64}$/, { message: 'expected 64 hex digits (a SHA-256)' }))
          .default([])
          .describe(
            'SHA-256 hashes of documents allowed whose text the gateway does not have (hash-only requests pass unmeasured).',
          ),
      })
      .prefault({})
      .describe('Persisted-query allow-list.'),
    metricOperations: z
      .array(graphqlName)
      .default([])
      .describe(
        'Operation names counted by name in `trellis_graphql_operations_total`, beside those of the allow-list documents; other names count as `other` (so a client cannot create series).',
      ),
  })
  .refine((c) => c.persistedQueries.mode === 'off' || hasEntries(c.persistedQueries), {
    path: ['persistedQueries'],
    message: 'mode allow-list needs a manifest, documents or hashes',
  })
  .describe(
    'GraphQL protection for a route that passes GraphQL through: depth, aliases, cost, size, introspection, persisted-query allow-list.',
  );

function hasEntries(p: { manifest?: string | undefined; documents: string[]; hashes: string[] }): boolean {
  return p.manifest !== undefined || p.documents.length > 0 || p.hashes.length > 0;
}

export type GraphqlPolicyConfig = z.output<typeof schema>;

/** Measures of one (document, operationName), kept so that a repeated query is not parsed again. */
interface Analysis {
  readonly measure: OperationMeasure;
  /** Kept only when the cost depends on variables, to measure again with them. */
  readonly doc: DocumentNode | undefined;
}

const CACHE_ENTRIES = 256;
const CACHE_KEY_CHARS = 4096;

/** Stage result of a refused request, with the code and type for the metric. */
class Refusal {
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly measure?: OperationMeasure,
  ) {}
}

const opType = (m: OperationMeasure | undefined) => m?.type ?? 'unknown';

/** Operation names in the access log: at most 200 characters (a client chooses them). */
const clip = (s: string | undefined) => (s !== undefined && s.length > 200 ? `${s.slice(0, 200)}…` : s);

export const graphqlPolicy: PolicyKind<GraphqlPolicyConfig> = {
  type: 'graphql',
  phase: PolicyPhase.waf,
  schema,
  resolvePaths: (c, baseDir) =>
    c.persistedQueries.manifest === undefined
      ? c
      : {
          ...c,
          persistedQueries: {
            ...c.persistedQueries,
            manifest: resolve(baseDir, c.persistedQueries.manifest),
          },
        },
  validate(c, ctx) {
    if (c.persistedQueries.mode === 'off') return;
    const pq = c.persistedQueries;
    try {
      loadAllowList(
        pq.manifest === undefined || ctx.baseDir === undefined
          ? pq
          : { ...pq, manifest: resolve(ctx.baseDir, pq.manifest) },
      );
    } catch (err) {
      if (!(err instanceof AllowListError)) throw err;
      ctx.issue(['persistedQueries', ...err.path], err.message);
    }
  },
  compile(c, ctx) {
    const name = ctx.name;
    let allowed: Map<string, AllowedDocument> | undefined;
    if (c.persistedQueries.mode === 'allow-list') {
      try {
        allowed = loadAllowList(c.persistedQueries);
      } catch (err) {
        if (!(err instanceof AllowListError)) throw err;
        throw new Error(`${ctx.source}.persistedQueries.${err.path.join('.')}: ${err.message}`);
      }
    }
    const known = new Set<string>(c.metricOperations);
    if (allowed !== undefined) for (const d of allowed.values()) for (const o of d.operations) known.add(o);
    const metricName = (m: OperationMeasure | undefined, requested: string | undefined): string => {
      const n = m?.name ?? requested;
      if (n === undefined) return m === undefined ? 'unknown' : 'anonymous';
      return known.has(n) ? n : 'other';
    };
    const model: CostModel = {
      listArguments: c.listArguments,
      listFields: new Set(c.listFields),
      defaultListSize: c.defaultListSize,
    };
    const cache = new Map<string, Analysis>();

    /** Parses and measures `text` (cached), or a Refusal. */
    const analyze = (text: string, operationName: string | undefined): Analysis | Refusal => {
      const key = text.length <= CACHE_KEY_CHARS ? `${operationName ?? ''}\u0000${text}` : undefined;
      if (key !== undefined) {
        const hit = cache.get(key);
        if (hit !== undefined) return hit;
      }
      if (c.maxQueryBytes > 0 && text.length > c.maxQueryBytes / 3) {
        const bytes = Buffer.byteLength(text);
        if (bytes > c.maxQueryBytes)
          return new Refusal(
            'graphql_query_too_large',
            `query of ${bytes} bytes exceeds maxQueryBytes ${c.maxQueryBytes}`,
          );
      }
      let doc: DocumentNode;
      try {
        doc = parse(text, { noLocation: true, maxTokens: c.maxTokens > 0 ? c.maxTokens : undefined });
      } catch (err) {
        if (!(err instanceof GraphQLError)) throw err;
        if (c.maxTokens > 0 && /contains more th(?:an|at) \d+ tokens/.test(err.message))
          return new Refusal(
            'graphql_query_too_large',
            `query has more than maxTokens ${c.maxTokens} tokens`,
          );
        const at = err.locations?.[0];
        return new Refusal(
          'graphql_request_invalid',
          `${err.message}${at !== undefined ? ` (line ${at.line}, column ${at.column})` : ''}`,
        );
      }
      let measure: OperationMeasure;
      try {
        measure = measureOperation(doc, selectOperation(doc, operationName), model, undefined);
      } catch (err) {
        if (err instanceof InvalidOperation) return new Refusal('graphql_request_invalid', err.message);
        throw err;
      }
      const a: Analysis = { measure, doc: measure.variableCost ? doc : undefined };
      if (key !== undefined) {
        if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
        cache.set(key, a);
      }
      return a;
    };

    /** The checks of one operation; its measure (for the metric), or a Refusal. */
    const checkOne = (p: GraphqlParams, get: boolean): OperationMeasure | Refusal | undefined => {
      let text = p.query;
      if (p.hash !== undefined) {
        if (text !== undefined && sha256Hex(text) !== p.hash)
          return new Refusal(
            'graphql_request_invalid',
            'extensions.persistedQuery.sha256Hash is not the SHA-256 of the query',
          );
        if (allowed !== undefined) {
          const d = allowed.get(p.hash);
          if (d === undefined)
            return new Refusal(
              'graphql_persisted_query_not_allowed',
              `persisted query ${p.hash} is not on the allow-list`,
            );
          text ??= d.text;
        }
        // A hash-only request for a document the gateway does not have: the upstream resolves it (APQ).
        if (text === undefined) return undefined;
      } else {
        if (text === undefined || text === '')
          return new Refusal('graphql_request_invalid', 'no query in the request');
        if (allowed !== undefined && !allowed.has(sha256Hex(text)))
          return new Refusal(
            'graphql_persisted_query_not_allowed',
            'the query is not on the persisted-query allow-list',
          );
      }
      const a = analyze(text, p.operationName);
      if (a instanceof Refusal) return a;
      let m = a.measure;
      if (a.doc !== undefined && p.variables !== undefined)
        m = measureOperation(a.doc, selectOperation(a.doc, p.operationName), model, p.variables);
      // GraphQL over HTTP: a GET must not change anything (a link or an image could make it, CSRF).
      if (get && m.type !== 'query')
        return new Refusal('graphql_request_invalid', `a ${m.type} cannot be sent with GET (use POST)`, m);
      if (m.introspection && !c.introspection)
        return new Refusal(
          'graphql_introspection_denied',
          'introspection (__schema, __type) is not allowed',
          m,
        );
      if (c.maxDepth > 0 && m.depth > c.maxDepth)
        return new Refusal('graphql_depth_exceeded', `depth ${m.depth} exceeds maxDepth ${c.maxDepth}`, m);
      if (c.maxAliases > 0 && m.aliases > c.maxAliases)
        return new Refusal(
          'graphql_aliases_exceeded',
          `${m.aliases} aliases exceed maxAliases ${c.maxAliases}`,
          m,
        );
      if (c.maxCost > 0 && m.cost > c.maxCost)
        return new Refusal('graphql_cost_exceeded', `cost ${m.cost} exceeds maxCost ${c.maxCost}`, m);
      return m;
    };

    const verdict = (sc: StageContext, list: readonly GraphqlParams[]): LocalReply | undefined => {
      const route = sc.route?.name ?? '';
      if (list.length > c.maxBatchSize) {
        countOperation(route, name, 'unknown', 'unknown', 'graphql_query_too_large');
        return refuse(
          new Refusal(
            'graphql_query_too_large',
            `batch of ${list.length} operations exceeds maxBatchSize ${c.maxBatchSize}`,
          ),
        );
      }
      const measures: (OperationMeasure | undefined)[] = [];
      let total = 0;
      for (let i = 0; i < list.length; i++) {
        const p = list[i]!;
        const r = checkOne(p, sc.method === 'GET' || sc.method === 'HEAD');
        if (r instanceof Refusal) {
          sc.operation = clip(r.measure?.name ?? p.operationName);
          countOperation(route, name, metricName(r.measure, p.operationName), opType(r.measure), r.code);
          return refuse(r, list.length > 1 ? i : undefined);
        }
        measures.push(r);
        total += r?.cost ?? 0;
      }
      if (c.maxCost > 0 && list.length > 1 && total > c.maxCost) {
        countOperation(route, name, 'unknown', 'unknown', 'graphql_cost_exceeded');
        return refuse(
          new Refusal('graphql_cost_exceeded', `batch cost ${total} exceeds maxCost ${c.maxCost}`),
        );
      }
      let names = '';
      for (let i = 0; i < list.length; i++) {
        const m = measures[i];
        const n = m?.name ?? list[i]!.operationName;
        if (n !== undefined) names = names === '' ? n : `${names},${n}`;
        countOperation(route, name, metricName(m, list[i]!.operationName), opType(m), 'allowed');
      }
      if (names !== '') sc.operation = clip(names);
      return undefined;
    };

    const refuse = (r: Refusal, index?: number): LocalReply => ({
      kind: 'error',
      code: r.code,
      detail: `policy ${name}: ${index !== undefined ? `batch entry ${index}: ` : ''}${r.detail}`,
    });
    const invalid = (sc: StageContext, err: unknown): LocalReply => {
      if (!(err instanceof NotGraphql)) throw err;
      countOperation(sc.route?.name ?? '', name, 'unknown', 'unknown', 'graphql_request_invalid');
      return refuse(new Refusal('graphql_request_invalid', err.message));
    };

    return {
      request: {
        name,
        onRequest: function graphqlGuard(sc: StageContext): StageResult {
          const method = sc.method;
          if (method === 'GET' || method === 'HEAD') {
            try {
              return verdict(sc, [fromQueryString(sc.query)]);
            } catch (err) {
              return invalid(sc, err);
            }
          }
          if (method === 'OPTIONS') return undefined; // a CORS preflight carries no operation
          if (method !== 'POST')
            return invalid(sc, new NotGraphql(`${method} is not a GraphQL request (GET or POST)`));
          const peek = sc.peekBody?.(c.maxBodyBytes);
          if (peek === undefined) return invalid(sc, new NotGraphql('POST without a body'));
          return peek.then(({ data, complete }) => {
            if (!complete) {
              countOperation(sc.route?.name ?? '', name, 'unknown', 'unknown', 'graphql_query_too_large');
              return refuse(
                new Refusal('graphql_query_too_large', `body exceeds maxBodyBytes ${c.maxBodyBytes}`),
              );
            }
            try {
              return verdict(sc, fromBody(String(sc.headers['content-type'] ?? ''), data));
            } catch (err) {
              return invalid(sc, err);
            }
          });
        },
      },
    };
  },
};
