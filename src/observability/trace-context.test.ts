import { describe, expect, it } from 'vitest';
import {
  formatTraceparent,
  newSpanId,
  newTraceId,
  parseB3,
  parseTraceparent,
  parseTracestate,
  readB3,
  traceIdLow52,
} from './trace-context.js';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';
const VALID = `00-${TRACE}-${SPAN}-01`;

describe('parseTraceparent (W3C Trace Context level 1)', () => {
  it('reads a valid version 00 header', () => {
    expect(parseTraceparent(VALID, undefined)).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: '',
    });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`, undefined)?.sampled).toBe(false);
  });

  it('reads only the sampled bit of the flags', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-03`, undefined)?.sampled).toBe(true);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-02`, undefined)?.sampled).toBe(false);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-ff`, undefined)?.sampled).toBe(true);
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['uppercase version', `0A-${TRACE}-${SPAN}-01`],
    ['non-hex version', `0g-${TRACE}-${SPAN}-01`],
    ['one-digit version', `0-${TRACE}-${SPAN}-01`],
    ['uppercase trace id', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['uppercase span id', `00-${TRACE}-${SPAN.toUpperCase()}-01`],
    ['uppercase flags', `00-${TRACE}-${SPAN}-0A`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['non-hex trace id', `00-${TRACE.slice(0, 31)}g-${SPAN}-01`],
    ['non-hex flags', `00-${TRACE}-${SPAN}-0x`],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['long span id', `00-${TRACE}-${SPAN}0-01`],
    ['one-digit flags', `00-${TRACE}-${SPAN}-1`],
    ['wrong separators', `00_${TRACE}_${SPAN}_01`],
    ['version 00 with more fields', `${VALID}-what-the-future-will-be-like`],
    ['version 00 with a trailing character', `${VALID}.`],
    ['two headers joined', `${VALID}, ${VALID}`],
    ['future version, no dash after the flags', `cc-${TRACE}-${SPAN}-01.what-the-future-will-be-like`],
    ['future version, too short', `cc-${TRACE}-${SPAN}-1`],
  ])('rejects %s', (_name, value) => {
    expect(parseTraceparent(value, 'foo=bar')).toBeUndefined();
  });

  it('reads a future version by the version 00 layout (forward compatibility)', () => {
    expect(parseTraceparent(`cc-${TRACE}-${SPAN}-01`, undefined)).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: '',
    });
    expect(parseTraceparent(`cc-${TRACE}-${SPAN}-01-what-the-future-will-be-like`, undefined)).toMatchObject({
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
    });
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-00-`, undefined)?.sampled).toBe(false);
  });

  it('keeps a valid tracestate along with it', () => {
    expect(parseTraceparent(VALID, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')?.traceState).toBe(
      'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
    );
    expect(parseTraceparent(VALID, ['rojo=00f067aa0ba902b7', 'congo=t61rcWkgMzE'])?.traceState).toBe(
      'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    );
    expect(parseTraceparent(VALID, 'Invalid=1')?.traceState).toBe('');
  });
});

describe('parseTracestate', () => {
  it('normalizes whitespace and empty members', () => {
    expect(parseTracestate(' foo=1 ,\tbar=2, ,,baz=x y ')).toBe('foo=1,bar=2,baz=x y');
    expect(parseTracestate('')).toBe('');
    expect(parseTracestate(',')).toBe('');
  });

  it('accepts multi-tenant keys and the full value alphabet', () => {
    expect(parseTracestate('fw529a3039@dt=ab , 1tenant@sys-1=!"#$%&()*+-./:;<>?@[]^_`{|}~')).toBe(
      'fw529a3039@dt=ab,1tenant@sys-1=!"#$%&()*+-./:;<>?@[]^_`{|}~',
    );
  });

  it.each([
    ['an uppercase key', 'Foo=1'],
    ['a key starting with a digit (not multi-tenant)', '1foo=1'],
    ['a key without value separator', 'foo'],
    ['an empty key', '=1'],
    ['an empty value', 'foo='],
    ['a value with =', 'foo=1=2'],
    ['a control character', 'foo=1\u0001'],
    ['a non-ASCII value', 'foo=é'],
    ['a duplicated key', 'foo=1,bar=2,foo=3'],
    ['a system id too long', `t@${'a'.repeat(15)}=1`],
    ['a key too long', `${'a'.repeat(257)}=1`],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')],
  ])('drops the whole value for %s', (_name, value) => {
    expect(parseTracestate(`ok=1,${value}`)).toBe('');
  });

  it('keeps 32 members', () => {
    const v = Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(',');
    expect(parseTracestate(v)).toBe(v);
  });

  it('over 512 characters: drops members over 128 characters first, then from the end', () => {
    const long = `long=${'x'.repeat(200)}`;
    const members = Array.from({ length: 10 }, (_, i) => `k${i}=${'v'.repeat(40)}`); // 44 chars each
    const out = parseTracestate([members[0]!, long, ...members.slice(1)].join(','));
    expect(out).toBe(members.join(',')); // 10 * 44 + 9 = 449: fits once the long one is gone
    const many = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, '0')}=${'v'.repeat(40)}`); // 45
    const cut = parseTracestate(many.join(','));
    expect(cut.length).toBeLessThanOrEqual(512);
    expect(cut).toBe(many.slice(0, 11).join(',')); // 11 * 45 + 10 = 505
  });
});

describe('B3', () => {
  const T64 = '64fe8b2a57d3eff7';
  const T128 = '80f198ee56343ba864fe8b2a57d3eff7';
  const S = 'e457b5a2e4d86bd1';
  const P = '05e3ac9a4f6e3b90';

  it('reads the single header with each sampling state', () => {
    expect(parseB3({ b3: `${T128}-${S}-1-${P}` })).toEqual({
      traceId: T128,
      spanId: S,
      sampled: true,
      traceState: '',
    });
    expect(parseB3({ b3: `${T128}-${S}-0` })?.sampled).toBe(false);
    expect(parseB3({ b3: `${T128}-${S}-d` })?.sampled).toBe(true);
    expect(readB3({ b3: `${T128}-${S}-d` })?.sampled).toBe(true);
    expect(readB3({ b3: `${T128}-${S}` })).toEqual({ traceId: T128, spanId: S, sampled: undefined });
    expect(parseB3({ b3: `${T128}-${S}` })?.sampled).toBe(false);
  });

  it('left-pads 64-bit trace ids to 128 bits and lowercases hex', () => {
    expect(parseB3({ b3: `${T64}-${S}-1` })?.traceId).toBe(`0000000000000000${T64}`);
    expect(parseB3({ b3: `${T128.toUpperCase()}-${S.toUpperCase()}-1` })).toMatchObject({
      traceId: T128,
      spanId: S,
    });
    expect(parseB3({ 'x-b3-traceid': T64, 'x-b3-spanid': S })?.traceId).toBe(`0000000000000000${T64}`);
  });

  it('reads a sampling state alone (no ids: no parent)', () => {
    expect(readB3({ b3: '0' })).toEqual({ traceId: '', spanId: '', sampled: false });
    expect(readB3({ b3: '1' })).toEqual({ traceId: '', spanId: '', sampled: true });
    expect(readB3({ b3: 'd' })).toEqual({ traceId: '', spanId: '', sampled: true });
    expect(readB3({ 'x-b3-sampled': '0' })).toEqual({ traceId: '', spanId: '', sampled: false });
    expect(parseB3({ b3: '0' })).toBeUndefined();
    expect(readB3({ b3: 'x' })).toBeUndefined();
  });

  it.each([
    ['a trace id of 20 digits', `${T128.slice(0, 20)}-${S}-1`],
    ['an all-zero trace id', `${'0'.repeat(32)}-${S}-1`],
    ['an all-zero span id', `${T128}-${'0'.repeat(16)}-1`],
    ['a short span id', `${T128}-${S.slice(1)}-1`],
    ['a bad sampling state', `${T128}-${S}-x`],
    ['a bad parent id', `${T128}-${S}-1-xyz`],
    ['five fields', `${T128}-${S}-1-${P}-1`],
    ['non-hex', `${T128.slice(0, 31)}z-${S}-1`],
    ['one field', T128],
  ])('rejects a single header with %s', (_name, b3) => {
    expect(parseB3({ b3 })).toBeUndefined();
  });

  it('reads the multi headers', () => {
    expect(
      parseB3({ 'x-b3-traceid': T128, 'x-b3-spanid': S, 'x-b3-parentspanid': P, 'x-b3-sampled': '1' }),
    ).toEqual({ traceId: T128, spanId: S, sampled: true, traceState: '' });
    expect(parseB3({ 'x-b3-traceid': T128, 'x-b3-spanid': S, 'x-b3-sampled': '0' })?.sampled).toBe(false);
    expect(parseB3({ 'x-b3-traceid': T128, 'x-b3-spanid': S, 'x-b3-sampled': 'true' })?.sampled).toBe(true);
    expect(parseB3({ 'x-b3-traceid': T128, 'x-b3-spanid': S, 'x-b3-flags': '1' })?.sampled).toBe(true);
    expect(readB3({ 'x-b3-traceid': T128, 'x-b3-spanid': S })?.sampled).toBeUndefined();
    expect(parseB3({ 'x-b3-traceid': [T128, T64], 'x-b3-spanid': S })?.traceId).toBe(T128);
  });

  it('rejects incomplete or invalid multi headers', () => {
    expect(parseB3({ 'x-b3-traceid': T128 })).toBeUndefined();
    expect(parseB3({ 'x-b3-spanid': S, 'x-b3-sampled': '1' })).toBeUndefined();
    expect(parseB3({ 'x-b3-traceid': 'nothex', 'x-b3-spanid': S })).toBeUndefined();
    expect(parseB3({})).toBeUndefined();
  });

  it('prefers the single header; an invalid one falls back to the multi headers', () => {
    const multi = { 'x-b3-traceid': T64, 'x-b3-spanid': P, 'x-b3-sampled': '0' };
    expect(parseB3({ b3: `${T128}-${S}-1`, ...multi })).toMatchObject({
      traceId: T128,
      spanId: S,
      sampled: true,
    });
    expect(parseB3({ b3: 'garbage-header', ...multi })).toMatchObject({ spanId: P, sampled: false });
  });
});

describe('ids', () => {
  it('makes lowercase hex ids of the right length, not zero, not repeating', () => {
    const traces = new Set<string>();
    const spans = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      expect(t).not.toBe('0'.repeat(32));
      expect(s).not.toBe('0'.repeat(16));
      traces.add(t);
      spans.add(s);
    }
    expect(traces.size).toBe(10_000);
    expect(spans.size).toBe(10_000);
  });

  it("the sampler's low 52 bits read from the random bytes equal those parsed from the id", () => {
    for (let i = 0; i < 5_000; i++) {
      const t = newTraceId();
      // The pool refills every 170 or so ids: both sides of a refill are covered.
      expect(traceIdLow52(t, true)).toBe(Number.parseInt(t.slice(19), 16));
      newSpanId();
    }
    expect(traceIdLow52('4bf92f3577b34da6a3ce929d0e0e4736', false)).toBe(0xe929d0e0e4736);
  });

  it('formats a traceparent that parses back', () => {
    const t = newTraceId();
    const s = newSpanId();
    expect(formatTraceparent(t, s, true)).toBe(`00-${t}-${s}-01`);
    expect(parseTraceparent(formatTraceparent(t, s, false), undefined)).toEqual({
      traceId: t,
      spanId: s,
      sampled: false,
      traceState: '',
    });
  });
});
