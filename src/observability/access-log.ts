import pino from 'pino';
import type { Exchange } from '../proxy/exchange.js';

export interface AccessLog {
  readonly output: string;
  write(ex: Exchange): void;
  close(): Promise<void>;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/**
 * One JSON line per request, written through pino's asynchronous destination (sonic-boom) so that a slow disk
 * or pipe never stalls request handling: lines are queued and written in batches. The record is flat and has
 * no level; it is serialized here in one JSON.stringify call.
 */
export async function createAccessLog(
  output: string,
  onError: (err: Error) => void,
): Promise<AccessLog | undefined> {
  if (output === 'off') return undefined;
  const dest = pino.destination({ dest: output === 'stdout' ? 1 : output, sync: false, mkdir: false });
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
  // Later write errors (disk full, closed pipe) lose log lines, never requests.
  let broken = false;
  dest.on('error', (err: Error) => {
    if (!broken) onError(err);
    broken = true;
  });
  return {
    output,
    write(ex: Exchange) {
      if (broken) return;
      const end = performance.now();
      const record = {
        time: new Date().toISOString(),
        requestId: ex.requestId,
        client: ex.req.socket.remoteAddress,
        method: ex.method,
        host: ex.host,
        path: ex.path,
        listener: ex.listener.name,
        route: ex.route?.name,
        service: ex.service?.name,
        endpoint: ex.endpoint?.authority,
        status: ex.res.headersSent ? ex.res.statusCode : ex.status,
        code: ex.errorCode,
        outcome: ex.outcome,
        attempts: ex.attempts,
        retryBudgetExhausted: ex.retryBudgetExhausted || undefined,
        bytesIn: ex.bytesIn,
        bytesOut: ex.bytesOut,
        durationMs: round(end - ex.startedAt),
        upstreamMs: ex.upstreamStartedAt
          ? round((ex.upstreamEndedAt || end) - ex.upstreamStartedAt)
          : undefined,
      };
      dest.write(`${JSON.stringify(record)}\n`);
    },
    close() {
      return new Promise((resolve) => {
        try {
          dest.flushSync();
        } catch {
          // not yet open, or already closed
        }
        dest.end();
        resolve();
      });
    },
  };
}
