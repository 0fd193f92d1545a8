/**
 * `trellis top`: a terminal view of live traffic from the admin API's /metrics, like `linkerd viz top`. Every
 * interval it scrapes the Prometheus exposition and shows, per route and per service, requests per second, the
 * success rate and p50 / p99 latency over the last interval, from the differences between two scrapes of the
 * request duration histogram. The exposition text is parsed generically, so this depends on metric and label
 * names only.
 */

export const DURATION_METRIC = 'http_server_request_duration_seconds';
export const ROUTE_LABEL = 'trellis_route';
export const SERVICE_LABEL = 'trellis_service';
const STATUS_CLASS_LABEL = 'http_response_status_class';
const ERROR_LABEL = 'error_type';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/**
 * Parses the Prometheus text exposition format (0.0.4, and the OpenMetrics text that is close to it): comments
 * and blank lines skipped, label values unescaped (`\\`, `\"`, `\n`), `NaN` and `±Inf` values, timestamps
 * ignored. A line that does not parse is skipped.
 */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = parseLine(line);
    if (s) out.push(s);
  }
  return out;
}

function parseLine(line: string): Sample | undefined {
  const name = NAME.exec(line)?.[0];
  if (!name) return undefined;
  let pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === '{') {
    pos++;
    for (;;) {
      while (line[pos] === ' ' || line[pos] === ',') pos++;
      if (line[pos] === '}') {
        pos++;
        break;
      }
      const label = LABEL_NAME.exec(line.slice(pos))?.[0];
      if (!label) return undefined;
      pos += label.length;
      while (line[pos] === ' ') pos++;
      if (line[pos] !== '=') return undefined;
      pos++;
      while (line[pos] === ' ') pos++;
      if (line[pos] !== '"') return undefined;
      pos++;
      let value = '';
      for (;;) {
        const c = line[pos];
        if (c === undefined) return undefined;
        pos++;
        if (c === '"') break;
        if (c === '\\') {
          const e = line[pos++];
          value += e === 'n' ? '\n' : (e ?? '');
        } else value += c;
      }
      labels[label] = value;
    }
  }
  const rest = line.slice(pos).trim().split(/\s+/);
  const value = parseValue(rest[0] ?? '');
  if (value === undefined) return undefined;
  return { name, labels, value };
}

function parseValue(s: string): number | undefined {
  if (s === '+Inf' || s === 'Inf') return Number.POSITIVE_INFINITY;
  if (s === '-Inf') return Number.NEGATIVE_INFINITY;
  if (s === 'NaN') return Number.NaN;
  if (s === '') return undefined;
  const n = Number(s);
  return Number.isNaN(n) ? undefined : n;
}

/** One histogram series (one label set, `le` aside): cumulative bucket counts by upper bound, and the count. */
export interface Histogram {
  readonly labels: Readonly<Record<string, string>>;
  /** Upper bound → cumulative count. */
  readonly buckets: Map<number, number>;
  count: number;
}

function seriesKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(
    Object.keys(labels)
      .filter((k) => k !== 'le')
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

/** The series of histogram `metric`, by label set. `_count` missing: the `+Inf` bucket is the count. */
export function histograms(samples: readonly Sample[], metric: string): Map<string, Histogram> {
  const out = new Map<string, Histogram>();
  const get = (labels: Readonly<Record<string, string>>) => {
    const key = seriesKey(labels);
    let h = out.get(key);
    if (!h) {
      const own: Record<string, string> = {};
      for (const [k, v] of Object.entries(labels)) if (k !== 'le') own[k] = v;
      h = { labels: own, buckets: new Map(), count: Number.NaN };
      out.set(key, h);
    }
    return h;
  };
  for (const s of samples) {
    if (s.name === `${metric}_bucket`) {
      const le = parseValue(s.labels.le ?? '');
      if (le !== undefined && !Number.isNaN(le)) get(s.labels).buckets.set(le, s.value);
    } else if (s.name === `${metric}_count`) {
      get(s.labels).count = s.value;
    }
  }
  for (const h of out.values()) {
    if (Number.isNaN(h.count)) h.count = h.buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  }
  return out;
}

/**
 * What happened to one series between two scrapes. A series that is new counts from zero; one whose count went
 * down was reset (a restarted worker), and its current values are the increase, as Prometheus's `increase` reads it.
 */
function delta(prev: Histogram | undefined, cur: Histogram): Histogram {
  if (!prev || cur.count < prev.count) return cur;
  const buckets = new Map<number, number>();
  for (const [le, v] of cur.buckets) buckets.set(le, Math.max(0, v - (prev.buckets.get(le) ?? 0)));
  return { labels: cur.labels, buckets, count: cur.count - prev.count };
}

/**
 * The q-quantile from cumulative bucket counts, as Prometheus's `histogram_quantile`: find the bucket the rank
 * falls in and interpolate linearly within it (from 0 for the first bucket); a rank in the `+Inf` bucket gives
 * the highest finite bound. null when there are no observations.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  if (sorted.length === 0) return null;
  // Cumulative counts must not decrease (float sums and a mid-scrape reset can break that): make them.
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]![1] < sorted[i - 1]![1]) sorted[i] = [sorted[i]![0], sorted[i - 1]![1]];
  }
  const total = sorted[sorted.length - 1]![1];
  if (!(total > 0)) return null;
  if (q <= 0) return Math.min(sorted[0]![0], 0);
  const rank = Math.min(q, 1) * total;
  let i = sorted.findIndex(([, c]) => c >= rank);
  if (i === -1) i = sorted.length - 1;
  const [upper, count] = sorted[i]!;
  if (upper === Number.POSITIVE_INFINITY) {
    // Prometheus returns the upper bound of the second-highest bucket.
    return sorted.length > 1 ? sorted[sorted.length - 2]![0] : null;
  }
  if (i === 0 && upper <= 0) return upper;
  const lower = i === 0 ? 0 : sorted[i - 1]![0];
  const below = i === 0 ? 0 : sorted[i - 1]![1];
  const inBucket = count - below;
  if (inBucket <= 0) return upper;
  return lower + (upper - lower) * ((rank - below) / inBucket);
}

export interface Row {
  /** Route or service name; `none` (or '') when the requests had none (no route matched, a local reply). */
  readonly name: string;
  readonly requests: number;
  readonly rps: number;
  /** 0..1; null without requests. */
  readonly success: number | null;
  /** Seconds; null without requests. */
  readonly p50: number | null;
  readonly p99: number | null;
}

