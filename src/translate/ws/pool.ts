/**
 * A bounded pool of client WebSockets to one upstream endpoint, for the REST → WebSocket bridge: up to `size`
 * connections opened on demand, requests spread to the one with the fewest replies outstanding, replies matched
 * to requests by a correlation id, a failed connect followed by a backoff during which requests fail fast,
 * connections closed after `idleTimeout` without work. Nothing here outlives its last request by more than that.
 */
import WebSocket from 'ws';
import type { ErrorCode } from '../../core/errors.js';

export interface PoolOptions {
  /** ws:// or wss:// URL of the upstream. */
  readonly url: string;
  readonly size: number;
  readonly maxMessageBytes: number;
  readonly connectTimeout: number;
  readonly idleTimeout: number;
  readonly backoffInitial: number;
  readonly backoffMax: number;
  readonly subprotocol: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  /** The field of a reply that holds the correlation id. */
  readonly correlationField: string;
}

/** Why a request got no reply: the code answered, and the detail. */
export class BridgeFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The attempt's outcome for logs and metrics. */
    readonly outcome: 'connect_refused' | 'connect_failed' | 'reset' | 'timeout' | 'protocol_error',
  ) {
    super(message);
  }
}

interface Pending {
  resolve(reply: Record<string, unknown>): void;
  reject(err: BridgeFailure): void;
}

/** One upstream WebSocket and the replies it owes. */
class Connection {
  readonly ws: WebSocket;
  readonly pending = new Map<string, Pending>();
  open = false;
  closed = false;
  readonly ready: Promise<void>;
  #idle: NodeJS.Timeout | undefined;

  constructor(
    readonly pool: WsPool,
    opts: PoolOptions,
  ) {
    this.ws = new WebSocket(opts.url, opts.subprotocol === undefined ? [] : [opts.subprotocol], {
      maxPayload: opts.maxMessageBytes,
      handshakeTimeout: opts.connectTimeout,
      perMessageDeflate: false,
      headers: { ...opts.headers },
    });
    let tooLarge = false;
    this.ready = new Promise((resolve, reject) => {
      this.ws.once('open', () => {
        this.open = true;
        this.touch();
        pool.onOpen?.(this.ws);
        resolve();
      });
      this.ws.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') tooLarge = true;
        if (!this.open) reject(connectFailure(err));
      });
    });
    this.ready.catch(() => {});
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        return; // not JSON: not a reply
      }
      if (typeof msg !== 'object' || msg === null) return;
      const id = (msg as Record<string, unknown>)[opts.correlationField];
      if (typeof id !== 'string' && typeof id !== 'number') {
        this.pool.onMessage(msg as Record<string, unknown>);
        return;
      }
      const p = this.pending.get(String(id));
      if (p === undefined) {
        this.pool.onMessage(msg as Record<string, unknown>);
        return;
      }
      this.pending.delete(String(id));
      this.pool.settled();
      this.touch();
      p.resolve(msg as Record<string, unknown>);
    });
    this.ws.on('close', (code: number, reason: Buffer) => {
      const wasOpen = this.open;
      this.closed = true;
      this.open = false;
      if (this.#idle !== undefined) clearTimeout(this.#idle);
      const failure = tooLarge
        ? new BridgeFailure(
            'websocket_bridge_reply_too_large',
            `the upstream sent a message over maxMessageBytes ${opts.maxMessageBytes}; the connection was closed`,
            'protocol_error',
          )
        : new BridgeFailure(
            'websocket_bridge_unavailable',
            `the upstream WebSocket closed (${code}${reason.length > 0 ? ` ${reason.toString('utf8').slice(0, 100)}` : ''}) before the reply`,
            'reset',
          );
      for (const p of this.pending.values()) p.reject(failure);
      const lost = this.pending.size;
      this.pending.clear();
      this.pool.dropped(this, lost, failure, wasOpen);
    });
  }

  /** Restarts the idle timer: closed after `idleTimeout` without anything outstanding. */
  touch(): void {
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.pending.size === 0 && this.pool.subscribers === 0) this.ws.close(1000, 'idle');
      else this.touch();
    }, this.pool.options.idleTimeout);
    this.#idle.unref();
  }
}

function connectFailure(err: Error & { code?: string }): BridgeFailure {
  const refused = err.code === 'ECONNREFUSED';
  return new BridgeFailure(
    'websocket_bridge_unavailable',
    `cannot open a WebSocket to the upstream: ${err.message}`,
    refused ? 'connect_refused' : 'connect_failed',
  );
}

