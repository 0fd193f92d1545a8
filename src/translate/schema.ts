/**
 * `routes[].translate`: a union told apart by `type`, built from the kinds registered in src/translate/kinds.ts
 * (each kind's own `z.strictObject` plus `type`). Imported by config/schema.ts; imports nothing of it.
 */
import { z } from 'zod';
import { type TranslateKind, translateKinds } from './kinds.js';

/** One branch: `type` first, then the kind's fields, its refinements kept. */
function branch(kind: TranslateKind<unknown>): z.ZodObject {
  const s = kind.schema as unknown;
  if (!(s instanceof z.ZodObject))
    throw new Error(`translate kind "${kind.type}": its schema must be a z.strictObject`);
  const own = s as z.ZodObject;
  const obj = z.strictObject({ type: z.literal(kind.type).describe(`\`${kind.type}\``), ...own.shape });
  const checks = (own._zod.def.checks ?? []) as z.core.$ZodCheck<never>[] as z.core.$ZodCheck<object>[];
  const out = checks.length > 0 ? obj.check(...checks) : obj;
  const description = own.description;
  return description === undefined ? out : out.describe(description);
}

const kindTypes = translateKinds.map((k) => k.type);
const duplicate = kindTypes.find((t, i) => kindTypes.indexOf(t) !== i);
if (duplicate !== undefined) throw new Error(`translate kind "${duplicate}" is registered twice`);

/** A route's `translate` as parsed: `type` and the kind's own fields (each kind types its own). */
export interface TranslateConfig {
  readonly type: string;
  readonly [field: string]: unknown;
}

const branches = translateKinds.map((k) => branch(k as TranslateKind<unknown>));

export const translateSchema = z
  .discriminatedUnion('type', branches as unknown as [z.ZodObject, ...z.ZodObject[]])
  .describe(
    `Translate the protocol: the route's requests and responses are rewritten for a backend that speaks another protocol, or answered by a handler of the kind. \`type\` is one of: ${kindTypes.join(', ')} (grpc: docs/transcoding.md).`,
  ) as unknown as z.ZodType<TranslateConfig, { type: string; [field: string]: unknown }>;
