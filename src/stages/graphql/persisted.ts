/**
 * Persisted-query allow-lists: the documents (or bare hashes) a `graphql` policy in `persistedQueries.mode:
 * allow-list` lets through, keyed by the SHA-256 of the document text (hex, as Apollo's automatic persisted
 * queries send it in `extensions.persistedQuery.sha256Hash`). Loaded and parsed once per config.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type DocumentNode, GraphQLError, Kind, parse } from 'graphql';

export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

export interface AllowedDocument {
  readonly hash: string;
  /** The text, when known (a bare hash has none). */
  readonly text: string | undefined;
  /** Names of the operations the document defines. */
  readonly operations: readonly string[];
}

export interface AllowListSource {
  readonly manifest?: string | undefined;
  readonly documents: readonly string[];
  readonly hashes: readonly string[];
}

/** A problem in an allow-list, with the path below `persistedQueries` it belongs to. */
export class AllowListError extends Error {
  constructor(
    readonly path: readonly (string | number)[],
    message: string,
  ) {
    super(message);
  }
}

/** Parses a document of the allow-list; a syntax error names its line and column. */
export function parseDocument(text: string, where: string, path: readonly (string | number)[]): DocumentNode {
  try {
    return parse(text, { noLocation: false });
  } catch (err) {
    if (err instanceof GraphQLError) {
      const at = err.locations?.[0];
      throw new AllowListError(
        path,
        `${where}: ${err.message}${at !== undefined ? ` (line ${at.line}, column ${at.column})` : ''}`,
      );
    }
    throw err;
  }
}

function operationsOf(doc: DocumentNode): string[] {
  const out: string[] = [];
  for (const d of doc.definitions)
    if (d.kind === Kind.OPERATION_DEFINITION && d.name !== undefined) out.push(d.name.value);
  return out;
}

interface ManifestEntry {
  readonly hash: string | undefined;
  readonly text: string;
}

/**
 * A manifest file: Apollo's persisted query manifest (`{ "format": "apollo-persisted-query-manifest",
 * "operations": [{ "id", "body", ... }] }`) or a plain object of `{ "<sha256>": "<document>" }`.
 */
function readManifest(file: string): ManifestEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new AllowListError(['manifest'], `${file}: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new AllowListError(['manifest'], `${file}: expected a JSON object`);
  const obj = raw as Record<string, unknown>;
  if (Array.isArray(obj.operations)) {
    return obj.operations.map((o, i) => {
      const e = o as { id?: unknown; body?: unknown };
      if (typeof e?.body !== 'string')
        throw new AllowListError(['manifest'], `${file}: operations[${i}].body: expected a string`);
      return { hash: typeof e.id === 'string' ? e.id : undefined, text: e.body };
    });
  }
  return Object.entries(obj).map(([hash, text]) => {
    if (typeof text !== 'string')
      throw new AllowListError(['manifest'], `${file}: "${hash}": expected a document string`);
    return { hash, text };
  });
}

/** The allow-list by hash. Throws AllowListError for a file that cannot be read, a bad document or hash. */
export function loadAllowList(src: AllowListSource): Map<string, AllowedDocument> {
  const out = new Map<string, AllowedDocument>();
  const addText = (text: string, claimed: string | undefined, where: string, path: (string | number)[]) => {
    const doc = parseDocument(text, where, path);
    const hash = sha256Hex(text);
    if (claimed !== undefined && claimed.toLowerCase() !== hash)
      throw new AllowListError(path, `${where}: its id ${claimed} is not the SHA-256 of its text (${hash})`);
    out.set(hash, { hash, text, operations: operationsOf(doc) });
  };
  if (src.manifest !== undefined) {
    const file = src.manifest;
    readManifest(file).forEach((e, i) => {
      addText(e.text, e.hash, `${file} entry ${i}`, ['manifest']);
    });
  }
  src.documents.forEach((text, i) => {
    addText(text, undefined, `documents[${i}]`, ['documents', i]);
  });
  for (const h of src.hashes) {
    const hash = h.toLowerCase();
    if (!out.has(hash)) out.set(hash, { hash, text: undefined, operations: [] });
  }
  return out;
}
