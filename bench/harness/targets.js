// The targets: how each is started, on which port, pinned to which core. Ports are fixed (and free-checked)
// because bench/trellis.yaml names them; the upstream's is the one every target forwards to.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pinned, start } from './processes.js';

export const UPSTREAM_PORT = 18000;
export const UPSTREAM_URL = `http://127.0.0.1:${UPSTREAM_PORT}`;
export const UPSTREAM_BODY = 'Hello, world!';
const TRELLIS_PORT = 18080; // bench/trellis.yaml
// The OTLP collector of the telemetry targets (harness/otlp-sink.js); bench/trellis-telemetry*.yaml name it.
export const SINK_PORT = 18001;
export const SINK_URL = `http://127.0.0.1:${SINK_PORT}`;

/** bench/trellis.yaml with its listener moved to `port`: the same gateway, for a second Trellis build beside the first. */
export function trellisConfigOnPort(yaml, port) {
  const listener = new RegExp(`^(\\s*port:\\s*)${TRELLIS_PORT}\\s*$`, 'gm');
  const found = yaml.match(listener)?.length ?? 0;
  if (found !== 1)
    throw new Error(`bench/trellis.yaml: expected one "port: ${TRELLIS_PORT}" line, found ${found}`);
  return yaml.replace(listener, `$1${port}`);
}

/**
 * nginx as a plain reverse proxy with an upstream keep-alive pool, everything under `dir`; with `tls` ({ cert, key })
 * it terminates TLS 1.3 and offers h2 (bench/protocols.js).
 */
