/**
 * Requests per API version, counted where the version is selected: one cell per (api, version, status), made at
 * compile time, so counting is one increment. Module state, read by `trellis_api_requests_total` at scrape time
 * (src/observability/metrics.ts); the labels come from the config, never from a request.
 */
export interface ApiVersionCell {
  readonly labels: Readonly<Record<string, string>>;
  value: number;
}

export const apiVersionTotals = new Map<string, ApiVersionCell>();

/** The cell of one version (the same object across reloads while its api, name and status stay). */
export function apiVersionCell(api: string, version: string, status: string): ApiVersionCell {
  const key = `${api}\u0000${version}\u0000${status}`;
  let cell = apiVersionTotals.get(key);
  if (cell === undefined) {
    cell = {
      labels: { trellis_api: api, trellis_api_version: version, api_version_status: status },
      value: 0,
    };
    apiVersionTotals.set(key, cell);
  }
  return cell;
}