/** The label value the metrics use for "no route", "no service", "no error" (an empty value is read the same). */
export const NONE = 'none';

/** A request failed when it got a 5xx or carries a Trellis error code. */
function succeeded(labels: Readonly<Record<string, string>>): boolean {
  const status = labels[STATUS_CLASS_LABEL] ?? '';
  const error = labels[ERROR_LABEL] ?? '';
  return !status.startsWith('5') && (error === '' || error === NONE);
}

/** Rows by `label` (route or service) over the interval between two scrapes, busiest first. */
export function computeRows(
  prev: readonly Sample[],
  cur: readonly Sample[],
  elapsedSeconds: number,
  label: string,
  metric = DURATION_METRIC,
): Row[] {
  const before = histograms(prev, metric);
  const groups = new Map<string, { count: number; ok: number; buckets: Map<number, number> }>();
  for (const [key, h] of histograms(cur, metric)) {
    const d = delta(before.get(key), h);
    const name = h.labels[label] ?? '';
    let g = groups.get(name);
    if (!g) {
      g = { count: 0, ok: 0, buckets: new Map() };
      groups.set(name, g);
    }
    g.count += d.count;
    if (succeeded(h.labels)) g.ok += d.count;
    for (const [le, v] of d.buckets) g.buckets.set(le, (g.buckets.get(le) ?? 0) + v);
  }
  const rows: Row[] = [];
  for (const [name, g] of groups) {
    const any = g.count > 0;
    rows.push({
      name,
      requests: g.count,
      rps: elapsedSeconds > 0 ? g.count / elapsedSeconds : 0,
      success: any ? g.ok / g.count : null,
      p50: any ? histogramQuantile(0.5, g.buckets) : null,
      p99: any ? histogramQuantile(0.99, g.buckets) : null,
    });
  }
  return rows.sort((a, b) => b.rps - a.rps || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// ---------------------------------------------------------------- rendering

export function formatLatency(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '-';
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
  return `${s.toFixed(2)}s`;
}

function formatRate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
}

function formatSuccess(s: number | null): string {
  return s === null ? '-' : `${(s * 100).toFixed(2)}%`;
}

/** One aligned table; `limit` rows at most (the rest summed up in one line). */
export function renderTable(title: string, rows: readonly Row[], limit = Number.POSITIVE_INFINITY): string {
  const shown = rows.slice(0, Math.max(1, limit));
  const cells = shown.map((r) => [
    r.name === '' ? '(none)' : r.name,
    formatRate(r.rps),
    formatSuccess(r.success),
    formatLatency(r.p50),
    formatLatency(r.p99),
  ]);
  const head = [title, 'RPS', 'SUCCESS', 'P50', 'P99'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join('   ')
      .trimEnd();
  const out = [line(head), ...cells.map(line)];
  if (rows.length === 0) out.push('(no requests yet)');
  if (rows.length > shown.length) out.push(`… ${rows.length - shown.length} more`);
  return out.join('\n');
}

export function renderScreen(
  prev: readonly Sample[],
  cur: readonly Sample[],
  elapsedSeconds: number,
  opts: { header?: string; rowsPerTable?: number } = {},
): string {
  const routes = computeRows(prev, cur, elapsedSeconds, ROUTE_LABEL);
  // Requests that reached no service (local replies, no route) have no service row.
  const services = computeRows(prev, cur, elapsedSeconds, SERVICE_LABEL).filter(
    (r) => r.name !== '' && r.name !== NONE,
  );
  const parts = [];
  if (opts.header) parts.push(opts.header, '');
  parts.push(
    renderTable('ROUTE', routes, opts.rowsPerTable),
    '',
    renderTable('SERVICE', services, opts.rowsPerTable),
  );
  return `${parts.join('\n')}\n`;
}

// ---------------------------------------------------------------- the command

/** `1s`, `500ms`, `2` (seconds), `1m` → ms; undefined when invalid or below 100 ms. */
export function parseInterval(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  return ms >= 100 && ms <= 3_600_000 ? Math.round(ms) : undefined;
}

export interface TopOptions {
  admin: string;
  token: string | undefined;
  intervalMs: number;
  once: boolean;
  out?: NodeJS.WriteStream;
}

class ScrapeError extends Error {}

function metricsUrl(admin: string): string {
  const base = /^https?:\/\//i.test(admin) ? admin : `http://${admin}`;
  return `${base.replace(/\/+$/, '')}/metrics`;
}

async function scrape(url: string, token: string | undefined): Promise<Sample[]> {
  let res: Response;
  try {
    res = await fetch(url, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(5_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ScrapeError(`cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  if (res.status === 401) {
    throw new ScrapeError(
      token
        ? `${url}: the admin API rejected the token`
        : `${url}: the admin API needs a token (admin.token): pass --token or set TRELLIS_ADMIN_TOKEN`,
    );
  }
  if (res.status === 404 && text.includes('metrics_disabled')) {
    throw new ScrapeError(`${url}: metrics are off on this gateway (metrics.enabled: false)`);
  }
  if (res.status !== 200) throw new ScrapeError(`${url}: HTTP ${res.status}`);
  return parseExposition(text);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `trellis top`; resolves with the exit code. */
export async function runTop(o: TopOptions): Promise<number> {
  const out = o.out ?? process.stdout;
  const url = metricsUrl(o.admin);
  const every = o.intervalMs >= 1000 ? `${o.intervalMs / 1000}s` : `${o.intervalMs}ms`;
  if (o.once) {
    try {
      const a = await scrape(url, o.token);
      const t0 = performance.now();
      await sleep(o.intervalMs);
      const b = await scrape(url, o.token);
      out.write(renderScreen(a, b, (performance.now() - t0) / 1000));
      return 0;
    } catch (err) {
      process.stderr.write(`trellis top: ${(err as Error).message}\n`);
      return 1;
    }
  }
  return interactive(o, url, every, out);
}

async function interactive(
  o: TopOptions,
  url: string,
  every: string,
  out: NodeJS.WriteStream,
): Promise<number> {
  const tty = out.isTTY === true;
  let stop = false;
  let wake: (() => void) | undefined;
  const quit = () => {
    stop = true;
    wake?.();
  };
  const stdin = process.stdin;
  const keys = (d: Buffer) => {
    const k = d.toString();
    if (k === 'q' || k === 'Q' || k === '\u0003') quit();
  };
  if (stdin.isTTY) {
    stdin.setRawMode(true);
    stdin.on('data', keys);
    stdin.resume();
  }
  process.on('SIGINT', quit);
  process.on('SIGTERM', quit);
  if (tty) out.write('\x1b[?1049h\x1b[?25l'); // alternate screen, cursor hidden
  const paint = (body: string) => out.write(tty ? `\x1b[H\x1b[2J${body}` : `${body}\n`);
  const header = (extra = '') =>
    `trellis top   ${url}   every ${every}   ${new Date().toISOString().slice(11, 19)}${extra}${stdin.isTTY ? '   (q quits)' : ''}`;
  let prev: { samples: Sample[]; at: number } | undefined;
  try {
    while (!stop) {
      const started = performance.now();
      try {
        const samples = await scrape(url, o.token);
        const at = performance.now();
        if (prev) {
          const rowsPerTable = tty && out.rows ? Math.max(3, Math.floor((out.rows - 8) / 2)) : undefined;
          paint(
            renderScreen(prev.samples, samples, (at - prev.at) / 1000, { header: header(), rowsPerTable }),
          );
        } else {
          paint(`${header()}\n\nwaiting for a second scrape…\n`);
        }
        prev = { samples, at };
      } catch (err) {
        paint(`${header()}\n\n${(err as Error).message}\n`);
      }
      const left = o.intervalMs - (performance.now() - started);
      if (!stop && left > 0) {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, left);
          wake = () => {
            clearTimeout(timer);
            r();
          };
        });
      }
    }
  } finally {
    if (tty) out.write('\x1b[?25h\x1b[?1049l');
    process.off('SIGINT', quit);
    process.off('SIGTERM', quit);
    if (stdin.isTTY) {
      stdin.off('data', keys);
      stdin.setRawMode(false);
      stdin.pause();
    }
  }
  return 0;
}
