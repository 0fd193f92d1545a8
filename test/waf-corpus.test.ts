/**
 * WAF quality against the reference: every request of test/fixtures/waf-corpus/requests.json (attacks per
 * category, benign API traffic) goes through a gateway with the CRS at paranoia level 1 as the same bytes on a raw
 * socket, and Trellis's verdict (refused or passed) is compared with the one Apache + ModSecurity 2.9 + CRS 3.3.4
 * gave (test/fixtures/waf-corpus/modsecurity.json, recorded by scripts/waf-reference.js where Apache is installed).
 *
 * `WAF_CORPUS_REPORT=waf-corpus.md npx vitest run test/waf-corpus.test.ts` also writes the table and every
 * disagreement with the rule ids that fired on one side only (the table in docs/waf.md comes from it);
 * `WAF_CORPUS_VERDICTS=trellis.json` writes Trellis's status and rule ids per request.
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { CRS_PATH } from '../src/stages/waf/kind.js';
import { simpleConfig, startGateway, startUpstream, type TestGateway, type Upstream } from './helpers.js';

interface CorpusRequest {
  id: string;
  category: string;
  attack: boolean;
  where: string;
  method: string;
  target: string;
  headers: [string, string][];
  body?: string;
}
interface Verdict {
  status: number;
  rules: number[];
  http?: string[];
}
interface Reference {
  reference: string;
  settings: string;
  generated: string;
  verdicts: Record<string, Verdict>;
}

const dir = new URL('./fixtures/waf-corpus/', import.meta.url);
const corpus = JSON.parse(readFileSync(new URL('requests.json', dir), 'utf8')) as CorpusRequest[];
const reference = JSON.parse(readFileSync(new URL('modsecurity.json', dir), 'utf8')) as Reference;
const hasCrs = existsSync(CRS_PATH);

// The bars of issue 6 item 7 are agreement >= 97% on attacks and no more false positives than ModSecurity's.
// Measured 2026-11-27 with the @detectSQLi/@detectXSS fixes (detect-sqli.ts, detect-xss.ts): 97.1% = 374/385,
// false positives 10 vs 12 (before them, 2026-11-26: 95.6% = 368/385, 14 vs 12); then with the engine fixes (chain
// actions, @rx macros, body checks 200002-200004): 100% = 385/385, false positives 9 vs 12. The assertions hold
// that level and fail on any regression below it: any disagreement on attacks fails the first, one more false
// positive than measured fails the second. Raise them as the engine's remaining gaps (docs/waf.md) are fixed.
const ISSUE_AGREEMENT = 0.97;
const MIN_AGREEMENT = 1; // 385/385 measured
const MAX_EXTRA_FALSE_POSITIVES = -3; // Trellis's benign refusals minus ModSecurity's (9 - 12 measured)

const HOST = 'api.example.com';
const ALLOWED_METHODS = ['GET', 'HEAD', 'POST', 'OPTIONS', 'PUT', 'PATCH', 'DELETE'];
/** Rules that say nothing about why: CRS's blocking evaluation and correlation. */
const BOOKKEEPING = new Set([949110, 980130]);

/** The exact bytes scripts/waf-reference.js sends to Apache. */
function raw(r: CorpusRequest): Buffer {
  const body = r.body === undefined ? undefined : Buffer.from(r.body, 'utf8');
  let head = `${r.method} ${r.target} HTTP/1.1\r\nHost: ${HOST}\r\n`;
  for (const [k, v] of r.headers) head += `${k}: ${v}\r\n`;
  if (body !== undefined && !r.headers.some(([k]) => k.toLowerCase() === 'content-length'))
    head += `Content-Length: ${body.length}\r\n`;
  head += 'Connection: close\r\n\r\n';
  const h = Buffer.from(head, 'latin1');
  return body === undefined ? h : Buffer.concat([h, body]);
}

/** Sends the bytes; the status, 0 when the connection closed without a response. */
function send(port: number, bytes: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve(m ? Number(m[1]) : 0);
    });
    s.write(bytes);
  });
}

