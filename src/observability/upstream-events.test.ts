import { channel } from 'node:diagnostics_channel';
import { Writable } from 'node:stream';
import pino from 'pino';
import { expect, test } from 'vitest';
import { logUpstreamEvents } from './upstream-events.js';

function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

test('JWKS fetches: a failure is a warning that says whether earlier keys stay; a recovery is logged once', async () => {
  const { log, lines } = capture();
  const stop = logUpstreamEvents(log);
  const jwks = channel('trellis:jwks');
  const url = 'https://issuer.example/.well-known/jwks.json';
  jwks.publish({ url, ok: true, keys: 2, recovered: false });
  jwks.publish({ url, ok: false, error: 'status 503', keys: 2 });
  jwks.publish({ url, ok: false, error: 'timeout', keys: 0 });
  jwks.publish({ url, ok: true, keys: 3, recovered: true });
  stop();
  jwks.publish({ url, ok: false, error: 'after stop', keys: 0 });
  await new Promise((r) => setImmediate(r));

  expect(lines.map((l) => [l.level, l.msg])).toEqual([
    [40, 'JWKS fetch failed: the keys fetched before stay in use'],
    [40, 'JWKS fetch failed: no keys yet, tokens of this issuer are refused with 401 token_invalid'],
    [30, 'JWKS fetched again after failures'],
  ]);
  expect(lines[0]).toMatchObject({ jwks: url, error: 'status 503', keysKept: 2 });
  expect(lines[2]).toMatchObject({ jwks: url, keys: 3 });
});
