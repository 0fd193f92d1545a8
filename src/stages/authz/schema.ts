/** The `authz` policy's fields. CEL conditions are compiled here too, so an error names its rule and position. */
import { z } from 'zod';
import { headerName, httpMethod } from '../../config/primitives.js';
import { CelCompileError, compileCel } from './cel.js';

const pathMatch = z.union([
  z.strictObject({ exact: z.string().startsWith('/').describe('The whole path.') }),
  z.strictObject({
    prefix: z
      .string()
      .startsWith('/')
      .describe(
        'A path prefix, by whole segments: `/admin` matches `/admin` and `/admin/x`, not `/administrator`.',
      ),
  }),
  z.strictObject({
    glob: z
      .string()
      .startsWith('/')
      .describe('`*` matches within one segment, `**` across segments: `/api/*/orders/**`.'),
  }),
]);

const headerMatch = z
  .strictObject({
    name: headerName,
    exact: z.string().optional().describe('The value equals this.'),
    prefix: z.string().optional().describe('The value starts with this.'),
    present: z.boolean().optional().describe('true: the header is there (any value); false: it is absent.'),
  })
  .refine((h) => [h.exact, h.prefix, h.present].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of `exact`, `prefix` or `present`',
  });

const claimValue = z.union([z.string(), z.number(), z.boolean()]);

export const authzRuleSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, {
        message: 'expected a rule name of letters, digits, ".", "_" or "-"',
      })
      .optional()
      .describe('Names the rule in the 403 detail and logs. Default: `rules[<index>]`.'),
    action: z.enum(['allow', 'deny']).describe('What a matching rule decides.'),
    methods: z.array(httpMethod).min(1).optional().describe('The method is one of these.'),
    paths: z.array(pathMatch).min(1).optional().describe('The path matches one of these.'),
    headers: z.array(headerMatch).min(1).optional().describe('Every one of these header conditions holds.'),
    consumers: z.array(z.string().min(1)).min(1).optional().describe('The consumer is one of these.'),
    groups: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('The consumer is in at least one of these groups.'),
    claims: z
      .record(z.string().min(1), z.union([claimValue, z.array(claimValue).min(1)]))
      .optional()
      .describe(
        'Every claim named (a dotted path reads nested claims) has the value given, or one of the values listed; a claim that is a list matches when any of its items does.',
      ),
    scopes: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Every one of these scopes is granted (from the `scope` or `scp` claim).'),
    clients: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'A URI or DNS subjectAltName of the verified client certificate matches one of these (`*` matches within one `/` or `.` part): `spiffe://prod.example/ns/payments/sa/*`.',
      ),
    authenticated: z
      .boolean()
      .optional()
      .describe('true: the request has a consumer or verified claims; false: it has neither.'),
    when: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A CEL condition that must also be true; compiled at load (see docs/policies.md for its variables).',
      ),
  })
  .superRefine((rule, ctx) => {
    if (rule.when === undefined) return;
    try {
      compileCel(rule.when);
    } catch (err) {
      if (!(err instanceof CelCompileError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message, path: ['when'] });
    }
  });
export type AuthzRuleConfig = z.infer<typeof authzRuleSchema>;

export const authzSchema = z
  .strictObject({
    rules: z
      .array(authzRuleSchema)
      .min(1)
      .describe(
        'Rules over the request and its identity. Deny rules are checked first, in order: the first that matches refuses (403). Then allow rules, in order: the first that matches lets the request on. When none matches, `default` decides.',
      ),
    default: z.enum(['deny', 'allow']).prefault('deny').describe('The decision when no rule matches.'),
  })
  .describe(
    'Allows or refuses requests by rules over method, path, headers, consumer, groups, claims, scopes and client identity, with optional CEL conditions.',
  );
export type AuthzConfig = z.infer<typeof authzSchema>;
