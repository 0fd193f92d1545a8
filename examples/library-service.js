// The gRPC service behind examples/transcoding.yaml (and test/transcode.test.ts): `library.v1.Library` from
// examples/protos/library.proto, on @grpc/grpc-js, with an in-memory store. Shelf `shelves/1` starts with two books.
// Book ids of the form `code-N` answer gRPC status N (for trying the status mapping: /v1/shelves/1/books/code-5);
// GetBook of `slow-N` answers after N ms; `flaky-N` fails N times with UNAVAILABLE, then answers.
// Every reply carries the header `x-library-served-by` (and `x-library-deadline-ms` when the call has a deadline) and the trailer `x-library-trailer: done`.
//
// Usage: node examples/library-service.js [port]   (default 50052, loopback only, cleartext h2c)
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const here = dirname(fileURLToPath(import.meta.url));
const protobufDir = dirname(createRequire(import.meta.url).resolve('protobufjs/package.json'));

/** The proto, loaded with protobufjs (google/api/* from the copies protobufjs ships). */
function loadRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (target.startsWith('google/')) return join(protobufDir, target);
    return origin === '' ? target : join(dirname(origin), target);
  };
  root.loadSync(join(here, 'protos/library.proto'));
  root.resolveAll();
  return root;
}

const root = loadRoot();
const type = (name) => root.lookupType(`library.v1.${name}`);
const codec = (t) => ({
  serialize: (obj) => Buffer.from(t.encode(t.fromObject(obj)).finish()),
  deserialize: (bytes) => t.toObject(t.decode(bytes), { longs: String, enums: String, defaults: true }),
});

function method(name, req, res, requestStream = false, responseStream = false) {
  const a = codec(type(req));
  const b = res === 'Empty' ? codec(root.lookupType('google.protobuf.Empty')) : codec(type(res));
  return {
    path: `/library.v1.Library/${name}`,
    requestStream,
    responseStream,
    requestSerialize: a.serialize,
    requestDeserialize: a.deserialize,
    responseSerialize: b.serialize,
    responseDeserialize: b.deserialize,
    originalName: name,
  };
}

export const libraryService = {
  GetBook: method('GetBook', 'GetBookRequest', 'Book'),
  ListBooks: method('ListBooks', 'ListBooksRequest', 'ListBooksResponse'),
  CreateBook: method('CreateBook', 'CreateBookRequest', 'Book'),
  UpdateBook: method('UpdateBook', 'UpdateBookRequest', 'Book'),
  DeleteBook: method('DeleteBook', 'DeleteBookRequest', 'Empty'),
  ArchiveBook: method('ArchiveBook', 'ArchiveBookRequest', 'Book'),
  GetTitle: method('GetTitle', 'GetBookRequest', 'Book'),
  WatchShelf: method('WatchShelf', 'WatchShelfRequest', 'BookEvent', false, true),
  ImportBooks: method('ImportBooks', 'Book', 'ImportSummary', true, false),
};

function seed() {
  return new Map([
    [
      'shelves/1/books/1',
      {
        name: 'shelves/1/books/1',
        title: 'The Dispossessed',
        author: 'Ursula K. Le Guin',
        pageCount: '9007199254740993',
        genre: 'FICTION',
        published: { seconds: 136598400, nanos: 0 },
        readTime: { seconds: 36000, nanos: 500000000 },
        stock: { value: 3 },
        tags: ['anarchy', 'physics'],
        labels: { shelf: 'classics' },
        rating: 4.5,
      },
    ],
    [
      'shelves/1/books/2',
      {
        name: 'shelves/1/books/2',
        title: 'A Brief History of Time',
        author: 'Stephen Hawking',
        pageCount: '256',
        genre: 'SCIENCE',
        tags: [],
        labels: {},
      },
    ],
  ]);
}

const status = (code, details) => Object.assign(new Error(details), { code, details });

/** A forced status for `.../books/code-N`, or undefined. */
function forced(name) {
  const m = /\/books\/code-(\d+)$/.exec(name ?? '');
  return m === null ? undefined : status(Number(m[1]), `forced status ${m[1]} for ${name}`);
}

function headers(call) {
  const md = new grpc.Metadata();
  md.set('x-library-served-by', 'library-service');
  // The call's deadline as the service sees it (grpc-timeout), in ms from now.
  const d = call.getDeadline();
  const ms = (d instanceof Date ? d.getTime() : Number(d)) - Date.now();
  if (Number.isFinite(ms)) md.set('x-library-deadline-ms', String(Math.round(ms)));
  return md;
}

function trailers() {
  const md = new grpc.Metadata();
  md.set('x-library-trailer', 'done');
  return md;
}

