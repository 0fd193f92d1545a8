import { describe, expect, test } from 'vitest';
import type { LocalReply, StageContext } from '../proxy/stage.js';
import type { CompiledPolicy } from '../stages/policy.js';
import { PolicyStates, routePolicyStages } from './policies.js';

describe('PolicyStates', () => {
  test('same policy, type and key: the same object across a reload; the unclaimed are disposed after it', () => {
    const states = new PolicyStates();
    const disposed: string[] = [];
    const g1 = states.begin();
    const a = g1.keep(
      'p',
      'rate-limit',
      'a',
      () => ({ id: 'a' }),
      (v) => void disposed.push(v.id),
    );
    g1.keep(
      'p',
      'rate-limit',
      'b',
      () => ({ id: 'b' }),
      (v) => void disposed.push(v.id),
    );
    states.commit(g1);
    expect(disposed).toEqual([]);

    const g2 = states.begin();
    expect(g2.keep('p', 'rate-limit', 'a', () => ({ id: 'a2' }))).toBe(a);
    // Another type or name under the same key is other state.
    expect(g2.keep('p', 'quota', 'a', () => ({ id: 'q' }))).not.toBe(a);
    expect(g2.keep('q', 'rate-limit', 'a', () => ({ id: 'q2' }))).not.toBe(a);
    expect(disposed).toEqual([]); // nothing goes before the swap
    states.commit(g2);
    expect(disposed).toEqual(['b']);
    expect(states.size).toBe(3);
  });

  test('a failed apply disposes only what it created, never the live state', () => {
    const states = new PolicyStates();
    const disposed: string[] = [];
    const d = (v: { id: string }) => void disposed.push(v.id);
    const g1 = states.begin();
    const live = g1.keep('p', 't', 'k', () => ({ id: 'live' }), d);
    states.commit(g1);
    const failed = states.begin();
    expect(failed.keep('p', 't', 'k', () => ({ id: 'x' }), d)).toBe(live);
    failed.keep('p', 't', 'new', () => ({ id: 'fresh' }), d);
    states.abort(failed);
    expect(disposed).toEqual(['fresh']);
    const next = states.begin();
    expect(next.keep('p', 't', 'k', () => ({ id: 'y' }), d)).toBe(live);
  });

  test('a dispose that throws or rejects does not break the swap', () => {
    const states = new PolicyStates();
    const g1 = states.begin();
    g1.keep(
      'p',
      't',
      'a',
      () => 1,
      () => {
        throw new Error('boom');
      },
    );
    g1.keep(
      'p',
      't',
      'b',
      () => 2,
      () => Promise.reject(new Error('boom')),
    );
    states.commit(g1);
    expect(() => states.commit(states.begin())).not.toThrow();
  });
});

describe('routePolicyStages', () => {
  const deny: LocalReply = { kind: 'error', code: 'client_address_denied' };
  const busy: LocalReply = { kind: 'error', code: 'auth_overloaded' };
  const policy = (name: string, phase: number, result: () => unknown, shadow = false): CompiledPolicy => ({
    name,
    type: 'test',
    phase,
    shadow,
    request: { name, onRequest: result as () => undefined },
    response: { name, onResponse: () => {} },
  });
  const ctx = () => ({ decisions: undefined }) as unknown as StageContext;
  const decisions = (c: StageContext) => c.decisions?.map((d) => `${d.policy}:${d.decision}`);

  test('phase order, listed order within a phase; response stages in reverse; shadow ones have none', () => {
    const { request, response } = routePolicyStages('r', [
      policy('late', 500, () => undefined),
      policy('early-1', 100, () => undefined),
      policy('early-2', 100, () => undefined),
      policy('shadowed', 300, () => undefined, true),
    ]);
    expect(request.map((s) => s.name)).toEqual(['early-1', 'early-2', 'shadowed', 'late']);
    expect(response.map((s) => s.name)).toEqual(['late', 'early-2', 'early-1']);
  });

  test('records allow, deny and error; a 5xx reply or a throw is an error', async () => {
    const c = ctx();
    const [allow, refuse, fail, thrower, later] = routePolicyStages('r', [
      policy('a', 1, () => undefined),
      policy('b', 2, () => deny),
      policy('c', 3, () => busy),
      policy('d', 4, () => {
        throw new Error('bug');
      }),
      policy('e', 5, () => Promise.resolve(deny)),
    ]).request;
    expect(allow!.onRequest(c)).toBeUndefined();
    expect(refuse!.onRequest(c)).toBe(deny);
    expect(fail!.onRequest(c)).toBe(busy);
    expect(() => thrower!.onRequest(c)).toThrow('bug');
    expect(await later!.onRequest(c)).toBe(deny);
    expect(decisions(c)).toEqual(['a:allow', 'b:deny', 'c:error', 'd:error', 'e:deny']);
    expect(c.decisions![0]).toEqual({ route: 'r', policy: 'a', type: 'test', decision: 'allow' });
  });

  test('shadow: a refusal, a failure or a throw is recorded and the request goes on', async () => {
    const c = ctx();
    const stages = routePolicyStages('r', [
      policy('a', 1, () => deny, true),
      policy('b', 2, () => Promise.resolve(deny), true),
      policy('c', 3, () => Promise.reject(new Error('down')), true),
      policy(
        'd',
        4,
        () => {
          throw new Error('bug');
        },
        true,
      ),
    ]).request;
    for (const s of stages) expect(await s.onRequest(c)).toBeUndefined();
    expect(decisions(c)).toEqual(['a:shadow_deny', 'b:shadow_deny', 'c:error', 'd:error']);
  });

  test('the same decision object is recorded every time: no allocation per request', () => {
    const [s] = routePolicyStages('r', [policy('a', 1, () => undefined)]).request;
    const c1 = ctx();
    const c2 = ctx();
    s!.onRequest(c1);
    s!.onRequest(c2);
    expect(c1.decisions![0]).toBe(c2.decisions![0]);
  });
});
