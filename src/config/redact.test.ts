import { describe, expect, it } from 'vitest';
import { REDACTED, redactConfig } from './redact.js';

describe('redactConfig', () => {
  const config = Object.freeze({
    services: [{ name: 's', endpoints: ['http://secret-host:1', 'http://public:2'] }],
    routes: [{ requestHeaders: { set: { authorization: 'Bearer x', 'x-a': 'a' } } }],
  });

  it('replaces the values at the given paths in a deep copy', () => {
    const out = redactConfig(config, [
      ['services', '0', 'endpoints', '0'],
      ['routes', 0, 'requestHeaders', 'set', 'authorization'],
    ]);
    expect(out).toEqual({
      services: [{ name: 's', endpoints: [REDACTED, 'http://public:2'] }],
      routes: [{ requestHeaders: { set: { authorization: '<redacted>', 'x-a': 'a' } } }],
    });
    expect(config.services[0]!.endpoints[0]).toBe('http://secret-host:1');
  });

  it('skips paths that do not exist and redacts everything for the root path', () => {
    expect(
      redactConfig(config, [['routes', '5', 'x'], ['nope'], ['services', '0', 'name', 'deeper']]),
    ).toEqual(config);
    expect(redactConfig(config, [[]])).toBe(REDACTED);
  });
});
