/**
 * Schema building blocks shared by the config schema and the policy kinds (src/stages/*): durations, sizes, names,
 * header names and values. This module imports nothing of Trellis, so a policy kind can use it without an import
 * cycle through config/schema.ts (which imports the kinds to build `policies`).
 */
import { z } from 'zod';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Node timers overflow above 2^31-1 ms and then fire after 1 ms, so a longer timeout would act as none at all. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * A duration: a number of milliseconds, or a string such as `250ms`, `15s`, `2m`, `1h`.
 * Fields give their defaults with `prefault` (an input value), because JSON Schema export drops a `default` on
 * a transforming schema and editors would not show it.
 */
export const duration = z
  .union([
    z.number().int().nonnegative().max(MAX_TIMER_MS),
    z.string().regex(DURATION, { message: 'expected a duration such as "250ms", "15s", "2m" or "1h"' }),
  ])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = DURATION.exec(v)!;
    // Round up: "0.4ms" must not become 0, which turns a timeout off.
    return Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!);
  })
  .refine((ms) => ms <= MAX_TIMER_MS, {
    message: `expected a duration of at most ${MAX_TIMER_MS}ms (about 24.8 days, the longest Node.js timer)`,
  });

// Case-insensitive by character classes, not the `i` flag: JSON Schema patterns carry no flags, so an editor
// would otherwise reject "10MiB".
const SIZE = /^(\d+)([bB]|[kKmMgG][iI]?[bB])?$/;
const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1_000_000,
  mib: 1024 * 1024,
  gb: 1_000_000_000,
  gib: 1024 * 1024 * 1024,
};

/** A size in bytes: a number, or a string such as `64KiB`, `10MiB`, `1GiB`. */
export const byteSize = z
  .union([
    z.number().int().nonnegative(),
    z.string().regex(SIZE, { message: 'expected a size such as 65536, "64KiB", "10MiB" or "1GiB"' }),
  ])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = SIZE.exec(v)!;
    return Number(m[1]) * UNIT_BYTES[(m[2] ?? 'b').toLowerCase()]!;
  })
  .refine((n) => Number.isSafeInteger(n), { message: 'expected a size below 8 PiB' });

export const name = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/, {
    message: 'expected a name of lowercase letters, digits, ".", "_" or "-" (1-63 characters)',
  })
  .describe('Unique name of this object; other objects refer to it by this name.');

export const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: 'expected an HTTP header name (RFC 9110 token)' });

/** RFC 9110 field-value characters: no CR, LF or NUL, which would split or break a header. */
export const headerValue = z.string().regex(/^[\t\x20-\x7e\x80-\xff]*$/, {
  message: 'expected a header value without control characters (CR, LF, NUL)',
});

/** A host name or IP literal with an optional port, as in a Host header. */
export const hostValue = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$/, {
  message: 'expected a host such as "api.example.com", "api.example.com:8443" or "[::1]:8080"',
});

/** A path for a redirect or rewrite: visible ASCII only, starting with "/". */
export const pathValue = z
  .string()
  .regex(/^\/[\x21-\x7e]*$/, { message: 'expected a path starting with "/" of visible ASCII characters' });

export const httpMethod = z
  .string()
  .regex(/^[A-Z]+$/, { message: 'expected an upper-case HTTP method such as GET or POST' });

export const percent = z.number().min(0).max(100);