const passed = (status: number) => status >= 200 && status < 300;
/** ModSecurity refused it (a rule fired), rather than Apache's HTTP layer before the WAF ran. */
const refByWaf = (v: Verdict) => passed(v.status) || v.rules.length > 0;

interface Row {
  r: CorpusRequest;
  ref: Verdict;
  status: number;
  rules: number[];
}

function report(rows: Row[]): { text: string; agreement: number; fpRef: number; fpTrellis: number } {
  const cats = [...new Set(rows.map((x) => x.r.category))];
  const lines: string[] = [
    '| category | requests | ModSecurity blocked | Trellis blocked | agreement |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  let agree = 0;
  let compared = 0;
  let fpRef = 0;
  let fpTrellis = 0;
  for (const c of cats) {
    const inCat = rows.filter((x) => x.r.category === c && refByWaf(x.ref));
    const refBlocked = inCat.filter((x) => !passed(x.ref.status)).length;
    const ours = inCat.filter((x) => !passed(x.status)).length;
    const same = inCat.filter((x) => passed(x.ref.status) === passed(x.status)).length;
    const pct = inCat.length === 0 ? '-' : `${((100 * same) / inCat.length).toFixed(1)}%`;
    lines.push(`| ${c} | ${inCat.length} | ${refBlocked} | ${ours} | ${pct} |`);
    if (inCat[0]?.r.attack) {
      agree += same;
      compared += inCat.length;
    } else {
      fpRef += refBlocked;
      fpTrellis += ours;
    }
  }
  const agreement = compared === 0 ? 1 : agree / compared;
  const attacks = rows.filter((x) => x.r.attack && refByWaf(x.ref)).length;
  const benign = rows.filter((x) => !x.r.attack && refByWaf(x.ref)).length;
  lines.push(
    '',
    `Attacks: agreement ${(100 * agreement).toFixed(1)}% (${agree}/${compared}). ` +
      `Benign: false positives ModSecurity ${fpRef}/${benign}, Trellis ${fpTrellis}/${benign}. ` +
      `Not counted: ${rows.length - attacks - benign} requests Apache refused before ModSecurity judged them. ` +
      `Issue 6 bars (agreement >= ${100 * ISSUE_AGREEMENT}%, false positives <= ModSecurity's): ` +
      (agreement >= ISSUE_AGREEMENT && fpTrellis <= fpRef ? 'met.' : 'not met yet.'),
  );
  const out = [
    `Reference: ${reference.reference}; ${reference.settings}; recorded ${reference.generated}.`,
    '',
    ...lines,
    '',
    'Attacks by where the payload is:',
    '',
    '| where | requests | ModSecurity blocked | Trellis blocked | agreement |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  for (const w of [...new Set(rows.filter((x) => x.r.attack).map((x) => x.r.where))]) {
    const at = rows.filter((x) => x.r.attack && x.r.where === w && refByWaf(x.ref));
    const same = at.filter((x) => passed(x.ref.status) === passed(x.status)).length;
    out.push(
      `| ${w} | ${at.length} | ${at.filter((x) => !passed(x.ref.status)).length} | ` +
        `${at.filter((x) => !passed(x.status)).length} | ${((100 * same) / Math.max(1, at.length)).toFixed(1)}% |`,
    );
  }
  out.push('', '## Disagreements', '');
  const why = (ids: number[]) => ids.filter((i) => !BOOKKEEPING.has(i));
  for (const x of rows) {
    if (!refByWaf(x.ref)) {
      out.push(
        `- (not counted) ${x.r.id} ${x.r.method} ${x.r.target}: Apache ${x.ref.status}, Trellis ${x.status}`,
      );
      continue;
    }
    if (passed(x.ref.status) === passed(x.status)) continue;
    const onlyRef = why(x.ref.rules).filter((i) => !x.rules.includes(i));
    const onlyOurs = why(x.rules).filter((i) => !x.ref.rules.includes(i));
    out.push(
      `- ${x.r.id} (${x.r.where}) ModSecurity ${x.ref.status}, Trellis ${x.status}; ` +
        `ModSecurity only: [${onlyRef.join(', ')}]; Trellis only: [${onlyOurs.join(', ')}]; ` +
        `both: [${why(x.rules)
          .filter((i) => x.ref.rules.includes(i))
          .join(', ')}]`,
    );
  }
  // Rule by rule, over every judged request (verdicts agreeing or not): where one engine's rule fired and the
  // other's did not. This is where the engines' differences show before they change a verdict.
  const oneSided = new Map<number, { ref: string[]; ours: string[] }>();
  for (const x of rows) {
    if (!refByWaf(x.ref)) continue;
    for (const id of why(x.ref.rules)) {
      if (!x.rules.includes(id)) {
        const e = oneSided.get(id) ?? { ref: [], ours: [] };
        e.ref.push(x.r.id);
        oneSided.set(id, e);
      }
    }
    for (const id of why(x.rules)) {
      if (!x.ref.rules.includes(id)) {
        const e = oneSided.get(id) ?? { ref: [], ours: [] };
        e.ours.push(x.r.id);
        oneSided.set(id, e);
      }
    }
  }
  out.push(
    '',
    '## Rules that fired on one side only',
    '',
    '| rule | ModSecurity only | Trellis only |',
    '| --- | --- | --- |',
  );
  const list = (ids: string[]) =>
    ids.length === 0 ? '' : `${ids.length}: ${ids.slice(0, 8).join(' ')}${ids.length > 8 ? ' …' : ''}`;
  for (const [id, e] of [...oneSided].sort((a, b) => a[0] - b[0]))
    out.push(`| ${id} | ${list(e.ref)} | ${list(e.ours)} |`);
  return { text: `${out.join('\n')}\n`, agreement, fpRef, fpTrellis };
}

describe.skipIf(!hasCrs)('WAF corpus against ModSecurity + CRS verdicts', () => {
  let up: Upstream;
  let gw: TestGateway;
  const events: { ruleIds: number[] }[] = [];
  const onEvent = (m: unknown) => events.push(m as { ruleIds: number[] });

  beforeAll(async () => {
    subscribe('trellis:waf', onEvent);
    up = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' });
        res.end('{"ok":true}');
      });
    });
    gw = await startGateway({
      ...simpleConfig(up.url, [{ name: 'api', backends: [{ service: 'svc' }], policies: ['crs'] }]),
      policies: [
        {
          name: 'crs',
          type: 'waf',
          rules: 'crs',
          paranoiaLevel: 1,
          inboundThreshold: 5,
          allowedMethods: ALLOWED_METHODS,
        },
      ],
    } as ConfigInput);
  });
  afterAll(async () => {
    unsubscribe('trellis:waf', onEvent);
    await gw?.close();
    await up?.close();
  });

  test('the corpus and the reference verdicts cover the same requests', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    expect(Object.keys(reference.verdicts).sort()).toEqual(corpus.map((r) => r.id).sort());
    expect(new Set(corpus.map((r) => r.id)).size).toBe(corpus.length);
  });

  test('Trellis refuses the attacks ModSecurity refuses and passes the benign traffic it passes', async () => {
    const rows: Row[] = [];
    for (const r of corpus) {
      const from = events.length;
      const status = await send(gw.port, raw(r));
      const rules = [...new Set(events.slice(from).flatMap((e) => e.ruleIds))];
      rows.push({ r, ref: reference.verdicts[r.id]!, status, rules });
    }
    const { text, agreement, fpRef, fpTrellis } = report(rows);
    if (process.env.WAF_CORPUS_REPORT) writeFileSync(process.env.WAF_CORPUS_REPORT, text);
    // Trellis's verdicts in the reference's shape, for a closer look at one request.
    if (process.env.WAF_CORPUS_VERDICTS) {
      const verdicts = Object.fromEntries(rows.map((x) => [x.r.id, { status: x.status, rules: x.rules }]));
      writeFileSync(process.env.WAF_CORPUS_VERDICTS, `${JSON.stringify(verdicts, null, 2)}\n`);
    }
    expect(agreement, text).toBeGreaterThanOrEqual(MIN_AGREEMENT);
    expect(fpTrellis - fpRef, text).toBeLessThanOrEqual(MAX_EXTRA_FALSE_POSITIVES);
  }, 120_000);
});
