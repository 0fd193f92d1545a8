import pino, { type Logger } from 'pino';
import type { Exchange } from '../proxy/exchange.js';

export interface AccessLog {
  readonly output: string;
  write(ex: Exchange): void;
  close(): Promise<void>;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/**
 * One JSON line per request, written asynchronously (pino with a non-blocking destination) so that a slow
 * disk or pipe never stalls request handling.
 */
export function createAccessLog(output: string): AccessLog | undefined {
  if (output === 'off') return undefined;
  const dest = pino.destination({
    dest: output === 'stdout' ? 1 : output,
    sync: false,
    mkdir: false,
    minLength: 4096,
  });
  const log: Logger = pino(
    {
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
      formatters: { level: () => ({}) },
    },
    dest,
  );
  return {
    output,
    write(ex: Exchange) {
      const end = performance.now();
      log.info({
        requestId: ex.requestId,
        client: ex.req.socket.remoteAddress,
        method: ex.method,
        host: ex.host,
        path: ex.path,
        listener: ex.listener.name,
        route: ex.route?.name,
        endpoint: ex.endpoint?.authority,
        status: ex.res.headersSent ? ex.res.statusCode : ex.status,
        code: ex.errorCode,
        outcome: ex.outcome,
        bytesIn: ex.bytesIn,
        bytesOut: ex.bytesOut,
        durationMs: round(end - ex.startedAt),
        upstreamMs: ex.upstreamStartedAt
          ? round((ex.upstreamEndedAt || end) - ex.upstreamStartedAt)
          : undefined,
      });
    },
    close() {
      return new Promise((resolve) => {
        dest.flush?.(() => {
          dest.end();
          resolve();
        });
        if (!dest.flush) resolve();
      });
    },
  };
}
