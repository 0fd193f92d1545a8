/**
 * A real GraphQL server for the tests: the `graphql` package's own executor over node:http, speaking GraphQL over
 * HTTP (GET with `query`/`variables`, POST of application/json, batches as arrays) with Apollo's automatic
 * persisted queries (a hash-only request for an unknown hash answers PersistedQueryNotFound). Records every
 * request it executes.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  buildSchema,
  type ExecutionResult,
  execute,
  GraphQLError,
  type GraphQLFormattedError,
  parse,
  validate,
} from 'graphql';

const sdl = `
  type User { id: ID! name: String! age: Int friends(first: Int): [User!]! }
  type Query {
    user(id: ID!): User
    users(first: Int, active: Boolean): [User!]!
    secret: String
    boom: String
  }
  input NewUser { name: String! age: Int }
  type Mutation { createUser(input: NewUser!): User! }
`;
export const graphqlSchema = buildSchema(sdl);

const USERS = [
  { id: '1', name: 'Ada', age: 36 },
  { id: '2', name: 'Grace', age: 45 },
  { id: '3', name: 'Linus', age: 28 },
];

const notFound = (what: string) =>
  new GraphQLError(`${what} not found`, { extensions: { code: 'NOT_FOUND' } });

const user = (u: { id: string; name: string; age: number }) => ({
  ...u,
  friends: ({ first }: { first?: number }) =>
    USERS.filter((x) => x.id !== u.id)
      .slice(0, first ?? 10)
      .map(user),
});

const root = {
  user: ({ id }: { id: string }) => {
    if (id === 'missing') throw notFound(`user ${id}`);
    const u = USERS.find((x) => x.id === id);
    return u === undefined ? null : user(u);
  },
  users: ({ first }: { first?: number }) => USERS.slice(0, first ?? USERS.length).map(user),
  secret: () => {
    throw new GraphQLError('not allowed', { extensions: { code: 'FORBIDDEN' } });
  },
  boom: () => {
    throw new Error('resolver failed');
  },
  createUser: ({ input }: { input: { name: string; age?: number } }) =>
    user({ id: String(USERS.length + 1), name: input.name, age: input.age ?? 0 }),
};

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  query: string | undefined;
  operationName: string | undefined;
  variables: Record<string, unknown> | undefined;
}

export interface GraphqlServer {
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  readonly server: Server;
  close(): Promise<void>;
}

interface Body {
  query?: string;
  operationName?: string;
  variables?: Record<string, unknown>;
  extensions?: { persistedQuery?: { sha256Hash?: string } };
}

export async function startGraphqlServer(): Promise<GraphqlServer> {
  const seen: SeenRequest[] = [];
  const apq = new Map<string, string>();

  const run = (b: Body, req: IncomingMessage): ExecutionResult | { errors: GraphQLFormattedError[] } => {
    let query = b.query;
    const hash = b.extensions?.persistedQuery?.sha256Hash;
    if (hash !== undefined) {
      if (query === undefined) {
        query = apq.get(hash);
        if (query === undefined)
          return {
            errors: [
              { message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } },
            ],
          };
      } else apq.set(createHash('sha256').update(query).digest('hex'), query);
    }
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      query,
      operationName: b.operationName,
      variables: b.variables,
    });
    if (query === undefined) return { errors: [{ message: 'no query' }] };
    let doc: ReturnType<typeof parse>;
    try {
      doc = parse(query);
    } catch (err) {
      return { errors: [(err as GraphQLError).toJSON()] };
    }
    const invalid = validate(graphqlSchema, doc);
    if (invalid.length > 0) return { errors: invalid.map((e) => e.toJSON()) };
    return execute({
      schema: graphqlSchema,
      document: doc,
      rootValue: root,
      variableValues: b.variables,
      operationName: b.operationName,
    }) as ExecutionResult;
  };

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/slow') {
        setTimeout(() => send(res, 200, { data: { slow: true } }), 2000);
        return;
      }
      if (url.pathname === '/not-json') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>oops</html>');
        return;
      }
      try {
        if (req.method === 'GET') {
          const v = url.searchParams.get('variables');
          const e = url.searchParams.get('extensions');
          const b: Body = {
            query: url.searchParams.get('query') ?? undefined,
            operationName: url.searchParams.get('operationName') ?? undefined,
            variables: v ? JSON.parse(v) : undefined,
            extensions: e ? JSON.parse(e) : undefined,
          };
          send(res, 200, run(b, req));
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body | Body[];
        send(res, 200, Array.isArray(body) ? body.map((b) => run(b, req)) : run(body, req));
      } catch (err) {
        send(res, 400, { errors: [{ message: (err as Error).message }] });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
