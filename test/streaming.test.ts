import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startUpstream, type Upstream } from './helpers.js';
import { type GatewayProcess, gatewayYaml, spawnGateway } from './process.js';

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(256 * 1024, 120);

const MiB = 1024 * 1024;

/** Peak resident memory of a process, from /proc (Linux). */
function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

const CONFIG = gatewayYaml('    timeouts: { request: 60s }\n');

/** Writes `total` bytes to a writable, honouring backpressure. */
function pump(w: NodeJS.WritableStream, total: number, done: () => void): void {
  let sent = 0;
  const write = () => {
    while (sent < total) {
      sent += CHUNK.length;
      if (!w.write(CHUNK)) {
        w.once('drain', write);
        return;
      }
    }
    done();
  };
  write();
}

describe('1 GiB through the gateway streams with backpressure', () => {
  let up: Upstream;
  let gw: GatewayProcess;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': GiB });
        pump(res, GiB, () => res.end());
        return;
      }
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      req.on('end', () => res.end(String(bytes)));
    });
    gw = await spawnGateway(CONFIG, { workers: 1, upstream: up.url });
    await gw.waitReady();
  });
  afterAll(async () => {
    gw.kill('SIGTERM');
    await gw.exited;
    await up.close();
  });

  test('a 1 GiB download and a 1 GiB upload keep the gateway RSS bounded (grows < 110 MB on Node 20)', async () => {
    const baseline = rssBytes(gw.child.pid!);
    const downloaded = await new Promise<number>((resolve, reject) => {
      httpRequest(`${gw.url}/download`, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
        });
        res.on('end', () => resolve(n));
        res.on('error', reject);
      })
        .on('error', reject)
        .end();
    });
    expect(downloaded).toBe(GiB);

    const uploaded = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/upload`, { method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      pump(req, GiB, () => req.end());
    });
    expect(uploaded).toBe(String(GiB));

    const peak = peakRssBytes(gw.child.pid!);
    // What the transfers added: a buffered body would add a gigabyte, streaming adds the garbage of the socket
    // reads between two collections (up to ~100 MB on Node 20; 118 MB was seen once on Node 24, whose runtime
    // keeps more transient memory, see below).
    const major = Number(process.versions.node.split('.')[0]);
    expect(peak - baseline).toBeLessThan((major < 22 ? 110 : 150) * MiB);
    // The absolute bar: the baseline is ~80 MB on Node 20 since metrics and tracing load with the gateway, and
    // peaks measured 134–171 MB (195–201 MB on Node 24). On Node 22 and later the runtime itself keeps more
    // transient memory: the same transfer through a 40-line node:http + undici proxy peaks at ~173 MB on
    // Node 24 (~133 MB on 20). Since the policy kinds (jose, CEL, the WAF engine) load with the gateway, Node 24's
    // peak has been measured at 224 MB; the growth bound above is the one that tells streaming from buffering.
    // CI has seen 171 MB on Node 20, so the absolute bars keep ~40 MB of headroom over the peaks measured: they
    // catch a baseline that balloons, the growth bound catches buffering.
    if (major < 22) expect(peak).toBeLessThan(210 * MiB);
    else expect(peak).toBeLessThan(280 * MiB);
  }, 120_000);
});
