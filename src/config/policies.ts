/**
 * The `policies` and `consumers` sections. `policies[]` is a union told apart by `type`, built from the kinds
 * registered in src/stages/kinds.ts: each kind's own schema plus `name`, `type` and `shadow`.
 */
import { z } from 'zod';
import { API_KEY_HASH, PASSWORD_HASH } from '../stages/credentials.js';
import { policyKinds } from '../stages/kinds.js';
import type { PolicyKind } from '../stages/policy.js';
import { name } from './primitives.js';

const base = {
  name,
  shadow: z
    .boolean()
    .default(false)
    .describe(
      'Evaluate and record, never enforce: a request this policy would refuse is counted as `shadow_deny` (metrics, access log) and goes on.',
    ),
};

/** One branch of the union: the kind's fields with `name`, `type` and `shadow` in front, its refinements kept. */
function branch(kind: PolicyKind<unknown>): z.ZodObject {
  const s = kind.schema as unknown;
  if (!(s instanceof z.ZodObject))
    throw new Error(`policy kind "${kind.type}": its schema must be a z.strictObject`);
  const own = s as z.ZodObject;
  const obj = z.strictObject({
    name: base.name,
    type: z.literal(kind.type).describe(`\`${kind.type}\``),
    ...own.shape,
    shadow: base.shadow,
  });
  const checks = (own._zod.def.checks ?? []) as z.core.$ZodCheck<never>[] as z.core.$ZodCheck<object>[];
  const out = checks.length > 0 ? obj.check(...checks) : obj;
  const description = own.description;
  return description === undefined ? out : out.describe(description);
}

const kindTypes = policyKinds.map((k) => k.type);
const duplicate = kindTypes.find((t, i) => kindTypes.indexOf(t) !== i);
if (duplicate !== undefined) throw new Error(`policy kind "${duplicate}" is registered twice`);

/** Every policy as parsed: `name`, `type`, `shadow` and the kind's own fields (each kind types its own). */
export interface PolicyConfig {
  readonly name: string;
  readonly type: string;
  readonly shadow: boolean;
  readonly [field: string]: unknown;
}

/** A policy as written: `shadow` may be left out. */
export interface PolicyConfigInput {
  name: string;
  type: string;
  shadow?: boolean;
  [field: string]: unknown;
}

export const policySchema = z
  .discriminatedUnion(
    'type',
    policyKinds.map((k) => branch(k as PolicyKind<unknown>)) as unknown as [z.ZodObject, ...z.ZodObject[]],
  )
  .describe(
    `A named, typed policy; routes and listeners attach it by name. \`type\` is one of: ${kindTypes.join(', ')} (see docs/policies.md).`,
  ) as unknown as z.ZodType<PolicyConfig, PolicyConfigInput>;

const expires = z
  .string()
  .refine(
    (s) => /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s)),
    {
      message: 'expected a date or date-time such as "2025-07-01" or "2025-07-01T12:00:00Z"',
    },
  );

export const consumerSchema = z
  .strictObject({
    name: name.describe(
      'Unique name of the consumer: the `consumer` of the access log, metrics and upstream headers.',
    ),
    groups: z
      .array(
        z.string().regex(/^[A-Za-z0-9._:/-]{1,128}$/, {
          message: 'expected a group name of letters, digits and . _ : / -',
        }),
      )
      .default([])
      .describe('Groups the consumer belongs to, for authorization rules.'),
    metadata: z
      .record(z.string(), z.string())
      .default({})
      .describe('Free-form values (plan, tenant, ...) later policies can read.'),
    credentials: z
      .strictObject({
        apiKeys: z
          .array(
            z.strictObject({
              hash: z
                .string()
                .regex(API_KEY_HASH, {
                  message:
                    'expected "sha256:" and 64 lower-case hex digits (from `trellis hash-key`), never the key itself',
                })
                .describe(
                  '`sha256:<hex>` of the key, from `trellis hash-key`. The key itself is never in the config.',
                ),
              id: z
                .string()
                .regex(/^[A-Za-z0-9._-]{1,64}$/, {
                  message: 'expected an id of letters, digits, ".", "_" or "-"',
                })
                .optional()
                .describe(
                  'Names this key in logs (never the key): useful while two keys overlap in a rotation.',
                ),
              expires: expires
                .optional()
                .describe(
                  'The key stops working at this time (a rotation: the old key with `expires`, the new one without).',
                ),
            }),
          )
          .optional()
          .describe(
            'API keys, as hashes: a rotation lists the new key and the old one (with `expires`) together.',
          ),
        basic: z
          .strictObject({
            username: z
              .string()
              .min(1)
              .max(128)
              .refine(
                (u) => !u.includes(':') && ![...u].some((c) => c.charCodeAt(0) < 32 || c === '\u007f'),
                {
                  message: 'expected a username without ":" or control characters',
                },
              ),
            passwordHash: z
              .string()
              .regex(PASSWORD_HASH, {
                message:
                  'expected a scrypt hash "$scrypt$ln=15,r=8,p=1$<salt>$<hash>" (from `trellis hash-password`)',
              })
              .describe(
                '`$scrypt$ln=..,r=..,p=..$<salt>$<hash>` from `trellis hash-password`; never the password.',
              ),
          })
          .optional()
          .describe('HTTP Basic credentials for `basic-auth` policies.'),
        mtls: z
          .strictObject({
            fingerprints: z
              .array(
                z.string().regex(/^(sha256:)?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/, {
                  message: 'expected a SHA-256 fingerprint (64 hex digits, colons allowed)',
                }),
              )
              .optional()
              .describe(
                'SHA-256 fingerprints of client certificates (`openssl x509 -noout -fingerprint -sha256`).',
              ),
            sans: z
              .array(z.string().min(1))
              .optional()
              .describe('subjectAltName values: a DNS name, a URI (a SPIFFE ID) or an e-mail address.'),
            subjects: z
              .array(z.string().min(1))
              .optional()
              .describe('Subjects in RFC 4514 form, most specific first: `CN=client-1,O=Example`.'),
          })
          .optional()
          .describe(
            'Verified client certificates (listener `tls.clientAuth`) that are this consumer, for `mtls` policies.',
          ),
      })
      .prefault({})
      .describe(
        'How the consumer proves who it is, by kind: only hashes and certificate identities, never secrets.',
      ),
  })
  .describe('An identity that calls through the gateway: authentication policies map credentials to it.');

export type ConsumerConfig = z.output<typeof consumerSchema>;
