/**
 * The audit line's matched data: credentials are masked (by the variable's name, or inside a whole-body value),
 * the rest is cut to 64 characters, and a line is bounded whatever the request.
 */
import { describe, expect, test } from 'vitest';
import { AUDIT_MAX_RULES, auditData, auditLine, isSecretVariable } from './audit.js';

describe('WAF audit data', () => {
  test('credential variables are masked whole', () => {
    for (const v of [
      'REQUEST_HEADERS:authorization',
      'REQUEST_HEADERS:proxy-authorization',
      'REQUEST_HEADERS:cookie',
      'REQUEST_COOKIES:theme',
      'ARGS:password',
      'ARGS:json.user.password',
      'ARGS_POST:new_passwd',
      'ARGS:access_token',
      'ARGS:json.client_secret',
      'REQUEST_HEADERS:x-api-key',
      'ARGS:apiKey',
      'REQUEST_HEADERS:x-auth-token',
    ]) {
      expect(isSecretVariable(v), v).toBe(true);
      expect(auditData(v, "1' OR '1'='1")).toBe('[masked]');
    }
    for (const v of ['ARGS:q', 'ARGS:json.author', 'REQUEST_HEADERS:user-agent', 'ARGS_NAMES:password']) {
      expect(isSecretVariable(v), v).toBe(false);
    }
  });

  test('secrets inside a whole-body or query value are masked; the rest is cut to 64 characters', () => {
    expect(auditData('REQUEST_BODY', "user=alice&password=' OR '1'='1&remember=on")).toBe(
      'user=alice&password=[masked]&remember=on',
    );
    expect(auditData('REQUEST_BODY', '{"name":"x","token": "abc.def","q":"<script>"}')).toBe(
      '{"name":"x","token": [masked],"q":"<script>"}',
    );
    expect(auditData('REQUEST_LINE', 'GET /x?api_key=k123&q=1 HTTP/1.1')).toBe(
      'GET /x?api_key=[masked]&q=1 HTTP/1.1',
    );
    expect(auditData('ARGS:q', 'see Bearer eyJhbGciOi.x.y')).toBe('see Bearer [masked]');
    const long = auditData('ARGS:q', 'a'.repeat(500));
    expect(long).toBe(`${'a'.repeat(64)}…`);
  });

  test('a line holds at most 32 rules and 8 tags per rule', () => {
    const matched = Array.from({ length: 40 }, (_, i) => ({
      id: 942100 + i,
      msg: 'SQL Injection Attack Detected via libinjection',
      variable: 'ARGS:id',
      value: "1' OR '1'='1",
      severity: 'CRITICAL',
      tags: Array.from({ length: 12 }, (_, k) => `tag-${k}`),
    }));
    const line = auditLine({
      policy: 'crs',
      route: 'api',
      requestId: 'r1',
      traceId: undefined,
      method: 'GET',
      path: '/items',
      action: 'blocked',
      score: 200,
      blockingRule: 949110,
      matched,
    });
    expect(line.endsWith('\n')).toBe(true);
    const rec = JSON.parse(line);
    expect(rec.rules).toHaveLength(AUDIT_MAX_RULES);
    expect(rec.rulesTruncated).toBe(true);
    expect(rec.rules[0]).toEqual({
      id: 942100,
      msg: 'SQL Injection Attack Detected via libinjection',
      severity: 'CRITICAL',
      tags: matched[0]!.tags.slice(0, 8),
      variable: 'ARGS:id',
      data: "1' OR '1'='1",
    });
    expect(rec).toMatchObject({
      policy: 'crs',
      route: 'api',
      requestId: 'r1',
      action: 'blocked',
      score: 200,
    });
  });
});
