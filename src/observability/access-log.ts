import pino from 'pino';
import { ACCESS_LOG_FIELDS, type AccessLogConfig } from '../config/schema.js';
import type { Exchange } from '../proxy/exchange.js';
import type { PolicyDecision } from '../stages/policy.js';

export interface AccessLog {
  readonly output: string;
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
};

/** `{ "<policy>": "allow" | "deny" | "shadow_deny" | "error" }` of the policies that ran; undefined when none did. */
function decisionsRecord(list: readonly PolicyDecision[] | undefined): Record<string, string> | undefined {
  if (list === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const d of list) out[d.policy] = d.decision;
  return out;
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

/**
 * One JSON line per request, written through pino's asynchronous destination (sonic-boom) so that a slow disk
 * or pipe never stalls request handling: lines are queued and written in batches of 8 KiB, or every 250 ms. The record is flat and has
 * no level; it is serialized here in one JSON.stringify call.
 */
export async function createAccessLog(
  output: string,
  onError: (err: Error) => void,
): Promise<AccessLog | undefined> {
  if (output === 'off') return undefined;
  // Batched: one write system call per BATCH_BYTES of lines instead of one per request (the unbatched access log
  // cost more CPU than the whole policy chain, docs/benchmarks.md); a timer writes a quiet gateway's lines.
  const dest = pino.destination({
    dest: output === 'stdout' ? 1 : output,
    sync: false,
    mkdir: false,
    minLength: BATCH_BYTES,
  });
  // The file opens in the background: wait for it, so that a path we cannot write is a failed reload (the old
  // config keeps serving) rather than an unhandled error later.
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => reject(new Error(`access log ${output}: ${err.message}`));
    dest.once('error', fail);
    dest.once('ready', () => {
      dest.off('error', fail);
      resolve();
    });
  });
  const flusher = setInterval(() => {
    try {
      dest.flush();
    } catch {
      // a write in flight; the next tick writes what is left
    }
  }, FLUSH_MS);
  flusher.unref();
  // Later write errors (disk full, closed pipe) lose log lines, never requests.
  let broken = false;
  dest.on('error', (err: Error) => {
    if (!broken) onError(err);
    broken = true;
  });
  let sample = 1;
  let fields: readonly Field[] = ACCESS_LOG_FIELDS;
  let readers = fields.map((f) => READ[f]);
  return {
    output,
    setOptions(o) {
      sample = o.sample;
      fields = o.fields ?? ACCESS_LOG_FIELDS;
      readers = fields.map((f) => READ[f]);
    },
    write(ex: Exchange) {
      if (broken) return;
      // Sampling never drops an error: a 5xx or a reply Trellis made itself is always logged.
      if (sample < 1 && ex.errorCode === undefined && ex.res.statusCode < 500 && Math.random() >= sample)
        return;
      const end = performance.now();
      const record: Record<string, unknown> = {};
      for (let i = 0; i < fields.length; i++) record[fields[i]!] = readers[i]!(ex, end);
      dest.write(`${JSON.stringify(record)}\n`);
    },
    close() {
      clearInterval(flusher);
      return new Promise((resolve) => {
        try {
          dest.flushSync();
        } catch {
          // not yet open, already closed, or a write in flight (end() below writes what is left)
        }
        // Resolve once what was queued is written, so a drain or a reload never loses the last lines; bounded,
        // so a stuck pipe never holds a shutdown.
        const timer = setTimeout(resolve, 2_000);
        timer.unref();
        dest.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        dest.end();
      });
    },
  };
}
