/** Picks an endpoint for each attempt. Issue 4 adds P2C peak-EWMA, least-request, hashing. */
export interface Balancer<E> {
  pick(): E | undefined;
}

/** Smooth weighted round robin (as in nginx): spreads heavier endpoints evenly instead of in bursts. */
export function weightedRoundRobin<E extends { weight: number }>(endpoints: readonly E[]): Balancer<E> {
  if (endpoints.length === 0) return { pick: () => undefined };
  if (endpoints.length === 1) {
    const only = endpoints[0];
    return { pick: () => only };
  }
  if (endpoints.every((e) => e.weight === endpoints[0]!.weight)) {
    let i = 0;
    const n = endpoints.length;
    return {
      pick: function roundRobin() {
        const e = endpoints[i]!;
        i = i + 1 === n ? 0 : i + 1;
        return e;
      },
    };
  }
  const current = new Array<number>(endpoints.length).fill(0);
  const total = endpoints.reduce((s, e) => s + e.weight, 0);
  return {
    pick: function smoothWeighted() {
      let best = 0;
      for (let i = 0; i < endpoints.length; i++) {
        current[i]! += endpoints[i]!.weight;
        if (current[i]! > current[best]!) best = i;
      }
      current[best]! -= total;
      return endpoints[best];
    },
  };
}
