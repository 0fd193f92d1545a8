/**
 * Compile-time folding of a rule set for one policy's TX presets (paranoia level, thresholds, allowed methods).
 *
 * The CRS spends most of its rules on bookkeeping that reads nothing from the request: the setup (`&TX:x "@eq 0"`
 * → set a default), and the paranoia-level gates (`TX:executing_paranoia_level "@lt 2"` → skipAfter), ~110 rules
 * at PL1 whose outcome is the same for every request. A rule is folded when it reads only TX keys no request can
 * change, writes only TX, logs nothing and neither interrupts nor changes rules (no ctl, no capture): it runs once
 * here on a template transaction, its setvars go into the initial TX every request starts from, and when it skips,
 * the rules it jumps over are dropped from the plan (they never run at this paranoia level).
 *
 * What keeps this exact, in one walk through the rules in the order a request runs them:
 * - A rule is not folded when a kept (not folded) rule before it may write a key it reads (setvar names with
 *   macros count by their literal prefix, `capture` writes TX:0-9).
 * - A folded rule runs unconditionally where it stands: one inside the range a kept rule may skip over, or one a
 *   kept rule's ctl may remove (the ctl is run on a probe to see which rules it removes), is not folded.
 * - Folding moves a rule's writes to the start of the request: a rule that writes a key a kept rule before it
 *   reads or writes is not folded (that rule must see the older value).
 * - A rule dropped because its first link reads only constants and does not match must not be one a kept rule's
 *   ctl may change (a removed `&TX:x` target turns a count to 0).
 * - MATCHED_VAR read by an operator is the previous match's: such a rule is not folded, and a rule set where a
 *   rule reads it before its own match (none in the CRS) is not folded at all (folded matches would be hidden).
 * Anything the analysis cannot name (a whole-TX or `TX:/regex/` read, a macro of another collection) makes the
 * rule non-foldable, never the reverse. One visible difference remains, by design: the folded rules' setvars are
 * in TX from the start, so a request stopped early (a deny, `allow`, `ctl:ruleEngine=Off`) ends with TX defaults
 * it would not have set as written; no verdict or score reads them (the score is 0 either way).
 */
import type { CompiledRule, CompiledRuleSet, PhaseEntry, Transaction } from './engine.js';
import { macroParts } from './macros.js';

export interface Plan {
  /** Phase 1 and 2 lists (index 0 unused): the rules left, their skips resolved to indexes (no markers). */
  readonly phases: readonly (readonly PhaseEntry[])[];
  /** TX as every request starts it: the presets and the folded rules' setvars. */
  readonly tx: ReadonlyMap<string, string>;
  /** Rules folded (ran here) and rules dropped (skipped by a folded rule, or never matching). */
  readonly folded: number;
  readonly dropped: number;
  /** Per phase and list position: the rule's CompiledRule.localIndex (-1: none, or a marker). */
  readonly localAt: readonly (readonly number[])[];
  /** Per phase: the collection slots its local rules read (marked when the phase starts). */
  readonly localSlots: readonly (readonly number[])[];
}

/** A plan's phase lists with what a transaction reads of them per position (Plan.localAt, Plan.localSlots). */
export function withLocals(
  phases: readonly (readonly PhaseEntry[])[],
  tx: ReadonlyMap<string, string>,
  folded: number,
  dropped: number,
): Plan {
  const localAt: number[][] = [];
  const localSlots: number[][] = [];
  phases.forEach((list, p) => {
    localAt[p] = list.map((e) => ('id' in e ? e.localIndex : -1));
    const slots = new Set<number>();
    for (const e of list) if ('id' in e && e.localIndex >= 0) for (const s of e.localSlots) slots.add(s);
    localSlots[p] = [...slots];
  });
  return { phases, tx, folded, dropped, localAt, localSlots };
}

/** What a non-folded rule may write: exact TX keys, key prefixes (macro names), or anything. */
class KeySet {
  readonly exact = new Set<string>();
  readonly prefixes: string[] = [];
  all = false;
  has(k: string): boolean {
    if (this.all || this.exact.has(k)) return true;
    for (const p of this.prefixes) if (k.startsWith(p)) return true;
    return false;
  }
  addAll(o: KeySet): void {
    if (o.all) this.all = true;
    for (const k of o.exact) this.exact.add(k);
    this.prefixes.push(...o.prefixes);
  }
  /** Some key of `keys` is in this set. */
  meets(keys: readonly string[]): boolean {
    for (const k of keys) if (this.has(k)) return true;
    return false;
  }
}

