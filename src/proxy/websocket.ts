/**
 * WebSocket proxying over HTTP/1.1 (RFC 6455). The handshake is an ordinary request to the Exchange: routed,
 * run through the route's stages, admitted by the service, sent to an endpoint the balancer picks (undici's
 * upgrade, so the pool's connect timeout and the attempt's outcome apply). A 101 hands both sockets to a
 * Tunnel, which relays bytes with backpressure and follows frame boundaries only (see ws-frames.ts) so that
 * it can close either side with a close frame of its own.
 *
 * Tunnels hold their sockets, not the snapshot: a reload leaves them open unless it removed their route (then
 * they close after `gateway.websocketGrace`). SIGTERM closes them with 1001 Going Away.
 */
import { type IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  type CompiledRoute,
  type ListenerState,
  type WebSocketPolicy,
  webSocketPolicy,
} from '../compile/snapshot.js';
import type { Config } from '../config/schema.js';
import type { ErrorCode } from '../core/errors.js';
import { rawProblemResponse } from '../core/problem.js';
import { Exchange, type ExchangeHost, hasToken, type UpgradeHandler } from './exchange.js';
import { CloseCode, closeFrame, FrameScanner } from './ws-frames.js';

/** The listener a WebSocket arrived on, as the tunnel sees it: its current state (a reload replaces it). */
export interface TunnelOwner {
  readonly state: ListenerState;
}

/** How long the gateway waits for the peers' answers to its close frames before it cuts the connections. */
const CLOSE_HANDSHAKE_MS = 3_000;

/**
 * The open WebSockets of one process: per-route counts for `websocket.maxConnections`, the tunnels that a
 * reload or SIGTERM has to close.
 */
export class WebSocketTunnels {
  /** SIGTERM: no new WebSocket is accepted. */
  draining = false;
  readonly #open = new Set<Tunnel>();
  /** Upgrades per route name, from the routing decision until the client connection closes. */
  readonly #perRoute = new Map<string, number>();
  #onEmpty: (() => void)[] = [];

  /** Open tunnels (handshakes in progress not included). */
  get size(): number {
    return this.#open.size;
  }

  /** Upgrades of a route counted against its `maxConnections` (handshakes in progress included). */
  connections(route: string): number {
    return this.#perRoute.get(route) ?? 0;
  }

