/**
 * Counts of GraphQL operations seen by `graphql` policies, for `trellis_graphql_operations_total` (read at scrape
 * time by src/observability/metrics.ts). Label values are bounded: route and policy names come from the config, the
 * operation label is a name the policy knows (its allow-list documents and `metricOperations`) or `other` /
 * `anonymous`, the type one of four, the result `allowed` or an error code of the catalog. A client cannot make a
 * new series by naming its operation.
 */
export interface OperationCell {
  readonly labels: {
    readonly trellis_route: string;
    readonly trellis_policy: string;
    readonly graphql_operation: string;
    readonly graphql_operation_type: string;
    readonly result: string;
  };
  value: number;
}

/** Since the process started (counters never go back, a reload included). */
export const graphqlOperationTotals = new Map<string, OperationCell>();

export function countOperation(
  route: string,
  policy: string,
  operation: string,
  type: string,
  result: string,
): void {
  const key = `${route}\u0000${policy}\u0000${operation}\u0000${type}\u0000${result}`;
  let cell = graphqlOperationTotals.get(key);
  if (cell === undefined) {
    cell = {
      labels: {
        trellis_route: route,
        trellis_policy: policy,
        graphql_operation: operation,
        graphql_operation_type: type,
        result,
      },
      value: 0,
    };
    graphqlOperationTotals.set(key, cell);
  }
  cell.value++;
}
