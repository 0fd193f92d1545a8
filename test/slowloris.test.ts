import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { simpleConfig, startGateway, startUpstream, type TestGateway, type Upstream } from './helpers.js';

describe('slow clients cannot exhaust the gateway', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/echo') {
        req.resume();
        req.on('end', () => res.end('ok'));
      } else res.end('ok');
    });
    gw = await startGateway(
      simpleConfig(up.url, undefined, {
        listeners: [{ name: 'public', port: 0, timeouts: { headers: '1s', request: '2s', idle: '1s' } }],
      }),
    );
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  test('300 connections trickling headers are cut after the header timeout while others are served', async () => {
    const slow: Socket[] = [];
    const closed: Promise<string>[] = [];
    for (let i = 0; i < 300; i++) {
      const s = connect(gw.port, '127.0.0.1');
      s.on('error', () => {});
      let got = '';
      s.on('data', (c) => (got += c));
      closed.push(new Promise((resolve) => s.on('close', () => resolve(got))));
      s.write('GET / HTTP/1.1\r\nHost: x\r\n');
      slow.push(s);
    }
    const trickle = setInterval(() => {
      for (const s of slow) if (!s.destroyed) s.write('X-Slow: 1\r\n');
    }, 200);
    try {
      // Normal clients are served while the slow ones hang on.
      for (let i = 0; i < 20; i++) {
        const r = await fetch(`${gw.url}/`);
        expect(r.status).toBe(200);
        await r.text();
      }
      const t0 = Date.now();
      const replies = await Promise.all(closed);
      expect(Date.now() - t0).toBeLessThan(5000);
      // Each slow connection was answered with 408 request_timeout, then closed.
      expect(replies.filter((r) => r.startsWith('HTTP/1.1 408')).length).toBe(300);
      expect(replies[0]).toContain('request_timeout');
    } finally {
      clearInterval(trickle);
      for (const s of slow) s.destroy();
    }
  }, 30_000);

  test('a client that sends headers but trickles its body is cut at the request timeout', async () => {
    const s = connect(gw.port, '127.0.0.1');
    let got = '';
    s.on('data', (c) => (got += c));
    s.on('error', () => {});
    s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n');
    const trickle = setInterval(() => s.write('a'), 100);
    const t0 = Date.now();
    await new Promise((resolve) => s.on('close', resolve));
    clearInterval(trickle);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(got).toContain('request_timeout');
  }, 15_000);

  test('when the upstream answers before the body is complete, the connection closes after that one reply', async () => {
    const s = connect(gw.port, '127.0.0.1');
    let got = '';
    s.on('data', (c) => (got += c));
    s.on('error', () => {});
    s.write('POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n');
    const trickle = setInterval(() => s.write('a'), 100);
    await new Promise((resolve) => s.on('close', resolve));
    clearInterval(trickle);
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(got.match(/HTTP\/1\.1/g)).toHaveLength(1);
  }, 15_000);
});
