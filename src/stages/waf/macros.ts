/** SecLang macros (`%{tx.anomaly_score}`, `%{MATCHED_VAR}`, `%{rule.id}`): how a text splits into them. */

/** A macro's reference: collection (upper case) and key (lower case), as compileMacro splits it. */
export type MacroRef = readonly [collection: string, key: string | undefined];

/** `s` split into literal text and `%{...}` references (`%{tx.foo}` → ['TX', 'foo']). */
export function macroParts(s: string): (string | MacroRef)[] {
  const parts: (string | MacroRef)[] = [];
  let last = 0;
  for (const m of s.matchAll(/%\{([^}]+)\}/g)) {
    if (m.index > last) parts.push(s.slice(last, m.index));
    const ref = m[1]!;
    const dot = ref.indexOf('.');
    parts.push(
      dot < 0
        ? [ref.toUpperCase(), undefined]
        : [ref.slice(0, dot).toUpperCase(), ref.slice(dot + 1).toLowerCase()],
    );
    last = m.index + m[0].length;
  }
  if (last < s.length) parts.push(s.slice(last));
  return parts;
}
