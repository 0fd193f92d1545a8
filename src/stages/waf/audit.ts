/**
 * The WAF audit log: one JSON line per request a `waf` policy refused (or, with `events: matched`, per request any
 * logged rule matched), for the security team rather than the access log: which rules matched, on which variable,
 * with what (the first characters of the value, secrets masked). Written through the access log's line writer
 * (batched off the request path, bounded: lines past its queue are dropped and counted), to stdout or a file.
 *
 * The client never sees any of it: the 403 names no rule.
 */
import { closeSync, openSync } from 'node:fs';
import { LineWriter } from '../../observability/line-writer.js';
import type { MatchedRule } from './engine.js';

export interface AuditLogConfig {
  /** `stdout` or a file path (appended to). */
  readonly output: string;
  /** `blocked`: refused requests (and, in detect mode, those that would have been); `matched`: any logged match. */
  readonly events: 'blocked' | 'matched';
}

/** At most this many rules per line, this many tags per rule, this many characters of a matched value. */
export const AUDIT_MAX_RULES = 32;
export const AUDIT_MAX_TAGS = 8;
export const AUDIT_DATA_CHARS = 64;
const MASK = '[masked]';

/**
 * Variables whose values are credentials: the Authorization, Proxy-Authorization and Cookie headers, every cookie,
 * and anything named like a password, token, secret, API key, session or credential (an argument, a JSON field,
 * a header).
 */
const SECRET_NAME =
  /pass(?:word|wd|phrase)?|secret|token|api[-_.]?key|apikey|access[-_.]?key|private[-_.]?key|credential|session|authori[sz]ation|(?:^|[-_.])auth(?:$|[-_.])/i;

export function isSecretVariable(variable: string): boolean {
  const colon = variable.indexOf(':');
  const collection = colon < 0 ? variable : variable.slice(0, colon);
  if (collection === 'REQUEST_COOKIES') return true;
  if (colon < 0) return false;
  const key = variable.slice(colon + 1).toLowerCase();
  if (collection === 'REQUEST_HEADERS' && (key === 'cookie' || key === 'set-cookie')) return true;
  // Names only (REQUEST_HEADERS_NAMES, ARGS_NAMES, ...) are not secrets.
  if (collection.endsWith('_NAMES')) return false;
  return SECRET_NAME.test(key);
}

/**
 * Inside a whole-body or whole-query value (REQUEST_BODY, QUERY_STRING, REQUEST_LINE): `password=…`,
 * `"token": "…"`, `Bearer …` and the like, whose values are masked (best effort: what a value embeds is not
 * always recognizable).
 */
const EMBEDDED_SECRET = new RegExp(
  `((?:${SECRET_NAME.source})[^=:&\\s"]{0,32}"?\\s*[=:]\\s*)(?:"[^"]*"?|[^&\\r\\n]*)|\\b((?:bearer|basic|digest)\\s+)[A-Za-z0-9._~+/=-]+`,
  'gi',
);

/**
 * The matched value as the audit log shows it: masked whole for a secret variable; else its first
 * AUDIT_DATA_CHARS characters, with secrets it embeds masked.
 */
export function auditData(variable: string, value: string): string {
  if (isSecretVariable(variable)) return MASK;
  const head = value.length > 1024 ? value.slice(0, 1024) : value;
  const v = head.replace(EMBEDDED_SECRET, (_m, named: string | undefined, scheme: string | undefined) =>
    named !== undefined ? `${named}${MASK}` : `${scheme}${MASK}`,
  );
  return v.length > AUDIT_DATA_CHARS ? `${v.slice(0, AUDIT_DATA_CHARS)}…` : v;
}

export interface AuditEvent {
  readonly policy: string;
  readonly route: string | undefined;
  readonly requestId: string | undefined;
  readonly traceId: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly action: 'blocked' | 'detected' | 'matched';
  readonly score: number;
  readonly blockingRule: number | undefined;
  readonly matched: readonly MatchedRule[];
}

/** One audit line (with its newline). */
export function auditLine(e: AuditEvent, now = new Date()): string {
  const rules: Record<string, unknown>[] = [];
  for (const m of e.matched.slice(0, AUDIT_MAX_RULES)) {
    rules.push({
      id: m.id,
      msg: m.msg,
      ...(m.severity !== undefined ? { severity: m.severity } : {}),
      tags: m.tags.slice(0, AUDIT_MAX_TAGS),
      variable: m.variable,
      data: auditData(m.variable, m.value),
    });
  }
  const record = {
    time: now.toISOString(),
    requestId: e.requestId,
    traceId: e.traceId,
    route: e.route,
    policy: e.policy,
    method: e.method,
    path: e.path,
    action: e.action,
    score: e.score,
    blockingRule: e.blockingRule,
    rules,
    ...(e.matched.length > AUDIT_MAX_RULES ? { rulesTruncated: true } : {}),
  };
  return `${JSON.stringify(record)}\n`;
}

/**
 * Where a policy's audit lines go. Opened when the config compiles (a path that cannot be opened fails the load,
 * naming it), kept across reloads for the same output, closed (after writing what is queued) when no config uses it.
 */
export class AuditSink {
  readonly #fd: number;
  readonly #owned: boolean;
  #writer: LineWriter | undefined;
  /** Lines written before the writer is ready (a microtask after opening): few, bounded. */
  #early: string[] = [];
  #earlyDropped = 0;
  #closed = false;

  constructor(output: string, onError: (err: Error) => void) {
    if (output === 'stdout') {
      this.#fd = 1;
      this.#owned = false;
    } else {
      try {
        this.#fd = openSync(output, 'a', 0o640);
      } catch (err) {
        throw new Error(`WAF audit log ${output}: ${(err as Error).message}`);
      }
      this.#owned = true;
    }
    void LineWriter.open({ dest: this.#fd, batchBytes: 4096, flushMs: 250, maxPending: 64, onError }).then(
      (w) => {
        this.#writer = w;
        for (const l of this.#early) w.write(l);
        this.#early = [];
        if (this.#closed) void this.#finish(w);
      },
    );
  }

  /** Lines lost (queue full, write failed). */
  get dropped(): number {
    return (this.#writer?.dropped ?? 0) + this.#earlyDropped;
  }

  write(line: string): void {
    if (this.#writer !== undefined) this.#writer.write(line);
    else if (this.#early.length < 256) this.#early.push(line);
    else this.#earlyDropped++;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#writer !== undefined) await this.#finish(this.#writer);
  }

  async #finish(w: LineWriter): Promise<void> {
    await w.close();
    if (this.#owned) closeSync(this.#fd);
  }
}
