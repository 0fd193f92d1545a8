// A small GraphQL upstream for examples/graphql.yaml, built on the `graphql` package over node:http: GraphQL over
// HTTP (GET with ?query=, POST of application/json, batches as arrays) for a tiny user directory. A missing user is
// `null`; `user(id: "missing")` answers an error with extensions.code NOT_FOUND; `secret` answers FORBIDDEN.
// Usage: node examples/graphql-service.js [port]   (default 4000, loopback only)
import { createServer } from 'node:http';
import { buildSchema, execute, GraphQLError, parse, validate } from 'graphql';

const port = Number(process.argv[2] ?? process.env.GRAPHQL_DEMO_PORT ?? 4000);

const schema = buildSchema(`
  type User { id: ID! name: String! email: String friends(first: Int): [User!]! }
  input NewUser { name: String! email: String }
  type Query { user(id: ID!): User  users(first: Int): [User!]!  secret: String }
  type Mutation { createUser(input: NewUser!): User! }
`);

const users = [
  { id: '1', name: 'Ada Lovelace', email: 'ada@example.com' },
  { id: '2', name: 'Grace Hopper', email: 'grace@example.com' },
  { id: '3', name: 'Edsger Dijkstra', email: null },
];
const withFriends = (u) => ({
  ...u,
  friends: ({ first }) =>
    users
      .filter((x) => x.id !== u.id)
      .slice(0, first ?? 10)
      .map(withFriends),
});

const root = {
  user: ({ id }) => {
    if (id === 'missing')
      throw new GraphQLError(`user ${id} not found`, { extensions: { code: 'NOT_FOUND' } });
    const u = users.find((x) => x.id === id);
    return u === undefined ? null : withFriends(u);
  },
  users: ({ first }) => users.slice(0, first ?? users.length).map(withFriends),
  secret: () => {
    throw new GraphQLError('not for you', { extensions: { code: 'FORBIDDEN' } });
  },
  createUser: ({ input }) => {
    const u = { id: String(users.length + 1), name: input.name, email: input.email ?? null };
    users.push(u);
    return withFriends(u);
  },
};

function run({ query, operationName, variables }) {
  if (typeof query !== 'string') return { errors: [{ message: 'no query' }] };
  let document;
  try {
    document = parse(query);
  } catch (err) {
    return { errors: [err.toJSON()] };
  }
  const invalid = validate(schema, document);
  if (invalid.length > 0) return { errors: invalid.map((e) => e.toJSON()) };
  return execute({ schema, document, rootValue: root, operationName, variableValues: variables });
}

createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let out;
    try {
      if (req.method === 'GET') {
        const url = new URL(req.url, 'http://x');
        const v = url.searchParams.get('variables');
        out = await run({
          query: url.searchParams.get('query') ?? undefined,
          operationName: url.searchParams.get('operationName') ?? undefined,
          variables: v ? JSON.parse(v) : undefined,
        });
      } else {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        out = Array.isArray(body) ? await Promise.all(body.map(run)) : await run(body);
      }
    } catch (err) {
      out = { errors: [{ message: err.message }] };
    }
    const text = JSON.stringify(out);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
}).listen(port, '127.0.0.1', () =>
  process.stderr.write(`graphql-service: http://127.0.0.1:${port}/graphql\n`),
);
