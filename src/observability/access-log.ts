import { ACCESS_LOG_FIELDS, type AccessLogConfig } from '../config/schema.js';
import type { Exchange } from '../proxy/exchange.js';
import type { PolicyDecision } from '../stages/policy.js';
import { LineWriter } from './line-writer.js';

export interface AccessLog {
  readonly output: string;
  /** Lines lost: the queue behind a slow destination was full, or a write failed. */
  readonly dropped: number;
  /** Sampling and field selection: changed by a reload without reopening the output. */
  setOptions(o: Pick<AccessLogConfig, 'sample' | 'fields'>): void;
  write(ex: Exchange): void;
  close(): Promise<void>;
}

type Field = (typeof ACCESS_LOG_FIELDS)[number];

/**
 * How each field is read. The record never holds a query string, a header value, a cookie or a credential:
 * `path` is the normalized path without its query, and no field reads request headers. `consumer` is the name of
 * the authenticated consumer; `decisions` the outcome of each policy that ran, by policy name.
 */
const READ: Record<Field, (ex: Exchange, end: number) => unknown> = {
  time: isoNow,
  requestId: (ex) => ex.requestId,
  traceId: (ex) => ex.trace?.traceId,
  client: (ex) => ex.req.socket.remoteAddress,
  method: (ex) => ex.method,
  host: (ex) => ex.host,
  path: (ex) => ex.path,
  listener: (ex) => ex.listener.name,
  route: (ex) => ex.route?.name,
  service: (ex) => ex.service?.name,
  endpoint: (ex) => ex.endpoint?.authority,
  status: (ex) => (ex.res.headersSent ? ex.res.statusCode : ex.status),
  code: (ex) => ex.errorCode,
  outcome: (ex) => ex.outcome,
  attempts: (ex) => ex.attempts,
  retryBudgetExhausted: (ex) => ex.retryBudgetExhausted || undefined,
  bytesIn: (ex) => ex.bytesIn,
  bytesOut: (ex) => ex.bytesOut,
  durationMs: (ex, end) => round(end - ex.startedAt),
  upstreamMs: (ex, end) =>
    ex.upstreamStartedAt ? round((ex.upstreamEndedAt || end) - ex.upstreamStartedAt) : undefined,
  consumer: (ex) => ex.consumer?.name,
  decisions: (ex) => decisionsRecord(ex.decisions),
  operation: (ex) => ex.operation,
  api: (ex) => ex.apiVersion?.api,
  apiVersion: (ex) => ex.apiVersion?.version,
  waf: (ex) => ex.waf,
};

/** `{ "<policy>": "allow" | "deny" | "shadow_deny" | "error" }` of the policies that ran; undefined when none did. */
function decisionsRecord(list: readonly PolicyDecision[] | undefined): Record<string, string> | undefined {
  if (list === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const d of list) out[d.policy] = d.decision;
  return out;
}

/** `"name":`, once per field when the options change. */
const jsonKey = (f: string) => `${JSON.stringify(f)}:`;

/** A field's value as JSON; what JSON.stringify(record) wrote for it. */
function jsonValue(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return JSON.stringify(v) ?? 'null';
  }
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

// The timestamp, formatted once per millisecond rather than once per line.
let lastMs = -1;
let lastIso = '';
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** Lines are written in chunks of at least this many bytes, or after FLUSH_MS, whichever comes first. */
const BATCH_BYTES = 8 * 1024;
const FLUSH_MS = 250;
/** Full batches that may wait behind a slow write (512 KiB at most): past that, lines are dropped and counted. */
const MAX_PENDING = 64;

/**
 * One JSON line per request, written in batches off the request path (line-writer.ts) so that a slow disk or pipe
 * never stalls request handling: lines are queued and written 8 KiB at a time, or every 250 ms. The record is flat
 * and has no level; it is serialized here field by field.
 */
export async function createAccessLog(
  output: string,
  onError: (err: Error) => void,
): Promise<AccessLog | undefined> {
  if (output === 'off') return undefined;
  // Batched: one write system call per BATCH_BYTES of lines instead of one per request (the unbatched access log
  // cost more CPU than the whole policy chain, docs/benchmarks.md). Opening waits, so that a path we cannot
  // write is a failed reload (the old config keeps serving) rather than an error later; later write errors (disk
  // full, closed pipe) lose log lines, never requests.
  const out = await LineWriter.open({
    dest: output === 'stdout' ? 1 : output,
    batchBytes: BATCH_BYTES,
    flushMs: FLUSH_MS,
    maxPending: MAX_PENDING,
    onError,
  });
  let sample = 1;
  let fields: readonly Field[] = ACCESS_LOG_FIELDS;
  let readers = fields.map((f) => READ[f]);
  let keys = fields.map(jsonKey);
  return {
    output,
    get dropped() {
      return out.dropped;
    },
    setOptions(o) {
      sample = o.sample;
      fields = o.fields ?? ACCESS_LOG_FIELDS;
      readers = fields.map((f) => READ[f]);
      keys = fields.map(jsonKey);
    },
    write(ex: Exchange) {
      // Sampling never drops an error: a 5xx or a reply Trellis made itself is always logged.
      if (sample < 1 && ex.errorCode === undefined && ex.res.statusCode < 500 && Math.random() >= sample)
        return;
      const end = performance.now();
      // The JSON object written field by field: half the cost of building a record for JSON.stringify.
      let line = '{';
      for (let i = 0; i < readers.length; i++) {
        const v = readers[i]!(ex, end);
        if (v === undefined) continue;
        line += (line.length === 1 ? keys[i]! : `,${keys[i]!}`) + jsonValue(v);
      }
      out.write(`${line}}\n`);
    },
    close() {
      // Writes what is queued, so a drain or a reload never loses the last lines; bounded (2 s), so a stuck pipe
      // never holds a shutdown.
      return out.close();
    },
  };
}
