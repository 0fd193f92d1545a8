/**
 * @detectXSS on its own: what a browser would run from an echoed value is caught, in the text state and inside
 * an attribute; URLs in angle brackets (markdown autolinks) and names a browser reads as inert elements pass.
 */
import { describe, expect, test } from 'vitest';
import { detectXss } from './detect-xss.js';

const caught = (inputs: string[]) => {
  for (const s of inputs) expect(detectXss(s), s).toBe(true);
};
const passed = (inputs: string[]) => {
  for (const s of inputs) expect(detectXss(s), s).toBe(false);
};

describe('detectXss', () => {
  test('script tags, event handlers and script URLs', () => {
    caught([
      '<script>alert(1)</script>',
      '<img src=x onerror=alert(1)>',
      '<svg/onload=alert(1)>',
      '<a href="javascript:alert(1)">x</a>',
      '<a href="jav&#x09;ascript:alert(1)">x</a>',
      '<IMG SRC=JaVaScRiPt:alert(1)>',
      '<details open ontoggle=alert(1)>',
      '"><script>alert(1)</script>',
      '" onmouseover="alert(1)',
      "' autofocus onfocus=alert(1) x='",
      '<div style="width: expression(alert(1))">',
      '<<script>alert(1)//<</script>',
    ]);
    passed([
      '<p>Hello <b>world</b></p>',
      '<a href="https://shop.example.com">Track</a>',
      'if a<b and c>d',
      '<3 you',
    ]);
  });

  test('a URL in angle brackets is an autolink, not a namespaced tag', () => {
    passed([
      'Useful links: <https://example.com/guide> and https://github.com/org/repo/pull/42',
      'Mail <mailto:jane@example.com> or call <tel:+1-555-0100>',
      '<http://localhost:8080/path?q=1&r=2>',
      '<ftp://files.example.com/pub/>',
      '<urn:isbn:0451450523>',
    ]);
    // Namespaced elements still count, and an autolink-looking tag still gets its attributes read.
    caught([
      '<x:script>alert(1)</x:script>',
      '<t:set attributeName=innerHTML to=x>',
      '<https://evil.example/ onmouseover=alert(1)>',
    ]);
  });

  test('a tag name runs to a blank, / or > as the browser reads it', () => {
    // One element named `scr<script`: nothing runs.
    passed(['<scr<script>ipt>alert(1)</scr</script>ipt>']);
    // A tag left open by an unclosed quote does not hide what follows it.
    caught(['<a title="x> <script>alert(1)</script>']);
  });
});
