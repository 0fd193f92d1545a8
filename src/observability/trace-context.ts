import { randomFillSync } from 'node:crypto';

/**
 * Trace context propagation: W3C Trace Context (level 1) and Zipkin B3, read from incoming headers; ids made
 * here. Parsing never throws: a malformed header reads as absent, so the request starts a new trace.
 */

/** The context of a remote parent span. */
export interface SpanContext {
  /** 32 lowercase hex characters, not all zero. */
  traceId: string;
  /** 16 lowercase hex characters, not all zero. */
  spanId: string;
  sampled: boolean;
  /** The validated `tracestate` ('' if none, or if it was invalid). */
  traceState: string;
}

/**
 * A `traceparent` header (W3C Trace Context §3.2). Version 00 is exactly 55 characters; a later version (not ff)
 * is read by the forward-compatibility rule: at least 55 characters, the version-00 fields first, and either the
 * end or a `-` after the flags. Hex must be lowercase; all-zero ids are invalid. `tracestate` is only read
 * along with a valid `traceparent`.
 */
export function parseTraceparent(
  value: string | undefined,
  tracestate: string | string[] | undefined,
): SpanContext | undefined {
  if (value === undefined) return undefined;
  const len = value.length;
  if (len < 55) return undefined;
  if (value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45)
    return undefined;
  const v0 = hexDigit(value.charCodeAt(0));
  const v1 = hexDigit(value.charCodeAt(1));
  if (v0 < 0 || v1 < 0) return undefined;
  const version = v0 * 16 + v1;
  if (version === 255) return undefined;
  if (len > 55 && (version === 0 || value.charCodeAt(55) !== 45)) return undefined;
  if (!isId(value, 3, 35) || !isId(value, 36, 52)) return undefined;
  const f0 = hexDigit(value.charCodeAt(53));
  const f1 = hexDigit(value.charCodeAt(54));
  if (f0 < 0 || f1 < 0) return undefined;
  return {
    traceId: value.slice(3, 35),
    spanId: value.slice(36, 52),
    sampled: (f1 & 1) === 1,
    traceState: tracestate === undefined ? '' : parseTracestate(tracestate),
  };
}

/** `00-{trace id}-{span id}-{01|00}`. */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return '00-' + traceId + '-' + spanId + (sampled ? '-01' : '-00');
}

const MAX_MEMBERS = 32;
const MAX_TRACESTATE = 512;
const LONG_MEMBER = 128;
// W3C Trace Context level 1 §3.3.1: simple-key or tenant@system (multi-tenant) keys.
const KEY = /^(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})$/;
// Printable ASCII except `,` and `=`; the last character not a space.
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * A `tracestate` value (several header lines join with `,`), normalized: list members trimmed and empty ones
 * left out. Any invalid member, a duplicated key or more than 32 members invalidates the whole value ('').
 * Longer than 512 characters: members over 128 characters go first, then members from the end (§3.3.1.5).
 */
export function parseTracestate(value: string | string[]): string {
  const s = typeof value === 'string' ? value : value.join(',');
  if (s === '') return '';
  const parts = s.split(',');
  const members: string[] = [];
  const keys: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const m = parts[i]!.trim();
    if (m === '') continue;
    const eq = m.indexOf('=');
    if (eq <= 0) return '';
    const key = m.slice(0, eq);
    if (!KEY.test(key) || !VALUE.test(m.slice(eq + 1)) || keys.includes(key)) return '';
    if (members.length === MAX_MEMBERS) return '';
    keys.push(key);
    members.push(m);
  }
  let out = members.join(',');
  if (out.length <= MAX_TRACESTATE) return out;
  let kept = members.filter((m) => m.length <= LONG_MEMBER);
  out = kept.join(',');
  while (out.length > MAX_TRACESTATE) {
    kept = kept.slice(0, -1);
    out = kept.join(',');
  }
  return out;
}

/** A B3 context: `sampled` is undefined when the sender deferred the decision; ids are '' for a bare `b3: 0`. */
export interface B3Context {
  traceId: string;
  spanId: string;
  sampled: boolean | undefined;
}

type Headers = Record<string, string | string[] | undefined>;

function first(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' || v === undefined ? v : v[0];
}

/**
 * Zipkin B3 (https://github.com/openzipkin/b3-propagation): the single `b3` header
 * (`{trace id}-{span id}[-{0|1|d}[-{parent span id}]]`, or a sampling state alone) takes precedence over the
 * multi headers (X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags). Hex in either case (normalized to
 * lowercase); 64-bit trace ids are left-padded to 128 bits. Header names are read lowercase, as Node gives them.
 */
