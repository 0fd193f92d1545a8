/**
 * The translation kinds `routes[].translate.type` accepts, in one list: the config schema (a union on `type`,
 * src/translate/schema.ts), validation (src/config/semantics.ts) and compilation (src/compile/snapshot.ts) all read
 * it. Adding a kind: write its module (see src/proxy/translate.ts), import it here and append it to the array. A
 * kind module must not import config/schema.ts at run time (use config/primitives.ts): the schema imports this file.
 */
import type { z } from 'zod';
import type { CompiledTranslation } from '../proxy/translate.js';
import type { UpstreamService } from '../upstream/service.js';
import { graphqlTranslateKind } from './graphql/kind.js';
import { grpcTranslateKind } from './grpc/kind.js';
import { websocketTranslateKind } from './ws/kind.js';

/** What a kind's `validate` sees of the route and the config. */
export interface TranslateValidateContext {
  readonly route: {
    readonly name: string;
    readonly backends?: readonly { readonly service: string; readonly weight: number }[] | undefined;
  };
  /** Services by name, with what a translator may need to check of them. */
  readonly services: ReadonlyMap<string, { readonly protocol: string }>;
  /** The folder relative file references resolve against (the config file's). */
  readonly baseDir: string;
  /** Reports a problem at a path below `translate` (`['protos', 0]` → `routes[2].translate.protos[0]`). */
  issue(path: readonly (string | number)[], message: string): void;
}

/** What a kind's `compile` gets. */
export interface TranslateCompileContext {
  readonly route: {
    readonly name: string;
    /** ms, 0: none. */
    readonly requestTimeout: number;
    /** Infinity: no limit. */
    readonly maxBodyBytes: number;
  };
  /** The snapshot's services by name. */
  readonly services: ReadonlyMap<string, UpstreamService>;
}

export interface TranslateKind<C> {
  /** The `type` value in `routes[].translate`. */
  readonly type: string;
  /**
   * The kind's own fields (without `type`), `.describe()`d for the docs: a `z.strictObject` (refinements allowed);
   * the framework adds `type`.
   */
  readonly schema: z.ZodType<C>;
  /** Makes relative file references absolute (against the config file's folder), as TLS paths are. Optional. */
  resolvePaths?(config: C, baseDir: string): C;
  /**
   * The files the compiled form depends on (a proto and what it imports), after `resolvePaths`: their signatures
   * go into the config's hash, so that a reload after editing one of them applies even when the config file did
   * not change. Optional.
   */
  inputs?(config: C): readonly string[];
  /** Semantic checks run by `trellis validate` and every load (files parse, names resolve). Optional. */
  validate?(config: C, ctx: TranslateValidateContext): void;
  /** Compiles once per config version; everything possible is done here, not per request. May throw. */
  compile(config: C, ctx: TranslateCompileContext): CompiledTranslation;
}

// biome-ignore lint/suspicious/noExplicitAny: each kind has its own config type; the framework treats them alike
export const translateKinds: readonly TranslateKind<any>[] = [
  grpcTranslateKind,
  graphqlTranslateKind,
  websocketTranslateKind,
];

/** The kind of a `type`, or undefined. */
export function translateKind(type: string): TranslateKind<unknown> | undefined {
  return translateKinds.find((k) => k.type === type) as TranslateKind<unknown> | undefined;
}