function* links(r: CompiledRule): Generator<CompiledRule> {
  for (let l: CompiledRule | undefined = r; l !== undefined; l = l.chain) yield l;
}

/** A setvar's TX key as far as it is known before the request: the literal text with `%{rule.id}` resolved. */
function staticName(nameText: string, ruleId: number): { key: string; exact: boolean } {
  let out = '';
  for (const p of macroParts(nameText)) {
    if (typeof p === 'string') out += p;
    else if (p[0] === 'RULE' && p[1] === 'id') out += String(ruleId);
    else return { key: out.toLowerCase(), exact: false };
  }
  return { key: out.toLowerCase(), exact: true };
}

interface Facts {
  /** Could be folded as far as the rule itself goes (see the module comment). */
  readonly candidate: boolean;
  /** TX keys it reads (targets and macros), for candidates; for the others, see readsTx. */
  readonly reads: readonly string[];
  /** What it may write. */
  readonly writes: KeySet;
  /** What it may read, for the others (whole TX and TX:/regex/ reads make this everything). */
  readonly readsTx: KeySet;
  /** It has a ctl (engine mode, rule or target removal). */
  readonly ctl: boolean;
  /**
   * The TX keys its first link reads, when that link reads nothing else (TX keys by name, no capture): with those
   * constant, a first link that does not match means a rule that never does (undefined: not so).
   */
  readonly startReads: readonly string[] | undefined;
}

/** The TX keys a link reads when it reads nothing else (TX keys by name, macros of TX, RULE, MATCHED_VAR), else undefined. */
function txOnlyReads(l: CompiledRule): string[] | undefined {
  if (l.exclusions.length > 0) return undefined;
  const reads: string[] = [];
  for (const t of l.targets) {
    if (t.txKey === undefined) return undefined;
    reads.push(t.txKey);
  }
  for (const [coll, key] of l.refs) {
    if (coll === 'TX' && key !== undefined) reads.push(key);
    else if (coll !== 'RULE' && coll !== 'MATCHED_VAR' && coll !== 'MATCHED_VAR_NAME') return undefined;
  }
  // MATCHED_VAR in the operator is the previous match's (another rule's): request data. In actions it is the
  // link's own match, of the TX values it read.
  if (l.opRefs.some(([coll]) => coll.startsWith('MATCHED'))) return undefined;
  return reads;
}

function factsOf(r: CompiledRule): Facts {
  let candidate = r.disruptive !== 'deny' && r.disruptive !== 'drop' && r.disruptive !== 'allow';
  if (r.log && r.msg !== undefined) candidate = false;
  const reads: string[] = [];
  const writes = new KeySet();
  const readsTx = new KeySet();
  let ctl = false;
  for (const l of links(r)) {
    if (l.ctls.length > 0) {
      ctl = true;
      candidate = false;
    }
    if (l.capture) {
      candidate = false;
      for (let i = 0; i < 10; i++) writes.exact.add(String(i));
    }
    const own = txOnlyReads(l);
    if (own === undefined) candidate = false;
    else reads.push(...own);
    for (const t of l.targets) {
      if (t.txKey !== undefined) readsTx.exact.add(t.txKey);
      else if (t.name === 'TX') readsTx.all = true;
    }
    for (const [coll, key] of l.refs) {
      if (coll !== 'TX') continue;
      if (key === undefined) readsTx.all = true;
      else readsTx.exact.add(key);
    }
    for (const sv of l.setvars) {
      if (sv.collection !== 'TX') {
        candidate = false;
        continue;
      }
      const n = staticName(sv.nameText, r.id);
      if (n.exact) writes.exact.add(n.key);
      else if (n.key === '') writes.all = true;
      else writes.prefixes.push(n.key);
    }
  }
  // A folded rule's writes must be known keys (they move to the start of the request).
  if (writes.all || writes.prefixes.length > 0) candidate = false;
  // A write reads too (`+=`), and an order-sensitive one counts as a read for the folded writers after it.
  readsTx.addAll(writes);
  const startReads = r.targets.length > 0 && !r.capture ? txOnlyReads(r) : undefined;
  return { candidate, reads, writes, readsTx, ctl, startReads };
}

