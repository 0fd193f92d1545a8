import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import type { SecureContext } from 'node:tls';
import { GRPC_CODE_NAMES } from '../core/grpc-codes.js';
import type { Endpoint } from './endpoint.js';
import { type HealthEvent, healthChannel } from './events.js';

/**
 * Active health checks: each endpoint is probed every `interval` (± jitter) over HTTP, TCP or the standard gRPC
 * health protocol, and its `healthy` flag follows the verdict with hysteresis.
 *
 * Initial state is optimistic: an endpoint is healthy until `unhealthyThreshold` consecutive checks failed (unlike
 * Envoy, which can hold traffic until the first check passed). A freshly started or reloaded gateway then serves
 * at once instead of returning 503s for the first interval; an endpoint that really is down costs a few failed
 * attempts until the checks (or passive outlier detection) catch up. The checker starts from whatever
 * `ep.healthy` already is, so an endpoint carried over a reload while unhealthy needs `healthyThreshold`
 * successes to come back, and a healthy one `unhealthyThreshold` failures to go.
 *
 * Checks never share the endpoint's proxy pool, so they never queue behind traffic: HTTP and TCP checks open a
 * fresh connection each time (closed right after), gRPC checks keep one h2c session per endpoint between checks.
 * For an endpoint, the next check is scheduled when the previous one ended, so checks never overlap.
 *
 * Timers are unref'd: health checking alone never keeps the process alive.
 */

export type HealthCheckOptions = {
  /** ms between checks per endpoint, default 5000 (each wait is interval * (1 ± jitter)). */
  interval: number;
  /** fraction 0..1, default 0.1 */
  jitter: number;
  /** ms, default 2000 */
  timeout: number;
  /** consecutive successes to become healthy, default 2 */
  healthyThreshold: number;
  /** consecutive failures to become unhealthy, default 3 */
  unhealthyThreshold: number;
  /** TLS to https:// endpoints: the service's CA bundle and client certificate, and its SNI name if set. */
  tls?: { context: SecureContext; servername: string | undefined } | undefined;
} & (
  | {
      type: 'http';
      path: string;
      method: 'GET' | 'HEAD';
      /** inclusive ranges, default [[200, 399]] */
      expectedStatuses: Array<[number, number]>;
      bodyContains?: string;
      /** Host header; default the endpoint authority */
      host?: string;
    }
  | { type: 'tcp' }
  | {
      type: 'grpc';
      /** '' = overall server health */
      service: string;
      authority?: string;
    }
);

export interface HealthStatus {
  healthy: boolean;
  lastError: string | undefined;
  lastCheckAt: number;
}

/** At most this much of an HTTP check's response body is read when looking for `bodyContains`. */
const MAX_BODY = 64 * 1024;
const USER_AGENT = 'trellis-health-check';

const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

interface Target {
  ep: Endpoint;
  secure: boolean;
  /** Hostname without IPv6 brackets. */
  host: string;
  port: number;
  successes: number;
  failures: number;
  lastError: string | undefined;
  lastCheckAt: number;
  checked: boolean;
  timer: NodeJS.Timeout | undefined;
  inFlight: AbortController | undefined;
  session: http2.ClientHttp2Session | undefined;
}

/** A check's outcome: undefined on success, else why it failed. */
type Verdict = string | undefined;

class CheckTimeout extends Error {}

export class HealthChecker {
  readonly #o: HealthCheckOptions;
  readonly #targets = new Map<Endpoint, Target>();
  #running = false;
  /** Bumped by stop(): results of checks begun in an earlier run are dropped. */
  #run = 0;

  /** Service name in the events this checker publishes. */
  readonly #service: string;

