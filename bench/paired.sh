#!/usr/bin/env bash
# Paired A/B of two Trellis configs on this VM, whose speed drifts too much between the rounds of `npm run bench`
# to resolve a few percent: both gateways run at once (one worker each, pinned to core 1), and wrk (core 0) loads
# them in turn for SECONDS each, PAIRS times, in alternating order (use an even PAIRS). Prints the median of the
# per-pair ratios B/A for req/s and for the gateways' CPU per request (read from /proc), and the ratio of the
# medians. The upstream (bench/upstream.js) and
# the OTLP sink (bench/harness/otlp-sink.js) run on core 0 for the time of the run.
#
#   npm run build
#   bench/paired.sh bench/trellis-telemetry-off.yaml bench/trellis-telemetry.yaml 15 3
#
# Usage: bench/paired.sh CONFIG_A CONFIG_B [PAIRS=15] [SECONDS=3] [PATH=/]
# HEADERS='Name: value|Name: value' adds request header fields (wrk sends only Host, the address: CRS rule 920350
# flags a numeric Host, so bench/waf runs send a name).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 N=${3:-15} S=${4:-3} P=${5:-/}
[ "$N" -ge 1 ] && [ "$N" -le 100 ] && [ "$S" -ge 1 ] && [ "$S" -le 30 ] || { echo "PAIRS 1..100, SECONDS 1..30" >&2; exit 2; }
port() { grep -m1 -E '^\s+port:' "$1" | awk '{print $2}'; }
pa=$(port "$A") pb=$(port "$B")
out=$(mktemp)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$out"; }
trap cleanup EXIT
taskset -c 0 node bench/upstream.js >/dev/null 2>&1 & pids+=($!)
taskset -c 0 node bench/harness/otlp-sink.js 18001 >/dev/null 2>&1 & pids+=($!)
taskset -c 1 node bin/trellis.js gateway --config "$A" --workers 1 >/dev/null 2>&1 & ga=$!; pids+=($ga)
taskset -c 1 node bin/trellis.js gateway --config "$B" --workers 1 >/dev/null 2>&1 & gb=$!; pids+=($gb)
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$pa$P" && curl -s -o /dev/null "http://127.0.0.1:$pb$P" && break
  sleep 0.2
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name port pid
  local c0 c1 text
  c0=$(cpu "$3")
  local h=() f
  if [ -n "${HEADERS:-}" ]; then IFS='|' read -ra f <<<"$HEADERS"; for x in "${f[@]}"; do h+=(-H "$x"); done; fi
  text=$(taskset -c 0 wrk -t1 -c50 -d"${S}s" "${h[@]}" "http://127.0.0.1:$2$P")
  c1=$(cpu "$3")
  echo "$1 $(echo "$text" | awk '/Requests\/sec/{print $2}') $(echo "$text" | awk '/requests in/{print $1}') $c0 $c1"
}
run A "$pa" "$ga" >/dev/null; run B "$pb" "$gb" >/dev/null # warm-up
# The order alternates (A B, B A, ...): whichever runs second in a pair measures a few percent slower here (an A/A
# run in fixed order gave 0.94), so a fixed order would bias every ratio against B.
for i in $(seq 1 "$N"); do
  if [ $((i % 2)) -eq 1 ]; then
    echo "$i $(run A "$pa" "$ga")" >>"$out"
    echo "$i $(run B "$pb" "$gb")" >>"$out"
  else
    echo "$i $(run B "$pb" "$gb")" >>"$out"
    echo "$i $(run A "$pa" "$ga")" >>"$out"
  fi
done
node - "$out" <<'JS'
const rows = require('node:fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => l.split(' '));
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const by = { A: new Map(), B: new Map() };
// ticks are 10 ms: CPU µs per request = ticks × 10,000 / requests
for (const [i, k, rps, req, c0, c1] of rows) by[k].set(i, { rps: +rps, cpu: ((c1 - c0) * 1e4) / +req });
const pairs = [...by.A.keys()].filter((i) => by.B.has(i));
const rr = pairs.map((i) => by.B.get(i).rps / by.A.get(i).rps);
const cr = pairs.map((i) => by.B.get(i).cpu / by.A.get(i).cpu);
const med = (k, f) => median([...by[k].values()].map(f));
console.log(`pairs ${pairs.length}: per-pair req/s B/A ${rr.map((r) => r.toFixed(2)).join(' ')}`);
console.log(`B/A req/s: median of pairs ${median(rr).toFixed(3)}, ratio of medians ${(med('B', (v) => v.rps) / med('A', (v) => v.rps)).toFixed(3)}`);
console.log(`B/A CPU µs/req: median of pairs ${median(cr).toFixed(3)} (A median ${med('A', (v) => v.cpu).toFixed(1)} µs, B ${med('B', (v) => v.cpu).toFixed(1)} µs)`);
JS