/** Where a rule's flow action lands in `list` (the last index it skips), or -1. */
function skipTarget(list: readonly PhaseEntry[], i: number, r: CompiledRule): number {
  if (r.skipTo >= 0) return r.skipTo;
  if (r.skip <= 0) return -1;
  let n = r.skip;
  let j = i;
  while (n > 0 && j + 1 < list.length) {
    j++;
    if ('id' in list[j]!) n--;
  }
  return j;
}

/** What a non-folded rule's ctl actions would do to the rules after it, found by running them on a probe. */
function ctlEffects(r: CompiledRule): ((x: CompiledRule) => boolean)[] {
  const tests: ((x: CompiledRule) => boolean)[] = [];
  const probe = {
    removeRules: (t: (x: CompiledRule) => boolean) => tests.push(t),
    removeTargets: (select: (x: CompiledRule) => boolean) => tests.push(select),
    // Off ends the request's rules (nothing reads TX after); DetectionOnly only stops interruptions.
    setEngine: () => {},
  };
  for (const l of links(r)) for (const c of l.ctls) c(probe as unknown as Transaction);
  return tests;
}

/**
 * The plan for `set` under `preset`, in one walk through phases 1 and 2 as a request goes. `template` makes a
 * transaction that starts from `preset` and runs rules as they are (no plan); `evaluate` runs one rule on it (true
 * when it and its chain matched, non-disruptive actions applied).
 */
export function foldRuleSet(
  set: CompiledRuleSet,
  template: () => {
    evaluate(r: CompiledRule): boolean;
    test(r: CompiledRule): boolean;
    tx(): ReadonlyMap<string, string>;
  },
): Plan {
  // A rule that reads MATCHED_VAR(S) before its own match reads the last matching rule's: folding would hide the
  // folded rules' matches from it. No CRS rule does; a rule set with one is run as written.
  for (const p of [1, 2])
    for (const e of set.phases[p]!)
      if (
        'id' in e &&
        (e.targets.some((t) => t.name.startsWith('MATCHED')) ||
          e.opRefs.some(([c]) => c.startsWith('MATCHED')))
      )
        return withLocals(set.phases, template().tx(), 0, 0);
  const tpl = template();
  const kept: PhaseEntry[][] = [[], [], []];
  const origin: number[][] = [[], [], []];
  let folded = 0;
  let dead = 0;
  let visited = 0;
  // What the rules kept so far may write, and read or write; the rule removals their ctls may make.
  const written = new KeySet();
  const touched = new KeySet();
  const removals: ((x: CompiledRule) => boolean)[] = [];
  for (const p of [1, 2] as const) {
    const list = set.phases[p]!;
    let conditionalUntil = -1;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      // Markers are only skip targets: the kept rules' targets become indexes below.
      if (!('id' in e)) continue;
      visited++;
      const f = factsOf(e);
      const fold =
        f.candidate &&
        i > conditionalUntil &&
        !written.meets(f.reads) &&
        !touched.meets([...f.writes.exact]) &&
        !removals.some((t) => t(e));
      if (
        !fold &&
        f.startReads !== undefined &&
        i > conditionalUntil &&
        !written.meets(f.startReads) &&
        !removals.some((t) => t(e))
      ) {
        // Its first link reads constants only: when it does not match here, it never does (nor does its chain).
        if (!tpl.test(e)) {
          dead++;
          continue;
        }
      }
      if (!fold) {
        kept[p]!.push(e);
        origin[p]!.push(i);
        written.addAll(f.writes);
        touched.addAll(f.readsTx);
        if (f.ctl) removals.push(...ctlEffects(e));
        conditionalUntil = Math.max(conditionalUntil, skipTarget(list, i, e));
        continue;
      }
      folded++;
      if (tpl.evaluate(e)) {
        const to = skipTarget(list, i, e);
        if (to >= 0) i = to;
      }
    }
  }
  // The kept rules' own flow targets, as indexes into the kept lists: the last kept entry at or before the
  // original target (the loop goes on after it).
  const phases: PhaseEntry[][] = [[], [], []];
  for (const p of [1, 2] as const) {
    const list = set.phases[p]!;
    const at = origin[p]!;
    phases[p] = kept[p]!.map((e, k) => {
      if (!('id' in e)) return e;
      const to = skipTarget(list, at[k]!, e);
      if (to < 0) return e;
      let j = k;
      while (j + 1 < at.length && at[j + 1]! <= to) j++;
      return { ...e, skip: 0, skipTo: to >= list.length ? kept[p]!.length : j };
    });
  }
  return withLocals(phases, new Map(tpl.tx()), folded, set.ruleCount - visited + dead);
}
