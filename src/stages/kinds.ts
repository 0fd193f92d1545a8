/**
 * The policy kinds `policies[].type` accepts, in one list: the config schema (a union on `type`), validation and
 * compilation all read it. Adding a kind: import it and add it to the array (one line each, keep the lists sorted
 * by nothing in particular; append). A kind module must not import config/schema.ts at run time (use
 * config/primitives.ts): the schema imports this file.
 */
import { apiKeyPolicy } from './api-key.js';
import { authzPolicy } from './authz/kind.js';
import { basicAuthPolicy } from './basic-auth.js';
import { corsPolicy } from './cors/cors.js';
import { extAuthzPolicy } from './ext-authz/kind.js';
import { graphqlPolicy } from './graphql/kind.js';
import { introspectionPolicy } from './introspection/kind.js';
import { ipFilterPolicy } from './ip-filter.js';
import { jwtPolicy } from './jwt/kind.js';
import { mtlsPolicy } from './mtls.js';
import { openApiPolicy } from './openapi/kind.js';
import type { PolicyKind } from './policy.js';
import { quotaPolicy } from './rate-limit/quota.js';
import { rateLimitPolicy } from './rate-limit/rate-limit.js';
import { wafPolicy } from './waf/kind.js';

// biome-ignore lint/suspicious/noExplicitAny: each kind has its own config type; the framework treats them alike
export const policyKinds: readonly PolicyKind<any>[] = [
  ipFilterPolicy,
  apiKeyPolicy,
  basicAuthPolicy,
  mtlsPolicy,
  rateLimitPolicy,
  quotaPolicy,
  corsPolicy,
  jwtPolicy,
  authzPolicy,
  extAuthzPolicy,
  introspectionPolicy,
  wafPolicy,
  graphqlPolicy,
  openApiPolicy,
];
