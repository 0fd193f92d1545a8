/**
 * `mtls`: the consumer of the verified client certificate (an HTTPS listener with `tls.clientAuth`), by the
 * certificate's SHA-256 fingerprint, then a subjectAltName (URI such as a SPIFFE ID, DNS name, e-mail), then its
 * subject, each a Map lookup built when the config loaded.
 */
import { z } from 'zod';
import type { ClientCertificate } from '../proxy/client-cert.js';
import type { LocalReply, StageContext } from '../proxy/stage.js';
import { authnFields, compileIdentity, validateAuthn } from './authn.js';
import type { MtlsTables } from './consumers.js';
import type { Consumer } from './policy.js';
import { type PolicyKind, PolicyPhase } from './policy.js';

const schema = z
  .strictObject({ ...authnFields })
  .describe(
    'Authenticate by client certificate: the consumer whose `credentials.mtls` names the verified certificate (fingerprint, subjectAltName or subject).',
  );

export type MtlsConfig = z.output<typeof schema>;

/** The consumer a certificate maps to: fingerprint first, then a SAN (URIs, DNS names, e-mails), then the subject. */
export function consumerOfCert(t: MtlsTables, cert: ClientCertificate): Consumer | undefined {
  const byFingerprint = t.fingerprints.get(cert.sha256);
  if (byFingerprint !== undefined) return byFingerprint;
  if (t.sans.size > 0) {
    for (const list of [cert.uris, cert.dns, cert.emails]) {
      for (const v of list) {
        const c = t.sans.get(v);
        if (c !== undefined) return c;
      }
    }
  }
  return t.subjects.get(cert.subject);
}

export const mtlsPolicy: PolicyKind<MtlsConfig> = {
  type: 'mtls',
  phase: PolicyPhase.authn,
  schema,
  validate: validateAuthn,
  compile(c, ctx) {
    const tables = ctx.credentials.mtls;
    const identity = compileIdentity(c, ctx.consumers, ctx.source);
    const anonymous = identity.anonymous;
    const missing: LocalReply = {
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: no verified client certificate`,
    };
    const unknown: LocalReply = {
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: client certificate not mapped to a consumer`,
    };
    return {
      request: {
        name: ctx.name,
        onRequest: function mtls(sc: StageContext) {
          identity.strip(sc);
          const cert = sc.clientCert;
          if (cert === undefined) {
            if (anonymous === undefined) return missing;
            identity.acceptAnonymous(sc);
            return undefined;
          }
          const consumer = consumerOfCert(tables, cert);
          if (consumer === undefined) return unknown;
          identity.accept(sc, consumer);
          return undefined;
        },
      },
    };
  },
};
