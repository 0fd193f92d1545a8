/** The `grpc` translate kind: REST → gRPC transcoding (docs/transcoding.md). */
import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { TranslateKind } from '../kinds.js';
import { type GrpcTranslateConfig, grpcTranslateSchema } from './config.js';
import { type LoadedProtos, loadProtos, TranscodeConfigError } from './protos.js';
import { compileTranscoder, type GrpcTranscoder } from './transcoder.js';

function abs(p: string, baseDir: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** A file's size and modification time: changes when the file does. */
function stamp(file: string): string {
  try {
    const s = statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return '-';
  }
}

interface Cached {
  readonly transcoder: GrpcTranscoder;
  /** Every file the load read (imports included) and its stamp then. */
  readonly stamps: ReadonlyMap<string, string>;
}

// Validation and compilation of the same config in one process parse the protos once; a file that changed since
// (any file read, imports included) makes it parse again. Small: the last few configs.
const cache = new Map<string, Cached>();

/** Loads and compiles; throws TranscodeConfigError with the path of what is wrong. */
export function buildTranscoder(cfg: GrpcTranslateConfig): GrpcTranscoder {
  const key = JSON.stringify(cfg);
  const hit = cache.get(key);
  if (hit !== undefined && [...hit.stamps].every(([f, s]) => stamp(f) === s)) return hit.transcoder;
  const loaded: LoadedProtos = loadProtos(cfg);
  let methods = loaded.methods;
  if (cfg.services !== undefined) {
    cfg.services.forEach((s, i) => {
      if (!loaded.services.includes(s))
        throw new TranscodeConfigError(
          ['services', i],
          `service ${s} is not in the protos (found: ${loaded.services.join(', ') || 'none'})`,
        );
    });
    const wanted = new Set(cfg.services);
    methods = methods.filter((m) => wanted.has(m.service));
  } else {
    methods = methods.filter((m) => loaded.services.includes(m.service));
  }
  if (methods.length === 0)
    throw new TranscodeConfigError([], 'the protos define no service method to expose');
  const t = compileTranscoder(
    methods,
    loaded.registry,
    {
      stream: cfg.stream,
      maxBodyBytes: cfg.maxBodyBytes,
      maxResponseBytes: cfg.maxResponseBytes,
      emitDefaults: cfg.emitDefaults,
      protoFieldNames: cfg.protoFieldNames,
      ignoreUnknownQueryParameters: cfg.ignoreUnknownQueryParameters,
    },
    cfg.defaultMapping,
  );
  cache.delete(key);
  if (cache.size >= 8) cache.delete(cache.keys().next().value!);
  cache.set(key, { transcoder: t, stamps: new Map(loaded.files.map((f) => [f, stamp(f)])) });
  return t;
}

export const grpcTranslateKind: TranslateKind<GrpcTranslateConfig> = {
  type: 'grpc',
  schema: grpcTranslateSchema as unknown as TranslateKind<GrpcTranslateConfig>['schema'],
  resolvePaths(cfg, baseDir) {
    return {
      ...cfg,
      protos: cfg.protos.map((p) => abs(p, baseDir)),
      includePaths: cfg.includePaths.map((p) => abs(p, baseDir)),
      descriptorSet: cfg.descriptorSet === undefined ? undefined : abs(cfg.descriptorSet, baseDir),
    };
  },
  inputs(cfg) {
    // The files the last load of this config read (imports included); before any load, the ones it names.
    const hit = cache.get(JSON.stringify(cfg));
    if (hit !== undefined) return [...hit.stamps.keys()];
    return cfg.descriptorSet === undefined ? cfg.protos : [...cfg.protos, cfg.descriptorSet];
  },
  validate(cfg, ctx) {
    // A route without backends is reported by the route checks (or takes them from its API).
    const backends = ctx.route.backends ?? [];
    for (const b of backends) {
      const svc = ctx.services.get(b.service);
      if (svc !== undefined && svc.protocol !== 'h2' && svc.protocol !== 'h2c')
        ctx.issue(
          [],
          `backend service "${b.service}" has protocol ${svc.protocol}; gRPC needs h2 or h2c (set services[].protocol)`,
        );
    }
    try {
      buildTranscoder(this.resolvePaths!(cfg, ctx.baseDir));
    } catch (err) {
      if (err instanceof TranscodeConfigError) ctx.issue(err.path, err.message);
      else ctx.issue([], (err as Error).message);
    }
  },
  compile(cfg) {
    return { translator: buildTranscoder(cfg) };
  },
};
