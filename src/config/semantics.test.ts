import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigText } from './load.js';
import { endpointProblem, parseAddressOrCidr } from './semantics.js';

const dir = mkdtempSync(join(tmpdir(), 'trellis-semantics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `line:col path: message` per error. */
function errors(lines: string[]): string[] {
  const r = loadConfigText(lines.join('\n'), 'test.yaml', { env: {}, baseDir: dir });
  if (r.ok) throw new Error('expected errors, the config loaded');
  return r.errors.map((e) => `${e.line}:${e.column} ${e.path}: ${e.message}`);
}

function loads(lines: string[]): boolean {
  return loadConfigText(lines.join('\n'), 'test.yaml', { env: {}, baseDir: dir }).ok;
}

const LISTENER = ['listeners:', '  - { name: public, port: 8080 }']; // lines 1-2
const SERVICE = ['services:', '  - { name: demo, endpoints: ["http://127.0.0.1:3000"] }']; // lines 3-4

describe('names and references', () => {
  it('rejects duplicate names', () => {
    expect(
      errors([
        'listeners:',
        '  - { name: a, port: 1 }',
        '  - { name: a, port: 2 }',
        'services:',
        '  - { name: s, endpoints: ["http://h:1"] }',
        '  - { name: s, endpoints: ["http://h:2"] }',
        'routes:',
        '  - { name: r, backends: [{ service: s }] }',
        '  - { name: r, backends: [{ service: s }] }',
      ]),
    ).toEqual([
      '3:13 listeners[1].name: duplicate listener name "a" (also listeners[0])',
      '6:13 services[1].name: duplicate service name "s" (also services[0])',
      '9:13 routes[1].name: duplicate route name "r" (also routes[0])',
    ]);
  });

  it('resolves backend services and route listeners, suggesting close names', () => {
    expect(
      errors([
        ...LISTENER,
        ...SERVICE,
        'routes:',
        '  - name: api',
        '    listeners: [pubic, admin]',
        '    backends: [{ service: demo }, { service: dmeo }, { service: other }]',
      ]),
    ).toEqual([
      '7:17 routes[0].listeners[0]: unknown listener "pubic" (did you mean "public"?)',
      '7:24 routes[0].listeners[1]: unknown listener "admin"',
      '8:46 routes[0].backends[1].service: unknown service "dmeo" (did you mean "demo"?)',
      '8:65 routes[0].backends[2].service: unknown service "other"',
    ]);
    expect(errors([...LISTENER, 'routes:', '  - { name: r, backends: [{ service: x }] }'])).toEqual([
      '4:38 routes[0].backends[0].service: unknown service "x" (no services are defined)',
    ]);
  });
});

describe('route actions', () => {
  it('needs exactly one of backends, redirect, directResponse', () => {
    expect(
      errors([
        ...LISTENER,
        ...SERVICE,
        'routes:',
        '  - name: none', //                                                   6
        '  - name: empty', //                                                  7
        '    backends: []', //                                                 8
        '  - name: both', //                                                   9
        '    backends: [{ service: demo }]', //                                10
        '    directResponse: { status: 204 }', //                              11
        '  - name: zero', //                                                   12
        '    backends: [{ service: demo, weight: 0 }]', //                     13
      ]),
    ).toEqual([
      '6:5 routes[0]: a route needs exactly one of "backends", "redirect" or "directResponse"',
      '8:15 routes[1].backends: "backends" is empty; a route needs exactly one of "backends", "redirect" or "directResponse"',
      '11:5 routes[2].directResponse: "backends" and "directResponse" cannot be combined; a route needs exactly one of "backends", "redirect" or "directResponse"',
      '13:15 routes[3].backends: every backend has weight 0; at least one needs a weight above 0 to receive traffic',
    ]);
  });

  it('allows a prefix rewrite only with a prefix path match (or no path, which is prefix "/")', () => {
    const route = (match: string, rewrite: string) => [
      ...LISTENER,
      ...SERVICE,
      'routes:',
      '  - name: r',
      `    match: ${match}`,
      '    backends: [{ service: demo }]',
      `    rewrite: ${rewrite}`,
    ];
    expect(loads(route('{ path: { prefix: /api } }', '{ path: { prefix: / } }'))).toBe(true);
    expect(loads(route('{ methods: [GET] }', '{ path: { prefix: /v2 } }'))).toBe(true);
    expect(loads(route('{ path: { exact: /a } }', '{ path: { full: /b } }'))).toBe(true);
    expect(errors(route('{ path: { template: /u/:id } }', '{ path: { prefix: /v2 } }'))).toEqual([
      '9:32 routes[0].rewrite.path.prefix: a prefix rewrite needs a "prefix" path match; this route matches by "template" (use "full" instead)',
    ]);
    expect(
      errors([
        ...LISTENER,
        'routes:',
        '  - { name: r, match: { path: { exact: /a } }, redirect: { path: { prefix: /b } } }',
      ]),
    ).toEqual([
      '4:76 routes[0].redirect.path.prefix: a prefix redirect needs a "prefix" path match; this route matches by "exact" (use "full" instead)',
    ]);
  });
});

describe('patterns', () => {
  it('compiles every regex, naming the pattern and the error', () => {
    expect(
      errors([
        ...LISTENER,
        'routes:',
        '  - name: r', //                                                       4
        '    directResponse: { status: 200 }', //                               5
        '    match:', //                                                        6
        '      path: { regex: "/a(" }', //                                      7
        '      headers: [{ name: x-a, regex: "[z-a]" }]', //                    8
        '      query: [{ name: q, regex: "ok" }, { name: p, regex: "*" }]', //  9
        '  - name: r2', //                                                      10
        '    backends: []', //                                                  11
        '    redirect: { path: { full: / } }', //                               12
        '    rewrite: { path: { regex: "(?<", substitution: x } }', //         13
      ]),
    ).toEqual([
      '7:22 routes[0].match.path.regex: invalid regular expression "/a(": Invalid regular expression: //a(/: Unterminated group',
      '8:37 routes[0].match.headers[0].regex: invalid regular expression "[z-a]": Invalid regular expression: /[z-a]/: Range out of order in character class',
      '9:59 routes[0].match.query[1].regex: invalid regular expression "*": Invalid regular expression: /*/: Nothing to repeat',
      '13:31 routes[1].rewrite.path.regex: invalid regular expression "(?<": Invalid regular expression: /(?</: Invalid capture group name',
    ]);
  });

  it('checks path template parameters', () => {
    const template = (t: string) =>
      errors([
        ...LISTENER,
        'routes:',
        `  - { name: r, match: { path: { template: "${t}" } }, directResponse: { status: 200 } }`,
      ]);
    expect(template('/a/:/b')).toEqual([
      '4:43 routes[0].match.path.template: empty parameter name in template "/a/:/b": write ":name"',
    ]);
    expect(template('/u/:id/o/:id')).toEqual([
      '4:43 routes[0].match.path.template: duplicate parameter ":id" in template "/u/:id/o/:id"',
    ]);
    expect(template('/u/:1d')).toEqual([
      '4:43 routes[0].match.path.template: invalid parameter name "1d" in template "/u/:1d": expected letters, digits, "_" or "-"',
    ]);
  });
});

describe('addresses', () => {
  it('checks endpoint URLs', () => {
    expect(endpointProblem('http://127.0.0.1:3000')).toBeUndefined();
    expect(endpointProblem('http://[::1]:3000/')).toBeUndefined();
    expect(endpointProblem('http://backend')).toBeUndefined();
    expect(endpointProblem('https://a:1')).toBeUndefined();
    expect(endpointProblem('ftp://a:1')).toBe(
      'expected an http: or https: endpoint, got "ftp:" in "ftp://a:1"',
    );
    expect(endpointProblem('http://u:p@a:1')).toBe(
      'an endpoint URL cannot hold credentials; expected an endpoint URL such as "http://127.0.0.1:3000"',
    );
    for (const bad of ['http://a:1/api', 'http://a:1?x=1', 'http://a:1/#f', 'http://a:1/?']) {
      expect(endpointProblem(bad)).toMatch(/^an endpoint URL has no path, query or fragment/);
    }
    expect(endpointProblem('127.0.0.1:3000')).toMatch(/^expected an endpoint URL/);
    expect(endpointProblem('localhost:3000')).toMatch(/^expected an endpoint URL/);
    expect(endpointProblem('localhost')).toBe(
      'expected an endpoint URL such as "http://127.0.0.1:3000", got "localhost"',
    );
    expect(endpointProblem('http://a:0')).toBe('an endpoint port must be 1-65535, got 0 in "http://a:0"');
    expect(
      errors([
        ...LISTENER,
        'services:',
        '  - name: s', //                                                           4
        '    endpoints:', //                                                        5
        '      - http://127.0.0.1:3000', //                                         6
        '      - { url: "https://127.0.0.1:3001", weight: 2 }', //                  7
        '      - http://127.0.0.1:3000/', //                                        8
      ]),
    ).toEqual([
      '7:16 services[0].endpoints[1].url: every endpoint of a service uses one scheme: this one is https://, an earlier one http://',
      '8:9 services[0].endpoints[2]: duplicate endpoint http://127.0.0.1:3000 (also services[0].endpoints[0])',
    ]);
  });

  it('checks trusted proxies', () => {
    expect(parseAddressOrCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseAddressOrCidr('::1')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' });
    expect(parseAddressOrCidr('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, family: 'ipv6' });
    for (const bad of [
      '10.0.0.0/33',
      '10.0.0/8',
      'fd00::/129',
      'localhost',
      '10.0.0.1/',
      '10.0.0.1/-1',
      '',
    ]) {
      expect(parseAddressOrCidr(bad), bad).toBeUndefined();
    }
    expect(
      errors([
        'listeners:',
        '  - name: a',
        '    port: 1',
        '    trustedProxies: [127.0.0.1, 10.0.0.0/33, "::1", 192.168.1]',
      ]),
    ).toEqual([
      '4:33 listeners[0].trustedProxies[1]: expected an IP address or CIDR range such as "10.0.0.0/8" or "fd00::/8", got "10.0.0.0/33"',
      '4:53 listeners[0].trustedProxies[3]: expected an IP address or CIDR range such as "10.0.0.0/8" or "fd00::/8", got "192.168.1"',
    ]);
  });

  it('rejects listeners that would bind the same address and port', () => {
    expect(
      errors([
        'listeners:',
        '  - { name: a, port: 8080 }', //                        2
        '  - { name: b, port: 8080, address: 127.0.0.1 }', //   3
        '  - { name: c, port: 8081, address: "::" }', //         4
        '  - { name: d, port: 8081, address: 10.0.0.1 }', //     5
        '  - { name: e, port: 0 }', //                           6
        '  - { name: f, port: 0 }', //                           7
        '  - { name: g, port: 8082, address: localhost }', //    8
        'admin: { port: 8080 }', //                              9
      ]),
    ).toEqual([
      '3:22 listeners[1].port: 127.0.0.1:8080 is already used by listeners[0] ("a") on 127.0.0.1:8080',
      '5:22 listeners[3].port: 10.0.0.1:8081 is already used by listeners[2] ("c") on [::]:8081',
      '8:37 listeners[6].address: expected an IPv4 or IPv6 address such as "127.0.0.1" or "::", got "localhost"',
      '9:16 admin.port: 127.0.0.1:8080 is already used by listeners[0] ("a") on 127.0.0.1:8080',
    ]);
    // Different addresses on one port are fine; a disabled admin listener binds nothing.
    expect(
      loads([
        'listeners:',
        '  - { name: a, port: 80, address: 127.0.0.1 }',
        '  - { name: b, port: 80, address: 127.0.0.2 }',
      ]),
    ).toBe(true);
    expect(loads(['listeners:', '  - { name: a, port: 9901 }', 'admin: { enabled: false }'])).toBe(true);
  });
});

describe('access log', () => {
  it('accepts off, stdout or a file in an existing folder', () => {
    for (const output of ['off', 'stdout', 'access.log', join(dir, 'x.log')]) {
      expect(loads([...LISTENER, `accessLog: { output: "${output}" }`]), output).toBe(true);
    }
    expect(errors([...LISTENER, 'accessLog: { output: nope/access.log }'])).toEqual([
      `3:22 accessLog.output: directory "${join(dir, 'nope')}" does not exist; expected "off", "stdout" or a file path in an existing directory`,
    ]);
    expect(errors([...LISTENER, `accessLog: { output: "${dir}" }`])).toEqual([
      `3:22 accessLog.output: "${dir}" is a directory; expected a file path`,
    ]);
  });
});

it('an endpoint URL from a secret is never quoted back in an error', () => {
  const text = [
    'listeners: [{ name: public, port: 8080 }]',
    'services: [{ name: s, endpoints: ["${env:UPSTREAM_URL}"] }]',
    'routes: [{ name: r, backends: [{ service: s }] }]',
  ].join('\n');
  const r = loadConfigText(text, 'secret.yaml', {
    env: { UPSTREAM_URL: 'http://10.0.0.1:80/?token=hunter2' },
  });
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.errors).toHaveLength(1);
  expect(r.errors[0]!.path).toBe('services[0].endpoints[0]');
  expect(JSON.stringify(r.errors)).not.toContain('hunter2');
});

describe('what the gateway cannot compile, validation refuses', () => {
  it('a route path with a malformed percent-encoding is an error at that route', () => {
    const text = [
      'listeners: [{ name: public, port: 8080 }]',
      'services: [{ name: s, endpoints: ["http://127.0.0.1:3000"] }]',
      'routes:',
      '  - { name: a, backends: [{ service: s }] }',
      '  - { name: b, match: { path: { exact: /ok } }, backends: [{ service: s }] }',
      '  - name: c',
      '    match: { path: { prefix: "/files%" } }',
      '    backends: [{ service: s }]',
    ].join('\n');
    const r = loadConfigText(text, 'bad-path.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.path).toBe('routes[2].match.path.prefix');
    expect(r.errors[0]!.line).toBe(7);
    expect(r.errors[0]!.message).toMatch(/percent-encoding/);
  });

  it('control characters in header values, content types and hosts are refused', () => {
    const text = [
      'listeners: [{ name: public, port: 8080 }]',
      'services: [{ name: s, endpoints: ["http://127.0.0.1:3000"] }]',
      'routes:',
      '  - name: a',
      '    match: { path: { exact: /a } }',
      '    directResponse: { status: 200, contentType: "text/plain\\r\\nx-evil: 1" }',
      '  - name: b',
      '    backends: [{ service: s }]',
      '    requestHeaders: { set: { x-a: "one\\ntwo" } }',
      '    rewrite: { host: "evil\\r\\nx: y" }',
    ].join('\n');
    const r = loadConfigText(text, 'crlf.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path)).toEqual([
      'routes[0].directResponse.contentType',
      'routes[1].requestHeaders.set["x-a"]',
      'routes[1].rewrite.host',
    ]);
  });
});

describe('upstream resilience settings', () => {
  it('needs exactly one endpoint source, and a hash key exactly for hashing balancers', () => {
    expect(
      errors([
        ...LISTENER,
        'services:',
        '  - { name: a }',
        '  - { name: b, endpoints: ["http://127.0.0.1:1"], dns: { name: b.internal, port: 80 } }',
        '  - { name: c, endpoints: ["http://127.0.0.1:2"], loadBalancer: { type: maglev } }',
        '  - { name: d, endpoints: ["http://127.0.0.1:3"], loadBalancer: { hashOn: { header: x-user } } }',
        '  - name: e',
        '    endpoints: ["http://127.0.0.1:4"]',
        '    loadBalancer: { type: ring-hash, hashOn: { header: x-user, clientIp: true } }',
      ]),
    ).toEqual([
      '4:5 services[0]: expected `endpoints` or `dns`: a service needs somewhere to send requests',
      '5:56 services[1].dns: expected `endpoints` or `dns`, not both',
      '6:65 services[2].loadBalancer.hashOn: expected exactly one of header, cookie, query or clientIp: maglev hashes a request key',
      '7:75 services[3].loadBalancer.hashOn: hashOn needs type ring-hash or maglev, not p2c-ewma',
      '10:46 services[4].loadBalancer.hashOn: expected exactly one of header, cookie, query or clientIp: ring-hash hashes a request key',
    ]);
  });

  it('checks retry, mirror and health check settings that only make sense together', () => {
    expect(
      errors([
        ...LISTENER,
        'services:',
        '  - name: demo',
        '    endpoints: ["http://127.0.0.1:3000"]',
        '    healthCheck: { type: tcp, bodyContains: ok, expectedStatuses: ["300-200"] }',
        'routes:',
        '  - name: r',
        '    backends: [{ service: demo }]',
        '    retries: { on: [retriable-status-codes], backoff: { base: 1s, max: 10ms } }',
        '    mirror: { service: dmeo }',
      ]),
    ).toEqual([
      '6:45 services[0].healthCheck.bodyContains: bodyContains applies to http checks, not tcp',
      '6:68 services[0].healthCheck.expectedStatuses[0]: range 300-200 is empty: 300 > 200',
      '10:14 routes[0].retries.statusCodes: retriable-status-codes is in `on` but no statusCodes are listed',
      '10:63 routes[0].retries.backoff.base: expected base ≤ max',
      '11:24 routes[0].mirror.service: unknown service "dmeo" (did you mean "demo"?)',
    ]);
  });

  it('accepts a service that uses every mechanism', () => {
    expect(
      loads([
        ...LISTENER,
        'gateway: { zone: eu-1a }',
        'services:',
        '  - name: demo',
        '    endpoints:',
        '      - { url: "http://127.0.0.1:3000", zone: eu-1a, weight: 2 }',
        '      - { url: "http://127.0.0.1:3001", zone: eu-1b, priority: 1 }',
        '    loadBalancer: { type: maglev, hashOn: { cookie: session } }',
        '    healthCheck: { path: /healthz, expectedStatuses: [200, "204-299"], interval: 2s }',
        '    outlierDetection: { consecutive5xx: 3, successRate: {} }',
        '    circuitBreaker: { maxRequests: 100, errorRate: { failureRatio: 0.3 } }',
        '    retryBudget: { ratio: 0.1 }',
        '  - { name: shadow, dns: { name: shadow.internal, port: 8080, servers: ["127.0.0.1:5353"] } }',
        'routes:',
        '  - name: r',
        '    backends: [{ service: demo }]',
        '    retries: { attempts: 3, on: [5xx, reset], perTryTimeout: 1s }',
        '    mirror: { service: shadow, percent: 5 }',
        '    fault: { delay: { duration: 100ms, percent: 1 } }',
      ]),
    ).toBe(true);
  });
});

describe('admin listener', () => {
  it('needs a token when it listens beyond loopback', () => {
    expect(errors([...LISTENER, 'admin: { address: 0.0.0.0 }'])).toEqual([
      '3:19 admin.address: the admin API on 0.0.0.0 is reachable beyond this machine: set admin.token (use ${env:NAME} or ${file:PATH}) or bind 127.0.0.1',
    ]);
    expect(loads([...LISTENER, 'admin: { address: 0.0.0.0, token: a-long-enough-token-value }'])).toBe(true);
    expect(loads([...LISTENER, 'admin: { address: "::1" }'])).toBe(true);
  });
});