export function readB3(headers: Headers): B3Context | undefined {
  const single = first(headers.b3);
  if (single !== undefined) {
    const c = readB3Single(single);
    if (c !== undefined) return c;
  }
  const sampledHeader = first(headers['x-b3-sampled']);
  const flags = first(headers['x-b3-flags']);
  let sampled: boolean | undefined;
  if (flags === '1') sampled = true;
  else if (sampledHeader === '1' || sampledHeader === 'true') sampled = true;
  else if (sampledHeader === '0' || sampledHeader === 'false') sampled = false;
  const traceId = first(headers['x-b3-traceid']);
  const spanId = first(headers['x-b3-spanid']);
  if (traceId === undefined || spanId === undefined) {
    return sampled === undefined ? undefined : { traceId: '', spanId: '', sampled };
  }
  const t = b3TraceId(traceId);
  const s = b3SpanId(spanId);
  if (t === undefined || s === undefined) return undefined;
  return { traceId: t, spanId: s, sampled };
}

function readB3Single(v: string): B3Context | undefined {
  if (v.length === 1) {
    if (v === '0') return { traceId: '', spanId: '', sampled: false };
    if (v === '1' || v === 'd') return { traceId: '', spanId: '', sampled: true };
    return undefined;
  }
  const parts = v.split('-');
  if (parts.length < 2 || parts.length > 4) return undefined;
  const traceId = b3TraceId(parts[0]!);
  const spanId = b3SpanId(parts[1]!);
  if (traceId === undefined || spanId === undefined) return undefined;
  let sampled: boolean | undefined;
  if (parts.length >= 3) {
    const s = parts[2]!;
    if (s === '1' || s === 'd') sampled = true;
    else if (s === '0') sampled = false;
    else return undefined;
    if (parts.length === 4 && b3SpanId(parts[3]!) === undefined) return undefined;
  }
  return { traceId, spanId, sampled };
}

const ZERO_PAD = '0000000000000000';

function b3TraceId(v: string): string | undefined {
  if (v.length !== 32 && v.length !== 16) return undefined;
  const id = v.toLowerCase();
  if (!isId(id, 0, id.length)) return undefined;
  return id.length === 16 ? ZERO_PAD + id : id;
}

function b3SpanId(v: string): string | undefined {
  if (v.length !== 16) return undefined;
  const id = v.toLowerCase();
  return isId(id, 0, 16) ? id : undefined;
}

/** The B3 context as a parent span, when it carries ids (a deferred decision reads as not sampled). */
export function parseB3(headers: Headers): SpanContext | undefined {
  const c = readB3(headers);
  if (c === undefined || c.traceId === '') return undefined;
  return { traceId: c.traceId, spanId: c.spanId, sampled: c.sampled === true, traceState: '' };
}

/** 0-15 for a lowercase hex digit, else -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Lowercase hex from `start` to `end`, not all zeros. */
function isId(s: string, start: number, end: number): boolean {
  let nonZero = false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 48) continue;
    if ((c >= 49 && c <= 57) || (c >= 97 && c <= 102)) nonZero = true;
    else return false;
  }
  return nonZero;
}

// Ids come from a pool of random bytes, refilled 4 KiB at a time (one system call per 256 span ids), and
// hex-encoded once per refill: an id is then a slice of that string (V8 shares the characters).
const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolHex = '';
let poolOffset = POOL_SIZE;

function take(n: number): number {
  if (poolOffset + n > POOL_SIZE) {
    randomFillSync(pool);
    poolHex = pool.toString('hex');
    poolOffset = 0;
  }
  const o = poolOffset;
  poolOffset += n;
  return o;
}

/** The low 52 bits of the trace id newTraceId made last, as a number (the sampler's input). */
let lastLow52 = 0;

/** A random 128-bit trace id, 32 lowercase hex characters, never all zero. */
export function newTraceId(): string {
  for (;;) {
    const o = take(16);
    if (
      (pool.readUInt32LE(o) |
        pool.readUInt32LE(o + 4) |
        pool.readUInt32LE(o + 8) |
        pool.readUInt32LE(o + 12)) !==
      0
    ) {
      // Hex characters 19..31 of the id: the low nibble of byte 9 and bytes 10..15.
      lastLow52 = (pool[o + 9]! & 0x0f) * 2 ** 48 + pool.readUIntBE(o + 10, 6);
      return poolHex.slice(o * 2, o * 2 + 32);
    }
  }
}

/**
 * The low 52 bits of `traceId` (its last 13 hex characters) as a number: read from the random bytes when the id
 * is the one newTraceId just made, parsed otherwise.
 */
export function traceIdLow52(traceId: string, fresh: boolean): number {
  return fresh ? lastLow52 : Number.parseInt(traceId.slice(19), 16);
}

/** A random 64-bit span id, 16 lowercase hex characters, never all zero. */
export function newSpanId(): string {
  for (;;) {
    const o = take(8);
    if ((pool.readUInt32LE(o) | pool.readUInt32LE(o + 4)) !== 0) return poolHex.slice(o * 2, o * 2 + 16);
  }
}
