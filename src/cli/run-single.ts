import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { METRICS_CONTENT_TYPE } from '../observability/metrics.js';
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

  config(): Config | undefined {
    return this.gateway.snapshot?.config;
  }

  metrics(): Promise<{ contentType: string; body: string }> | undefined {
    const m = this.gateway.metrics;
    if (m === undefined) return undefined;
    return m.registry.metrics().then((body) => ({ contentType: METRICS_CONTENT_TYPE, body }));
  }

  async runtime(): Promise<Array<{ pid: number; routes: unknown; services: unknown }>> {
    return [(await this.gateway.query('runtime')) as { pid: number; routes: unknown; services: unknown }];
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
