import type { Logger } from 'pino';
import { Gateway } from '../proxy/gateway.js';
import type { FromWorker, ToWorker } from './cluster-primary.js';

/** A worker: serves traffic with the config versions its primary sends, in order. */
export function runWorker(log: Logger): void {
  const gateway = new Gateway(log);
  const send = (m: FromWorker) => process.send?.(m);
  let queue: Promise<void> = Promise.resolve();
  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'apply') {
      queue = queue.then(async () => {
        try {
          // The same version again (a hello racing a reload) is already applied.
          if (gateway.snapshot?.version !== msg.version)
            await gateway.apply(msg.config, msg.version, msg.hash);
          send({ type: 'applied', seq: msg.seq, version: msg.version, ports: gateway.ports() });
        } catch (err) {
          send({ type: 'failed', seq: msg.seq, version: msg.version, error: (err as Error).message });
        }
      });
    } else if (msg.type === 'drain') {
      void drainAndExit(msg.deadlineMs);
    } else if (msg.type === 'query') {
      gateway.query(msg.kind).then(
        (data) => send({ type: 'answer', id: msg.id, data }),
        (err: Error) => send({ type: 'answer', id: msg.id, data: { error: err.message } }),
      );
    }
  });
  const drainAndExit = async (deadlineMs: number) => {
    if (gateway.draining) return;
    await gateway.drain(deadlineMs);
    process.exit(0);
  };
  // The primary decides about reloads; a signal sent to the whole group must not stop a worker early.
  process.on('SIGHUP', () => {});
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => void drainAndExit(gateway.snapshot?.config.gateway.drainTimeout ?? 30_000));
  process.on('disconnect', () => void drainAndExit(5_000));
  send({ type: 'hello' });
}