/** Starts the service on 127.0.0.1:`port` (0: any free port); resolves with its port and a close function. */
export async function startLibraryServer(port = 0) {
  const books = seed();
  const requestIds = new Set();
  let next = 3;
  const flaky = new Map();
  const reply = (call, callback, fn) => {
    const name = call.request.name ?? call.request.book?.name;
    // A forced status goes out before any metadata: a trailers-only reply, as most servers send early errors.
    const f = forced(name);
    if (f !== undefined) {
      callback(f, null, trailers());
      return;
    }
    // `.../books/flaky-N`: UNAVAILABLE (trailers-only) for the first N calls, then the book.
    const m = /\/books\/flaky-(\d+)$/.exec(name ?? '');
    if (m !== null) {
      const seen = (flaky.get(name) ?? 0) + 1;
      flaky.set(name, seen);
      if (seen <= Number(m[1])) {
        callback(status(grpc.status.UNAVAILABLE, `flaky: call ${seen} of ${name} refused`), null, trailers());
        return;
      }
      call.sendMetadata(headers(call));
      callback(null, { name, title: `flaky after ${seen - 1} failures` }, trailers());
      return;
    }
    call.sendMetadata(headers(call));
    try {
      callback(null, fn(call.request), trailers());
    } catch (err) {
      callback(err, null, trailers());
    }
  };
  const find = (name) => {
    const f = forced(name);
    if (f !== undefined) throw f;
    const b = books.get(name);
    if (b === undefined) throw status(grpc.status.NOT_FOUND, `book ${name} not found`);
    return b;
  };
  const handlers = {
    GetBook: (call, cb) => {
      // `.../books/slow-N`: answers after N ms (for deadlines).
      const slow = /\/books\/slow-(\d+)$/.exec(call.request.name);
      if (slow === null) reply(call, cb, (r) => find(r.name));
      else setTimeout(() => reply(call, cb, (r) => ({ name: r.name, title: 'slow' })), Number(slow[1]));
    },
    GetTitle: (call, cb) => reply(call, cb, (r) => find(r.name)),
    ListBooks: (call, cb) =>
      reply(call, cb, (r) => {
        if (r.parent !== 'shelves/1') throw status(grpc.status.NOT_FOUND, `shelf ${r.parent} not found`);
        let list = [...books.values()];
        if (r.genres.length > 0) list = list.filter((b) => r.genres.includes(b.genre));
        if (r.filter?.author) list = list.filter((b) => b.author === r.filter.author);
        if (r.filter?.inStock) list = list.filter((b) => (b.stock?.value ?? 0) > 0);
        const start = Number(r.pageToken || 0);
        const size = r.pageSize > 0 ? r.pageSize : 50;
        const page = list.slice(start, start + size);
        const more = start + size < list.length;
        return { books: page, nextPageToken: more ? String(start + size) : '' };
      }),
    CreateBook: (call, cb) =>
      reply(call, cb, (r) => {
        if (r.parent !== 'shelves/1') throw status(grpc.status.NOT_FOUND, `shelf ${r.parent} not found`);
        if (!r.book?.title) throw status(grpc.status.INVALID_ARGUMENT, 'book.title is required');
        if (r.requestId) {
          if (requestIds.has(r.requestId))
            throw status(grpc.status.ALREADY_EXISTS, `request ${r.requestId} was already made`);
          requestIds.add(r.requestId);
        }
        const book = { ...r.book, name: `${r.parent}/books/${next++}` };
        books.set(book.name, book);
        return book;
      }),
    UpdateBook: (call, cb) =>
      reply(call, cb, (r) => {
        const book = find(r.book?.name);
        const paths = r.updateMask?.paths ?? [];
        if (paths.length === 0) throw status(grpc.status.INVALID_ARGUMENT, 'update_mask is required');
        const camel = (p) => p.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
        for (const p of paths) book[camel(p)] = r.book[camel(p)];
        return book;
      }),
    DeleteBook: (call, cb) =>
      reply(call, cb, (r) => {
        find(r.name);
        books.delete(r.name);
        return {};
      }),
    ArchiveBook: (call, cb) =>
      reply(call, cb, (r) => {
        const book = find(r.name);
        book.labels = { ...book.labels, archived: r.reason || 'yes' };
        return book;
      }),
    WatchShelf: (call) => {
      const r = call.request;
      call.sendMetadata(headers(call));
      let seq = 0;
      const list = [...books.values()];
      const tick = () => {
        if (call.cancelled) return;
        if (seq >= r.count) {
          if (r.failWith > 0)
            call.emit('error', {
              ...status(r.failWith, `watch failed after ${seq} events`),
              metadata: trailers(),
            });
          else call.end(trailers());
          return;
        }
        seq++;
        call.write({ seq, book: list[(seq - 1) % list.length] });
        setTimeout(tick, r.delayMs);
      };
      tick();
    },
    ImportBooks: (call, cb) => {
      let count = 0;
      call.on('data', () => count++);
      call.on('end', () => cb(null, { count }));
    },
  };
  const server = new grpc.Server();
  server.addService(libraryService, handlers);
  const bound = await new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port: bound,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** A grpc-js client of the service (for benchmarks and tests). */
export const LibraryClient = grpc.makeGenericClientConstructor(libraryService, 'library.v1.Library');

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const port = Number(process.argv[2] ?? 50052);
  const s = await startLibraryServer(port);
  console.log(`library.v1.Library listening on 127.0.0.1:${s.port} (h2c)`);
}