  constructor(endpoints: readonly Endpoint[], o: HealthCheckOptions, service = '') {
    this.#o = o;
    this.#service = service;
    for (const ep of endpoints) {
      const url = new URL(ep.origin);
      const secure = url.protocol === 'https:';
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
      const port = url.port ? Number(url.port) : secure ? 443 : 80;
      this.#targets.set(ep, {
        ep,
        secure,
        host,
        port,
        successes: 0,
        failures: 0,
        lastError: undefined,
        lastCheckAt: 0,
        checked: false,
        timer: undefined,
        inFlight: undefined,
        session: undefined,
      });
    }
  }

  /** First check on each endpoint right away (spread over a random delay ≤ interval*jitter), then every interval. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const spread = this.#o.interval * this.#jitter();
    for (const t of this.#targets.values()) this.#schedule(t, Math.random() * spread);
  }

  /** Clears the timers, aborts in-flight checks and closes kept gRPC sessions. Endpoint health is left as is. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#run++;
    for (const t of this.#targets.values()) {
      if (t.timer) clearTimeout(t.timer);
      t.timer = undefined;
      t.inFlight?.abort();
      t.inFlight = undefined;
      closeSession(t);
    }
  }

  /** Last result per endpoint, for admin/status and tests; undefined for an unknown endpoint or before its first check ended. */
  status(ep: Endpoint): HealthStatus | undefined {
    const t = this.#targets.get(ep);
    if (!t?.checked) return undefined;
    return { healthy: ep.healthy, lastError: t.lastError, lastCheckAt: t.lastCheckAt };
  }

  #jitter(): number {
    const j = this.#o.jitter;
    return Number.isFinite(j) ? Math.min(1, Math.max(0, j)) : 0;
  }

  #schedule(t: Target, delay: number): void {
    if (!this.#running) return;
    const run = this.#run;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      this.#check(t, run).catch(() => {
        // #check handles its own errors; this only guards the timer against a bug turning into a rejection.
      });
    }, delay);
    t.timer.unref();
  }

  async #check(t: Target, run: number): Promise<void> {
    const ac = new AbortController();
    t.inFlight = ac;
    let verdict: Verdict;
    let threw = false;
    let deadline: NodeJS.Timeout | undefined;
    try {
      const timedOut = new Promise<never>((_, reject) => {
        deadline = setTimeout(() => {
          reject(new CheckTimeout(`timeout after ${this.#o.timeout} ms`));
          ac.abort();
        }, this.#o.timeout);
        deadline.unref();
      });
      verdict = await Promise.race([this.#probe(t, ac.signal), timedOut]);
    } catch (err) {
      verdict = errorText(err);
      threw = true;
    } finally {
      if (deadline) clearTimeout(deadline);
      if (t.inFlight === ac) t.inFlight = undefined;
    }
    if (run !== this.#run || !this.#running) return;
    // After a timeout or an error a kept gRPC session may be wedged: start afresh next time.
    if (threw) closeSession(t);
    this.#record(t, verdict);
    const j = this.#jitter();
    this.#schedule(t, this.#o.interval * (1 + j * (2 * Math.random() - 1)));
  }

  #record(t: Target, verdict: Verdict): void {
    t.checked = true;
    t.lastCheckAt = Date.now();
    t.lastError = verdict;
    try {
      if (verdict === undefined) {
        t.failures = 0;
        t.successes++;
        if (!t.ep.healthy && t.successes >= this.#o.healthyThreshold) this.#set(t, true);
      } else {
        t.successes = 0;
        t.failures++;
        if (t.ep.healthy && t.failures >= this.#o.unhealthyThreshold) this.#set(t, false);
      }
    } catch {
      // A watcher that throws must not stop the checks.
    }
  }

  #set(t: Target, healthy: boolean): void {
    if (healthChannel.hasSubscribers) {
      const event: HealthEvent = {
        service: this.#service,
        endpoint: t.ep.origin,
        healthy,
        lastError: t.lastError,
      };
      healthChannel.publish(event);
    }
    t.ep.setHealthy(healthy);
  }

  #probe(t: Target, signal: AbortSignal): Promise<Verdict> {
    const o = this.#o;
    switch (o.type) {
      case 'http':
        return httpProbe(t, o, signal);
      case 'tcp':
        return tcpProbe(t, signal);
      case 'grpc':
        return grpcProbe(t, o, this.#o.timeout, signal);
    }
  }
}

type HttpOptions = Extract<HealthCheckOptions, { type: 'http' }>;
type GrpcOptions = Extract<HealthCheckOptions, { type: 'grpc' }>;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}

function httpProbe(t: Target, o: HttpOptions, signal: AbortSignal): Promise<Verdict> {
  const tls = o.tls;
  return new Promise<Verdict>((resolve, reject) => {
    const mod = t.secure ? https : http;
    const hostHeader = o.host ?? t.ep.authority;
    const req = mod.request({
      host: t.host,
      port: t.port,
      method: o.method,
      path: o.path,
      // A connection of its own each time, closed after the check: never the endpoint's pool.
      agent: false,
      headers: { host: hostHeader, 'user-agent': USER_AGENT, connection: 'close', accept: '*/*' },
      ...(t.secure
        ? {
            servername:
              tls?.servername ?? (net.isIP(hostOnly(hostHeader)) ? undefined : hostOnly(hostHeader)),
            ...(tls === undefined ? {} : { secureContext: tls.context }),
          }
        : {}),
    });
    const onAbort = () => req.destroy(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const done = (v: Verdict) => {
      signal.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(v);
    };
    req.on('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
    req.on('response', (res) => {
      res.on('error', () => {}); // destroy() below may surface as an error on the body; the verdict is already out.
      const status = res.statusCode ?? 0;
      if (!o.expectedStatuses.some(([lo, hi]) => status >= lo && status <= hi)) {
        done(`status ${status}`);
        return;
      }
      const needle = o.bodyContains;
      if (needle === undefined || needle === '' || o.method === 'HEAD') {
        done(undefined);
        return;
      }
      const wanted = Buffer.from(needle);
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        const body = Buffer.concat(chunks, size);
        done(body.includes(wanted) ? undefined : `body did not contain ${JSON.stringify(needle)}`);
      };
      res.on('data', (chunk: Buffer) => {
        const room = MAX_BODY - size;
        const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
        chunks.push(piece);
        size += piece.length;
        if (size >= MAX_BODY) finish();
      });
      res.on('end', finish);
    });
    req.end();
  });
}

/** grpc-message is percent-encoded; a malformed one is shown as it came. */
function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function hostOnly(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(1, authority.indexOf(']'));
  const colon = authority.lastIndexOf(':');
  return colon === -1 ? authority : authority.slice(0, colon);
}

function tcpProbe(t: Target, signal: AbortSignal): Promise<Verdict> {
  return new Promise<Verdict>((resolve, reject) => {
    const socket = net.connect({ host: t.host, port: t.port });
    const onAbort = () => socket.destroy(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      // Connected is all we wanted to know: close right away (FIN, no data).
      socket.end();
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    });
  });
}

function closeSession(t: Target): void {
  const s = t.session;
  t.session = undefined;
  if (s && !s.destroyed) s.destroy();
}

function grpcSession(t: Target, o: GrpcOptions): http2.ClientHttp2Session {
  const existing = t.session;
  if (existing && !existing.closed && !existing.destroyed) return existing;
  const origin = `${t.secure ? 'https' : 'http'}://${net.isIPv6(t.host) ? `[${t.host}]` : t.host}:${t.port}`;
  const tls = t.secure ? o.tls : undefined;
  const session = http2.connect(
    origin,
    tls === undefined
      ? {}
      : {
          secureContext: tls.context,
          ...(tls.servername === undefined ? {} : { servername: tls.servername }),
        },
  );
  // Errors reach the in-flight check through its stream; this listener keeps them from being unhandled.
  session.on('error', () => {});
  session.on('close', () => {
    if (t.session === session) t.session = undefined;
  });
  // Idle between checks: the kept session must not hold the process open.
  session.unref();
  t.session = session;
  return session;
}

/** HealthCheckRequest { string service = 1 } as a gRPC length-prefixed message. */
export function encodeHealthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const proto =
    name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const frame = Buffer.alloc(5);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(proto.length, 1);
  return Buffer.concat([frame, proto]);
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v >= 0x80) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/**
 * The `status` of a HealthCheckResponse { ServingStatus status = 1 } from the gRPC-framed body; 0 (UNKNOWN) when
 * absent, as protobuf defaults say. Throws on a malformed or compressed body.
 */
