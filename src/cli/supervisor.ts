import { watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { formatConfigErrors, loadConfigFile, redactConfig } from '../config/index.js';
import type { Config } from '../config/schema.js';

/** Applies a validated config to whatever serves traffic: this process's gateway, or a set of workers. */
export interface Applier {
  apply(config: Config, version: number, hash: string): Promise<void>;
  drain(deadlineMs: number): Promise<void>;
  ready(): boolean;
  status(): Record<string, unknown>;
}

export interface ActiveConfig {
  config: Config;
  version: number;
  hash: string;
  secretPaths: string[][];
  loadedAt: string;
}

/**
 * Owns the config file: loads it, validates it, hands each new valid version to the applier, and keeps the
 * old one serving when a load or an apply fails. Reloads are serialized; a burst of triggers runs one reload.
 */
export class Supervisor {
  readonly file: string;
  active: ActiveConfig | undefined;
  lastError: { at: string; errors: string } | undefined;
  /** Reloads whose file failed validation (the workers never saw them; apply failures count there). */
  rejected = 0;
  #applier: Applier | undefined;
  #log: Logger;
  #version = 0;
  #running: Promise<void> | undefined;
  #pending = false;
  #watcher: ReturnType<typeof watch> | undefined;
  #debounce: NodeJS.Timeout | undefined;

  constructor(file: string, log: Logger) {
    this.file = resolve(file);
    this.#log = log;
  }

  /** The first load: errors are returned for the CLI to print, not swallowed. */
  async loadInitial(): Promise<{ ok: true; active: ActiveConfig } | { ok: false; message: string }> {
    const r = await loadConfigFile(this.file);
    if (!r.ok) return { ok: false, message: formatConfigErrors(r.errors) };
    this.active = {
      config: r.config,
      version: ++this.#version,
      hash: r.source.hash,
      secretPaths: r.source.secretPaths,
      loadedAt: new Date().toISOString(),
    };
    return { ok: true, active: this.active };
  }

  attach(applier: Applier): void {
    this.#applier = applier;
  }

  /** Triggers a reload (file change, SIGHUP). Resolves when it and any reload it queued are done. */
  reload(reason: string): Promise<void> {
    if (this.#running) {
      this.#pending = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#pending = false;
        await this.#reloadOnce(reason);
      } while (this.#pending);
      this.#running = undefined;
    })();
    return this.#running;
  }

  async #reloadOnce(reason: string): Promise<void> {
    const r = await loadConfigFile(this.file);
    if (!r.ok) {
      this.rejected++;
      const errors = formatConfigErrors(r.errors);
      this.lastError = { at: new Date().toISOString(), errors };
      this.#log.error(
        { reason, file: this.file, errors: errors.split('\n'), activeVersion: this.active?.version },
        'config rejected; the previous config keeps serving',
      );
      return;
    }
    if (this.active && r.source.hash === this.active.hash) {
      this.#log.debug({ reason, version: this.active.version }, 'config unchanged');
      return;
    }
    const version = ++this.#version;
    try {
      await this.#applier?.apply(r.config, version, r.source.hash);
    } catch (err) {
      this.lastError = { at: new Date().toISOString(), errors: (err as Error).message };
      this.#log.error(
        { reason, version, err: (err as Error).message, activeVersion: this.active?.version },
        'config failed to apply; the previous config keeps serving',
      );
      return;
    }
    this.active = {
      config: r.config,
      version,
      hash: r.source.hash,
      secretPaths: r.source.secretPaths,
      loadedAt: new Date().toISOString(),
    };
    this.lastError = undefined;
    this.#log.info({ reason, version, hash: r.source.hash.slice(0, 12) }, 'config applied');
  }

  /** Watches the file's folder (editors replace files by rename, which a file watch would miss). */
  watchFile(): void {
    const dir = dirname(this.file);
    const name = basename(this.file);
    try {
      this.#watcher = watch(dir, { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name) return;
        clearTimeout(this.#debounce);
        this.#debounce = setTimeout(() => void this.reload('file changed'), 100);
      });
      this.#watcher.on('error', (err) => this.#log.warn({ err: err.message }, 'config watch failed'));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'config watch unavailable; use SIGHUP to reload');
    }
  }

  stopWatching(): void {
    clearTimeout(this.#debounce);
    this.#watcher?.close();
  }

  /** The `/config` admin view: secrets redacted. */
  configView(extra: Record<string, unknown>): unknown {
    const a = this.active;
    if (!a) return { version: 0, ...extra };
    return {
      version: a.version,
      hash: a.hash,
      loadedAt: a.loadedAt,
      file: this.file,
      lastError: this.lastError,
      ...extra,
      config: redactConfig(a.config, a.secretPaths),
    };
  }
}
