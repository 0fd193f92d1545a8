// A bounded gRPC unary load client on node:http2 (no grpc-js: the client must cost little next to what it
// measures). Keeps `concurrency` calls in flight over `connections` h2c sessions for `durationMs`, after a
// warm-up, and reports calls per second and latency percentiles. A call counts when its trailers say
// grpc-status 0; anything else is an error.
//
// Usage: node bench/harness/grpc-load.js <host:port> [--duration 10s] [--warmup 2s] [--connections 2]
//        [--concurrency 50] [--path /bench.Echo/Say]   → one JSON line on stdout
import http2 from 'node:http2';

const MESSAGE = Buffer.from(JSON.stringify({ text: 'Hello, world!' }));
const FRAME = Buffer.alloc(5 + MESSAGE.length);
FRAME.writeUInt32BE(MESSAGE.length, 1);
MESSAGE.copy(FRAME, 5);

function ms(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text);
  if (!m) throw new Error(`expected a duration such as 10s, got ${text}`);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
}

/** Runs the load; resolves with { callsPerSec, calls, errors, latencyMs: { p50, p90, p99 } }. */
export async function grpcLoad({ target, durationMs, warmupMs, connections, concurrency, path }) {
  const sessions = [];
  for (let i = 0; i < connections; i++) {
    const s = http2.connect(`http://${target}`);
    s.on('error', () => {});
    await new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    sessions.push(s);
  }
  const headers = {
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
  };
  let measuring = false;
  let stopping = false;
  let calls = 0;
  let errors = 0;
  // Latencies in µs into a histogram of 1 µs buckets up to 1 s (beyond: the last bucket).
  const hist = new Uint32Array(1_000_001);
  let inFlight = 0;
  let done;
  const finished = new Promise((resolve) => {
    done = resolve;
  });

  const one = (k) => {
    if (stopping) {
      if (--inFlight === 0) done();
      return;
    }
    const start = process.hrtime.bigint();
    const stream = sessions[k % sessions.length].request(headers);
    let status;
    stream.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = h['grpc-status'];
    });
    stream.on('trailers', (t) => {
      status = t['grpc-status'];
    });
    stream.on('data', () => {});
    const end = () => {
      if (measuring) {
        const us = Number((process.hrtime.bigint() - start) / 1000n);
        if (status === '0') {
          calls++;
          hist[Math.min(us, 1_000_000)]++;
        } else errors++;
      }
      one(k);
    };
    stream.on('close', end);
    stream.end(FRAME);
  };
  for (let k = 0; k < concurrency; k++) {
    inFlight++;
    one(k);
  }
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  stopping = true;
  await Promise.race([finished, new Promise((r) => setTimeout(r, 5000))]);
  for (const s of sessions) s.destroy();
  const pct = (p) => {
    const want = Math.ceil((calls * p) / 100);
    let seen = 0;
    for (let i = 0; i < hist.length; i++) {
      seen += hist[i];
      if (seen >= want) return i / 1000;
    }
    return Number.NaN;
  };
  return {
    callsPerSec: calls / seconds,
    calls,
    errors,
    seconds,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99) },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const flag = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i === -1 ? dflt : args[i + 1];
  };
  const result = await grpcLoad({
    target: args[0] ?? '127.0.0.1:18003',
    durationMs: ms(flag('duration', '10s')),
    warmupMs: ms(flag('warmup', '2s')),
    connections: Number(flag('connections', '2')),
    concurrency: Number(flag('concurrency', '50')),
    path: flag('path', '/bench.Echo/Say'),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