  /** Counts one more upgrade on `route` until `socket` closes; false when the route is at its limit. */
  reserve(route: string, max: number, socket: Socket): boolean {
    const n = this.#perRoute.get(route) ?? 0;
    if (n >= max) return false;
    this.#perRoute.set(route, n + 1);
    socket.once('close', () => {
      const left = (this.#perRoute.get(route) ?? 1) - 1;
      if (left <= 0) this.#perRoute.delete(route);
      else this.#perRoute.set(route, left);
    });
    return true;
  }

  add(t: Tunnel): void {
    this.#open.add(t);
  }

  remove(t: Tunnel): void {
    this.#open.delete(t);
    if (this.#open.size === 0 && this.#onEmpty.length > 0) {
      const waiting = this.#onEmpty;
      this.#onEmpty = [];
      for (const fn of waiting) fn();
    }
  }

  /**
   * After a reload: a tunnel whose route (by name) still enables WebSockets on its listener stays and takes
   * the route's new settings; the others close with 1001 after `gateway.websocketGrace` (unless a later
   * reload brings their route back first).
   */
  reconcile(listeners: Iterable<TunnelOwner>, config: Config): void {
    if (this.#open.size === 0) return;
    const live = new Set(listeners);
    const routes = new Map<string, { listeners: readonly string[] | undefined; policy: WebSocketPolicy }>();
    for (const r of config.routes)
      if (r.websocket.enabled)
        routes.set(r.name, { listeners: r.listeners, policy: webSocketPolicy(r.websocket) });
    const grace = config.gateway.websocketGrace;
    for (const t of this.#open) {
      const r = routes.get(t.routeName);
      if (
        r !== undefined &&
        live.has(t.owner) &&
        (r.listeners === undefined || r.listeners.includes(t.owner.state.name))
      )
        t.keep(r.policy);
      else t.closeAfter(grace);
    }
  }

  /** Closes every tunnel with a close frame to both peers (SIGTERM: 1001 Going Away). */
  goAwayAll(code: number, reason: string): void {
    for (const t of this.#open) t.goAway(code, reason);
  }

  /** Cuts every tunnel at once (a drain deadline). */
  destroyAll(): void {
    for (const t of [...this.#open]) t.destroy();
  }

  /** Resolves when no tunnel is open. */
  closed(): Promise<void> {
    if (this.#open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onEmpty.push(resolve));
  }
}

/** Tunnels of hosts that bring none (tests building an ExchangeHost by hand). */
let fallbackTunnels: WebSocketTunnels | undefined;

/**
 * The listener's 'upgrade' event: a WebSocket upgrade becomes an Exchange with an upgrade handler; an upgrade
 * to anything else (`h2c`, …) is served as a plain request (RFC 9110 §7.8 lets a server ignore `Upgrade`) on
 * a connection that closes after the response. Node has stopped parsing HTTP on the socket, so an upgrade
 * request with a body cannot be read and is refused, and a reply always closes the connection.
 */
export function handleUpgrade(
  host: ExchangeHost,
  owner: TunnelOwner,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  // Node removed its own socket error handler when it handed the socket over; a reset must not throw.
  socket.on('error', ignore);
  const upgrade = req.headers.upgrade;
  const websocket = typeof upgrade === 'string' && hasToken(upgrade, 'websocket');
  const length = req.headers['content-length'];
  if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
    refuse(socket, 'upgrade_not_supported', `an Upgrade request (to ${upgrade}) with a body`);
    return;
  }
  if (websocket && (req.method !== 'GET' || req.httpVersion !== '1.1')) {
    refuse(
      socket,
      'upgrade_not_supported',
      `a WebSocket upgrade must be GET over HTTP/1.1, not ${req.method} over HTTP/${req.httpVersion}`,
    );
    return;
  }
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  // A reply (local or relayed from the upstream) ends the connection; a 101 detaches the socket first.
  res.once('finish', onReplyFinished);
  const ex = new Exchange(host, owner.state, req, res);
  if (websocket)
    ex.upgrade = new WebSocketUpgrade(
      host.websockets ?? (fallbackTunnels ??= new WebSocketTunnels()),
      owner,
      head,
    );
  try {
    ex.start(false);
  } catch (err) {
    ex.failInternal(err);
  }
}

/** A refusal before any request state exists: a raw problem reply, then the connection closes. */
export function refuse(socket: Socket, code: ErrorCode, detail: string): void {
  socket.on('error', ignore);
  socket.write(rawProblemResponse(code, detail));
  socket.destroySoon();
}

function onReplyFinished(this: ServerResponse): void {
  this.socket?.destroySoon();
}

function ignore(): void {}

/** The WebSocket side of one upgrade request. */
class WebSocketUpgrade implements UpgradeHandler {
  readonly protocol = 'websocket';
  readonly #tunnels: WebSocketTunnels;
  readonly #owner: TunnelOwner;
  /** What the client sent after its handshake (frames it did not wait to send): goes upstream after the 101. */
  readonly #head: Buffer;

  constructor(tunnels: WebSocketTunnels, owner: TunnelOwner, head: Buffer) {
    this.#tunnels = tunnels;
    this.#owner = owner;
    this.#head = head;
  }

  routed(ex: Exchange, route: CompiledRoute): boolean {
    const policy = route.websocket;
    if (policy === undefined) {
      // A route that answers locally (redirect, direct response) answers the upgrade request too.
      if (route.pickService === undefined) return true;
      ex.replyError(
        'websocket_not_enabled',
        `route ${route.name} does not accept WebSocket upgrades (${route.source}.websocket.enabled is false)`,
      );
      return false;
    }
    if (this.#tunnels.draining) {
      ex.replyError('service_unavailable', 'the gateway is shutting down and takes no new WebSocket');
      return false;
    }
    if (!this.#tunnels.reserve(route.name, policy.maxConnections, ex.req.socket)) {
      ex.replyError(
        'websocket_limit_reached',
        `route ${route.name} has ${policy.maxConnections} WebSockets open (websocket.maxConnections)`,
      );
      return false;
    }
    return true;
  }

  switched(ex: Exchange, headers: string[], upstream: Socket): void {
    upstream.on('error', ignore);
    const client = ex.req.socket;
    ex.res.detachSocket(client);
    if (client.destroyed || !client.writable) {
      upstream.destroy();
      ex.upgradeEnded();
      return;
    }
    let head = 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n';
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    client.write(`${head}\r\n`, 'latin1');
    const tunnel = new Tunnel(this.#tunnels, this.#owner, ex, client, upstream, ex.route!);
    tunnel.start(this.#head);
  }
}

/**
 * One proxied WebSocket: two sockets, a frame scanner per direction, the idle timer and the close handshake
 * the gateway starts when it closes the WebSocket itself.
 */
class Tunnel {
  readonly owner: TunnelOwner;
  readonly routeName: string;
  readonly #tunnels: WebSocketTunnels;
  readonly #ex: Exchange;
  readonly #client: Socket;
  readonly #upstream: Socket;
  /** Client → upstream. */
  readonly #up: FrameScanner;
  /** Upstream → client. */
  readonly #down: FrameScanner;
  #idleTimeout: number;
  /** The gateway is closing it (close frames sent or waiting for a frame boundary). */
  #closing = false;
  #finished = false;
  #closedSockets = 0;
  #grace: NodeJS.Timeout | undefined = undefined;
  #hard: NodeJS.Timeout | undefined = undefined;

  constructor(
    tunnels: WebSocketTunnels,
    owner: TunnelOwner,
    ex: Exchange,
    client: Socket,
    upstream: Socket,
    route: CompiledRoute,
  ) {
    this.#tunnels = tunnels;
    this.owner = owner;
    this.#ex = ex;
    this.#client = client;
    this.#upstream = upstream;
    this.routeName = route.name;
    const policy = route.websocket!;
    this.#up = new FrameScanner(policy.maxMessageBytes);
    this.#down = new FrameScanner(policy.maxMessageBytes);
    this.#idleTimeout = policy.idleTimeout;
  }

  start(head: Buffer): void {
    this.#tunnels.add(this);
    const client = this.#client;
    const upstream = this.#upstream;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // Node's socket timer restarts on every read and write, so it fires after `idleTimeout` without a byte
    // either way (the upstream's bytes are writes to the client).
    // Always set: 0 also disarms a keep-alive timer the HTTP server may have left on the connection.
    client.setTimeout(this.#idleTimeout);
    client.on('timeout', () => {
      if (this.#idleTimeout > 0) this.goAway(CloseCode.goingAway, 'idle timeout');
    });
    const tooBig = () => this.goAway(CloseCode.messageTooBig, 'message too big');
    this.#up.onTooBig = tooBig;
    this.#down.onTooBig = tooBig;

    const toUpstream = (b: Buffer) => {
      if (!upstream.write(b)) client.pause();
    };
    const toClient = (b: Buffer) => {
      if (!client.write(b)) upstream.pause();
    };
    client.on('data', (chunk: Buffer) => {
      this.#ex.bytesIn += chunk.length;
      this.#up.feed(chunk, toUpstream);
    });
    upstream.on('data', (chunk: Buffer) => {
      this.#ex.bytesOut += chunk.length;
      this.#down.feed(chunk, toClient);
    });
    upstream.on('drain', () => client.resume());
    client.on('drain', () => upstream.resume());
    // Half-close goes through: a FIN from one peer ends the other (the client socket allows half-open).
    client.on('end', () => {
      upstream.end();
      if (this.#closing) client.end();
    });
    upstream.on('end', () => client.end());
    client.on('close', () => this.#socketClosed(upstream));
    upstream.on('close', () => this.#socketClosed(client));
    if (head.length > 0) {
      this.#ex.bytesIn += head.length;
      this.#up.feed(head, toUpstream);
    }
  }

  /** A reload kept the route: take its settings, and forget a pending close. */
  keep(policy: WebSocketPolicy): void {
    clearTimeout(this.#grace);
    this.#grace = undefined;
    if (this.#closing) return;
    this.#up.limit = policy.maxMessageBytes;
    this.#down.limit = policy.maxMessageBytes;
    if (policy.idleTimeout !== this.#idleTimeout) {
      this.#idleTimeout = policy.idleTimeout;
      this.#client.setTimeout(policy.idleTimeout);
    }
  }

  /** A reload removed the route: close with 1001 after `ms` (at once for 0). */
  closeAfter(ms: number): void {
    if (this.#closing || this.#grace !== undefined) return;
    if (ms === 0) this.goAway(CloseCode.goingAway, 'route removed');
    else this.#grace = setTimeout(() => this.goAway(CloseCode.goingAway, 'route removed'), ms);
  }

  /**
   * Closes the WebSocket from the middle: each direction stops at its next frame boundary, the peer it led to
   * gets a close frame (masked toward the upstream), and each peer's answering close frame (or FIN) ends its
   * connection. Peers that do not answer within CLOSE_HANDSHAKE_MS are cut.
   */
  goAway(code: number, reason: string): void {
    if (this.#closing || this.#finished) return;
    this.#closing = true;
    clearTimeout(this.#grace);
    this.#grace = undefined;
    this.#client.setTimeout(0);
    this.#hard = setTimeout(() => this.destroy(), CLOSE_HANDSHAKE_MS);
    const client = this.#client;
    const upstream = this.#upstream;
    const up = this.#up;
    const down = this.#down;
    // A peer's close frame after its direction was halted answers ours: end its connection.
    up.onClose = () => {
      if (up.halted) client.end();
    };
    down.onClose = () => {
      if (down.halted) upstream.end();
    };
    down.halt(() => {
      // Unless the upstream's own close frame already went to the client.
      if (!down.closeSeen && client.writable) client.write(closeFrame(code, reason, false));
      // The client had closed already (its frame went upstream): nothing more to wait for on its side.
      if (up.closeSeen) client.end();
      // Nothing is forwarded from the upstream any more: read on (a reader paused by backpressure too), to
      // see its answer.
      upstream.resume();
    });
    up.halt(() => {
      if (!up.closeSeen && upstream.writable) upstream.write(closeFrame(code, reason, true));
      if (down.closeSeen) upstream.end();
      client.resume();
    });
  }

  destroy(): void {
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #socketClosed(other: Socket): void {
    if (!other.destroyed) other.destroySoon();
    if (++this.#closedSockets < 2) return;
    this.#finished = true;
    clearTimeout(this.#grace);
    clearTimeout(this.#hard);
    this.#tunnels.remove(this);
    this.#ex.upgradeEnded();
  }
}
