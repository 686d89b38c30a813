#!/usr/bin/env bash
# Instructions (valgrind callgrind "Ir") that tiergate spends per request, for comparing
# builds on a machine whose wall-clock speed drifts (docs/bench/profile-findings.md,
# round 4). Starts the benchmark's upstream and policy, runs `ROOT/bin/tiergate.js` under
# callgrind, warms it with WARM requests, zeroes the counters, sends N requests at CONNS
# connections, and dumps. Compare the main thread's count (SpinEventLoopInternal) between
# builds: the compiler threads' share varies from run to run under valgrind. The gateway
# gets the deployment's node flags (the Dockerfile's CMD); ROOT must be built (dist/).
#
#   scripts/bench/instructions.sh [ROOT=.] [N=2000] [WARM=4000] [CONNS=10] [json|sse]
#   (EXTRA=--perf-basic-prof names JIT-compiled frames in /tmp/perf-PID.map)
#
# Needs valgrind (callgrind_control, callgrind_annotate) and curl. Takes ~3 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
ROOT="$(cd "${1:-$here}" && pwd)"; N="${2:-2000}"; WARM="${3:-4000}"; CONNS="${4:-10}"; MODE="${5:-json}"
work="$(mktemp -d)"
cd "$here"
up="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
gw="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
node --import tsx scripts/bench/upstream.ts "$up" >/dev/null 2>&1 &
upstream=$!
trap 'kill "$upstream" 2>/dev/null || true' EXIT
node --import tsx -e "
import { writeFileSync } from 'node:fs';
import { BASE_SHAPE, chatBody, routeName, writePolicy } from './scripts/bench/policy.ts';
writeFileSync('$work/policy', writePolicy('$work', BASE_SHAPE, $up));
writeFileSync('$work/body', chatBody(routeName(BASE_SHAPE), '$MODE' === 'sse'));
"
cd "$work"
TIERGATE_LOG_LEVEL=warn valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/cg.%p.out" \
  node --heap-growing-percent=50 ${EXTRA:-} "$ROOT/bin/tiergate.js" serve -c "$(cat "$work/policy")" --port "$gw" --host 127.0.0.1 --no-watch >"$work/gateway.log" 2>&1 &
gateway=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$gw/readyz" && break; sleep 0.5; done
load() {
  node -e "
require('$here/node_modules/autocannon')({ url: 'http://127.0.0.1:$gw/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' },
  body: require('fs').readFileSync('$work/body', 'utf8'), connections: $CONNS, amount: $1, timeout: 60 },
  (err, r) => { if (err || r.non2xx || r.errors) { console.error(err ?? r); process.exit(1); } });"
}
load "$WARM"
callgrind_control -z "$gateway" >/dev/null
load "$N"
callgrind_control -d "$gateway" >/dev/null
sleep 1
kill -TERM "$gateway"; wait "$gateway" 2>/dev/null || true
dump="$(ls -S "$work"/cg.*.out.* | head -1)"
main="$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null | awk '/node::SpinEventLoopInternal/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')"
total="$(awk '/^summary:/ { print $2 }' "$dump")"
echo "$ROOT ($MODE): main thread $((main / N)) instructions per request; all threads $((total / N)); dump $dump"