export function decodeHealthCheckResponse(body: Buffer): number {
  if (body.length < 5) throw new Error('gRPC response without a message');
  if (body[0] !== 0) throw new Error('compressed gRPC response');
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len) throw new Error('truncated gRPC message');
  const msg = body.subarray(5, 5 + len);
  let status = 0;
  let off = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (off >= msg.length) throw new Error('truncated protobuf varint');
      const b = msg[off++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new Error('malformed protobuf varint');
  };
  while (off < msg.length) {
    const key = readVarint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      const v = readVarint();
      if (field === 1) status = v;
    } else if (wire === 1) {
      off += 8;
    } else if (wire === 2) {
      const len = readVarint(); // read first: `off += readVarint()` would add to the pre-read offset
      off += len;
    } else if (wire === 5) {
      off += 4;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
    if (off > msg.length) throw new Error('truncated protobuf field');
  }
  return status;
}

function grpcProbe(t: Target, o: GrpcOptions, timeout: number, signal: AbortSignal): Promise<Verdict> {
  return new Promise<Verdict>((resolve, reject) => {
    const session = grpcSession(t, o);
    const stream = session.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      ':authority': o.authority ?? t.ep.authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': USER_AGENT,
      'grpc-timeout': `${Math.max(1, Math.ceil(timeout))}m`,
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      session.off('error', onSessionError);
      fn();
    };
    const onAbort = () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      settle(() => reject(new Error('aborted')));
    };
    const onSessionError = (err: Error) => settle(() => reject(err));
    signal.addEventListener('abort', onAbort, { once: true });
    session.on('error', onSessionError);

    let httpStatus = 0;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const takeStatus = (h: http2.IncomingHttpHeaders) => {
      const s = h['grpc-status'];
      if (typeof s === 'string') grpcStatus = s;
      const m = h['grpc-message'];
      if (typeof m === 'string') grpcMessage = m;
    };
    stream.on('response', (h) => {
      httpStatus = Number(h[':status'] ?? 0);
      takeStatus(h);
    });
    stream.on('trailers', takeStatus);
    stream.on('data', (c: Buffer) => {
      if (size < MAX_BODY) {
        chunks.push(c);
        size += c.length;
      }
    });
    stream.on('error', (err) => settle(() => reject(err)));
    stream.on('close', () => {
      settle(() => {
        if (httpStatus === 0) {
          reject(new Error(`stream closed without a response (code ${stream.rstCode})`));
        } else if (httpStatus !== 200) {
          resolve(`http status ${httpStatus}`);
        } else if (grpcStatus === undefined) {
          resolve('no grpc-status');
        } else if (grpcStatus !== '0') {
          const code = Number(grpcStatus);
          const name = GRPC_CODE_NAMES[code] ?? grpcStatus;
          resolve(
            `grpc-status ${grpcStatus} (${name})${grpcMessage ? `: ${percentDecode(grpcMessage)}` : ''}`,
          );
        } else {
          try {
            const status = decodeHealthCheckResponse(Buffer.concat(chunks, size));
            resolve(status === 1 ? undefined : (SERVING_STATUS[status] ?? `serving status ${status}`));
          } catch (err) {
            resolve(errorText(err));
          }
        }
      });
    });
    stream.end(encodeHealthCheckRequest(o.service));
  });
}
