import type { Logger } from 'pino';
import { Gateway } from '../proxy/gateway.js';
import type { Applier } from './supervisor.js';

/** `--workers 1`: the gateway runs in this process. */
export class LocalApplier implements Applier {
  readonly gateway: Gateway;
  #ready = false;

  constructor(log: Logger) {
    this.gateway = new Gateway(log);
  }

  async apply(config: Parameters<Gateway['apply']>[0], version: number, hash: string): Promise<void> {
    await this.gateway.apply(config, version, hash);
    this.#ready = true;
  }

  drain(deadlineMs: number): Promise<void> {
    this.#ready = false;
    return this.gateway.drain(deadlineMs);
  }

  ready(): boolean {
    return this.#ready && !this.gateway.draining;
  }

  status(): Record<string, unknown> {
    return {
      version: this.gateway.snapshot?.version ?? 0,
      draining: this.gateway.draining,
      workers: [
        { pid: process.pid, version: this.gateway.snapshot?.version ?? 0, ports: this.gateway.ports() },
      ],
    };
  }
}