export function nginxConfig({ dir, port, tls }) {
  const listen = tls
    ? `listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.3;`
    : `listen 127.0.0.1:${port};`;
  return `# Written by bench/harness/targets.js; started with -p ${dir} -c <this file> -g 'daemon off;'
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # As the Node peers do: a client connection is never closed after N requests.
  keepalive_requests 1000000;${tls ? '\n  http2_max_requests 1000000;' : ''}
  upstream hello {
    server 127.0.0.1:${UPSTREAM_PORT};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    ${listen}
    location / {
      proxy_pass http://hello;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** A typical API GET: a resource path with filter, paging and sort parameters. */
export const WAF_GET_PATH = '/items?category=shoes&color=blue&limit=20&offset=40&sort=-price';

/** The API key of bench/trellis-edge.yaml's one consumer (a bench value; the config holds its hash). */
export const EDGE_KEY = 'bench-key-0123456789';

/**
 * A 4 KiB JSON document like an API's create call: ~120 fields of names, prose, numbers, URLs and nested lists
 * (what the WAF's JSON body inspection flattens into ARGS).
 */
export const JSON_POST_BODY = (() => {
  const items = [];
  const doc = { order: { customer: { name: 'Ana María Núñez', email: 'ana@example.com' }, items } };
  for (let i = 0; ; i++) {
    const item = {
      sku: `SKU-${1000 + i}`,
      title: `Blue running shoe, size ${36 + (i % 12)}`,
      note: 'Ships in 2-3 days; see https://shop.example.com/help/shipping for details.',
    };
    items.push(item);
    if (JSON.stringify(doc).length > 4096) {
      items.pop();
      return JSON.stringify(doc);
    }
  }
})();

/** The POST targets' request (wrk Lua script, bench/harness/wrk.js). */
const JSON_POST = { method: 'POST', body: JSON_POST_BODY, contentType: 'application/json' };

/**
 * name → { port, start(ctx), path?, request? }. `start` returns the process, or null for `direct` (which is the upstream).
 * ctx: { repoDir, benchDir, tmpDir, pin, proxyCpu, trellisRef }.
 */
export const TARGETS = {
  direct: { port: UPSTREAM_PORT, start: () => null },

  nginx: {
    port: 18081,
    start(ctx) {
      const dir = path.join(ctx.tmpDir, 'nginx');
      mkdirSync(dir, { recursive: true });
      chmodSync(ctx.tmpDir, 0o755); // the worker runs as an unprivileged user and must reach its temp paths
      chmodSync(dir, 0o755);
      const conf = path.join(dir, 'nginx.conf');
      writeFileSync(conf, nginxConfig({ dir, port: this.port }));
      // -e: the error log before the config is read would otherwise go to /var/log/nginx.
      const [command, args] = pinned(
        ctx.proxyCpu,
        'nginx',
        ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'],
        ctx.pin,
      );
      return start({ name: 'nginx', command, args, cwd: dir, logFile: path.join(ctx.tmpDir, 'nginx.log') });
    },
  },

  'node-minimal': nodePeer('node-minimal', 18082, 'peers/minimal-proxy.js'),
  'fast-gateway': nodePeer('fast-gateway', 18083, 'peers/fast-gateway.js'),
  'fastify-http-proxy': nodePeer('fastify-http-proxy', 18084, 'peers/fastify-http-proxy.js'),

  // Another Trellis checkout (--trellis-ref), on the current tree's bench/trellis.yaml moved to its own port.
  'trellis-ref': {
    port: 18085,
    start(ctx) {
      const config = path.join(ctx.tmpDir, 'trellis-ref.yaml');
      const yaml = readFileSync(path.join(ctx.benchDir, 'trellis.yaml'), 'utf8');
      writeFileSync(config, trellisConfigOnPort(yaml, this.port));
      return startTrellis(ctx, 'trellis-ref', ctx.trellisRef, config);
    },
  },

  trellis: {
    port: TRELLIS_PORT,
    start: (ctx) => startTrellis(ctx, 'trellis', ctx.repoDir, 'bench/trellis.yaml'),
  },

  // Issue 7: the current build with telemetry off, metrics + 1% tracing, metrics + 100% tracing. Each config
  // names its own port (and the sink's), and is bench/trellis.yaml otherwise (telemetry.test.js checks).
  'trellis-telemetry-off': trellisWith('trellis-telemetry-off', 18086),
  'trellis-telemetry': trellisWith('trellis-telemetry', 18087, { otlp: true }),
  'trellis-telemetry-full': trellisWith('trellis-telemetry-full', 18088, { otlp: true }),

  // Issue 5: a rate limit that never triggers, keyed by client address: local, and in a Redis the harness starts.
  'trellis-ratelimit': trellisWith('trellis-ratelimit', 18089),
  'trellis-ratelimit-redis': trellisWith('trellis-ratelimit-redis', 18090, { redis: true }),
  // Issue 5's full edge chain: API key (in the query the load sends), CORS, a local rate limit, the access log.
  'trellis-edge': { ...trellisWith('trellis-edge', 18094), path: `/?api_key=${EDGE_KEY}` },
  // Issue 6: the OWASP CRS at PL1 on the measured route (bench/trellis-waf.yaml), for a typical API GET and a
  // 4 KiB JSON POST; compared with the same requests through bench/trellis.yaml.
  'trellis-waf': { ...trellisWith('trellis-waf', 18095), path: WAF_GET_PATH },
  'trellis-waf-post': { ...trellisWith('trellis-waf', 18095), path: '/items', request: JSON_POST },
  'trellis-get': {
    port: TRELLIS_PORT,
    path: WAF_GET_PATH,
    start: (ctx) => startTrellis(ctx, 'trellis-get', ctx.repoDir, 'bench/trellis.yaml'),
  },
  'trellis-post': {
    port: TRELLIS_PORT,
    path: '/items',
    request: JSON_POST,
    start: (ctx) => startTrellis(ctx, 'trellis-post', ctx.repoDir, 'bench/trellis.yaml'),
  },
};

/**
 * The current build on bench/<name>.yaml; `otlp`: it exports spans to the sink, `redis`: it keeps rate limits in
 * Redis; the harness then starts them.
 */
function trellisWith(name, port, { otlp = false, redis = false } = {}) {
  return {
    port,
    otlp,
    redis,
    config: `bench/${name}.yaml`,
    start(ctx) {
      return startTrellis(ctx, name, ctx.repoDir, this.config);
    },
  };
}

/** `node bin/trellis.js gateway --config <config> --workers 1` of the checkout in `dir`. */
function startTrellis(ctx, name, dir, config) {
  const [command, args] = pinned(
    ctx.proxyCpu,
    process.execPath,
    [path.join(dir, 'bin', 'trellis.js'), 'gateway', '--config', config, '--workers', '1'],
    ctx.pin,
  );
  return start({
    name,
    command,
    args,
    cwd: dir,
    env: { NODE_ENV: 'production' },
    logFile: path.join(ctx.tmpDir, `${name}.log`),
  });
}

function nodePeer(name, port, script) {
  return {
    port,
    start(ctx) {
      const [command, args] = pinned(
        ctx.proxyCpu,
        process.execPath,
        [path.join(ctx.benchDir, script), String(port), UPSTREAM_URL],
        ctx.pin,
      );
      return start({
        name,
        command,
        args,
        cwd: ctx.benchDir,
        env: { NODE_ENV: 'production' },
        logFile: path.join(ctx.tmpDir, `${name}.log`),
      });
    },
  };
}

// The Redis of the rate-limit target; bench/trellis-ratelimit-redis.yaml names it.
export const REDIS_PORT = 18002;

/** A private redis-server (no persistence) for the whole run, pinned like the upstream. */
export function startRedis(ctx) {
  const [command, args] = pinned(
    ctx.upstreamCpu,
    'redis-server',
    ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    ctx.pin,
  );
  return start({
    name: 'redis',
    command,
    args,
    cwd: ctx.tmpDir,
    logFile: path.join(ctx.tmpDir, 'redis.log'),
  });
}

/** The OTLP sink, started once for the whole run when a target exports spans; pinned like the upstream. */
export function startSink(ctx) {
  const [command, args] = pinned(
    ctx.upstreamCpu,
    process.execPath,
    [path.join(ctx.benchDir, 'harness', 'otlp-sink.js'), String(SINK_PORT)],
    ctx.pin,
  );
  return start({
    name: 'otlp-sink',
    command,
    args,
    cwd: ctx.benchDir,
    logFile: path.join(ctx.tmpDir, 'otlp-sink.log'),
  });
}

/** The sink's counts so far: { requests, bytes, spans, serverSpans, badRequests }. */
export async function sinkStats() {
  const res = await fetch(`${SINK_URL}/stats`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`otlp sink: GET /stats answered ${res.status}`);
  return res.json();
}

/** The upstream, started once for the whole run. */
export function startUpstream(ctx) {
  const [command, args] = pinned(
    ctx.upstreamCpu,
    process.execPath,
    [path.join(ctx.benchDir, 'upstream.js'), String(UPSTREAM_PORT)],
    ctx.pin,
  );
  return start({
    name: 'upstream',
    command,
    args,
    cwd: ctx.benchDir,
    logFile: path.join(ctx.tmpDir, 'upstream.log'),
  });
}