export class WsPool {
  readonly options: PoolOptions;
  readonly #conns: Connection[] = [];
  /** Consecutive failed connects, and when the next may be tried. */
  #failures = 0;
  #retryAt = 0;
  #lastError: BridgeFailure | undefined;
  /** Replies outstanding over all connections. */
  outstanding = 0;
  /** Event-stream clients listening to this pool's messages (they keep a connection open). */
  subscribers = 0;
  /** Messages that are not replies (events), for the event-stream side. */
  onEvent: ((msg: Record<string, unknown>) => void) | undefined;
  /** A connection opened (the event stream sends its subscribe message). */
  onOpen: ((ws: WebSocket) => void) | undefined;
  /** A connection was lost (event-stream clients end their streams). */
  onLost: ((failure: BridgeFailure) => void) | undefined;
  #seq = 0;

  constructor(options: PoolOptions) {
    this.options = options;
  }

  /** Open connections (tests and views). */
  get size(): number {
    return this.#conns.length;
  }

  /** A fresh correlation id, unique within this pool (never the client's: a client cannot claim another's reply). */
  nextId(): string {
    this.#seq = (this.#seq + 1) % Number.MAX_SAFE_INTEGER;
    return `t${this.#seq.toString(36)}`;
  }

  /**
   * A connection to send on: the open one with the fewest replies outstanding (opening another in the background
   * while all are busy and the pool is not full), else one being opened; fails fast while in backoff after
   * failed connects.
   */
  async connection(): Promise<Connection> {
    let best: Connection | undefined;
    for (const c of this.#conns)
      if (c.open && (best === undefined || c.pending.size < best.pending.size)) best = c;
    const connecting = this.#conns.find((c) => !c.open && !c.closed);
    const backoff = performance.now() < this.#retryAt && this.#lastError !== undefined;
    if (best !== undefined) {
      if (
        best.pending.size > 0 &&
        this.#conns.length < this.options.size &&
        connecting === undefined &&
        !backoff
      )
        this.#dial().ready.catch(() => {});
      return best;
    }
    if (connecting !== undefined) {
      await connecting.ready;
      return connecting;
    }
    if (backoff) {
      const last = this.#lastError!;
      const wait = Math.ceil(this.#retryAt - performance.now());
      throw new BridgeFailure(last.code, `${last.message} (next attempt in ${wait} ms)`, last.outcome);
    }
    const c = this.#dial();
    await c.ready;
    return c;
  }

  /** Opens one more connection; a failed connect starts (or lengthens) the backoff, a good one ends it. */
  #dial(): Connection {
    const c = new Connection(this, this.options);
    this.#conns.push(c);
    c.ready.then(
      () => {
        this.#failures = 0;
        this.#lastError = undefined;
      },
      (err: BridgeFailure) => {
        this.#failures++;
        const o = this.options;
        const delay = Math.min(o.backoffMax, o.backoffInitial * 2 ** (this.#failures - 1));
        this.#retryAt = performance.now() + delay * (0.5 + Math.random() * 0.5);
        this.#lastError = err;
      },
    );
    return c;
  }

  /**
   * Sends `message` (its correlation id `id`) and resolves with the reply. `signal` (the client went away, or the
   * timeout) rejects it and forgets the id; a late reply is then dropped.
   */
  async request(id: string, message: string, signal: AbortSignal): Promise<Record<string, unknown>> {
    const c = await untilAborted(this.connection(), signal);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (c.pending.delete(id)) this.settled();
        reject(signal.reason);
      };
      c.pending.set(id, {
        resolve: (r) => {
          signal.removeEventListener('abort', onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      this.outstanding++;
      signal.addEventListener('abort', onAbort, { once: true });
      c.touch();
      c.ws.send(message, (err) => {
        if (err !== undefined && err !== null && c.pending.delete(id)) {
          this.settled();
          signal.removeEventListener('abort', onAbort);
          reject(new BridgeFailure('websocket_bridge_unavailable', `send failed: ${err.message}`, 'reset'));
        }
      });
    });
  }

  /** A reply arrived or a request gave up. */
  settled(): void {
    this.outstanding--;
  }

  onMessage(msg: Record<string, unknown>): void {
    this.onEvent?.(msg);
  }

  dropped(c: Connection, lost: number, failure: BridgeFailure, wasOpen: boolean): void {
    this.outstanding -= lost;
    const i = this.#conns.indexOf(c);
    if (i !== -1) this.#conns.splice(i, 1);
    if (wasOpen) this.onLost?.(failure);
  }

  /** Closes every connection (the bridge is being dropped). */
  close(): void {
    for (const c of this.#conns) c.ws.close(1001, 'going away');
  }
}

/** `p`, or the signal's reason as soon as it aborts (a connect in progress is not held up by a waiting request). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) reject(signal.reason);
        else resolve(v);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
