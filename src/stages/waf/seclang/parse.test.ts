import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { compileRuleSet } from '../engine.js';
import { CRS_PATH } from '../kind.js';
import { emptyRuleSet, parseFile, parseText } from './parse.js';

describe('SecLang parser', () => {
  test('continuations, quoting, chains, markers, removal and target updates', () => {
    const set = emptyRuleSet();
    parseText(
      [
        'SecRule ARGS|!ARGS:safe "@rx a|b" \\',
        '    "id:1,phase:2,pass,msg:\'x, y\',chain"',
        '    SecRule TX:0 "@eq 1" "setvar:tx.score=+%{tx.critical}"',
        'SecMarker END',
        'SecRule REQUEST_COOKIES:/^__utm/ "@pm a b" "id:2,phase:1,block"',
        'SecRuleUpdateTargetById 2 "!REQUEST_COOKIES:x"',
        'SecRuleRemoveById 1',
        'SecFoo bar',
        'SecRule ARGS "@nope x" "id:3,t:frobnicate,bogus:1"',
      ].join('\n'),
      'inline.conf',
      set,
    );
    const rules = set.items.filter((i) => i.kind === 'rule');
    expect(rules.map((r) => r.kind === 'rule' && r.rule.id)).toEqual([2, 3]);
    const r2 = rules[0]!.kind === 'rule' ? rules[0]!.rule : undefined;
    expect(
      r2?.variables.map((v) => `${v.exclude ? '!' : ''}${v.name}:${v.key ?? `/${v.keyRegex}/`}`),
    ).toEqual(['REQUEST_COOKIES:/^__utm/', '!REQUEST_COOKIES:x']);
    expect(set.unsupported.map((u) => `${u.file}:${u.line}: ${u.message}`)).toEqual([
      'inline.conf:8: unsupported directive SecFoo',
      'inline.conf:9: unsupported operator @nope',
      'inline.conf:9: unsupported transformation frobnicate',
      'inline.conf:9: unsupported action bogus',
    ]);
  });

  test.skipIf(!existsSync(CRS_PATH))(
    'every installed CRS rule file parses and compiles with nothing unsupported',
    () => {
      const set = emptyRuleSet();
      parseFile(CRS_PATH, set);
      expect(set.unsupported).toEqual([]);
      const compiled = compileRuleSet(set, () => true);
      expect(compiled.problems).toEqual([]);
      expect(compiled.ruleCount).toBeGreaterThan(400);
    },
  );
});
