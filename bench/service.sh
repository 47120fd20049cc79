#!/usr/bin/env bash
# The cost of running it as a service (issue 20): GET /Users/{id} and PATCH through the peer harness
# (../shared/peer-bench/scim-load.sh, as is) with metrics and a per-client rate limit on (a rate high
# enough never to refuse, so that every request is counted), against the same with both off
# (SCIMD_METRICS=false, no rate), in paired rounds: each round runs off then on, each on a fresh store.
# Prints each round's ratio on/off and their median. Target: >= 0.95 for both scenarios.
# Usage: bench/service.sh   (needs wrk and a release build: cargo build --release)
# Knobs: ROUNDS=3, PORT=18097; N, DURATION, ... go to the harness as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; PORT=${PORT:-18097}
OUT=bench/out/service; rm -rf $OUT; mkdir -p $OUT; ROOT=$(mktemp -d /tmp/scimd-bench-service.XXXXXX)
URL=http://127.0.0.1:$PORT; SCIMD_PID=
. bench/lib.sh   # serve_scimd, bootstrap_creds, token
trap '[ -n "$SCIMD_PID" ] && kill $SCIMD_PID 2>/dev/null; rm -rf "$ROOT"' EXIT
! curl -s -o /dev/null $URL/healthz || { echo "port $PORT is in use: set PORT" >&2; exit 2; }

run() { # NAME ROUND: one harness run on a fresh store; metrics and rate per NAME
  local data=$ROOT/$1-$2
  if [ "$1" = off ]; then
    SCIMD_METRICS=false serve_scimd "$data" $OUT/server-$1-$2.log
    bootstrap_creds "$data"
  else
    serve_scimd "$data" $OUT/server-$1-$2.log
    CREDS=$(./target/release/scimd client create bench --rate 1000000 --data-dir "$data" 2>/dev/null \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["client_id"]+":"+d["client_secret"])')
    sleep 3   # the running server re-reads the rates every 2 s
  fi
  TOKEN=$(token)
  SCENARIOS="get-by-id patch" SERVER_PID=$SCIMD_PID ../shared/peer-bench/scim-load.sh $URL/scim/v2 "$TOKEN" > $OUT/$1-$2.txt
  kill $SCIMD_PID; wait $SCIMD_PID 2>/dev/null || true; SCIMD_PID=
  grep -E "^(get-by-id|patch):" $OUT/$1-$2.txt | sed "s/^/$1 round $2 /"
}
for r in $(seq $ROUNDS); do
  echo "== round $r of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  run off $r; run on $r
done
python3 - $OUT $ROUNDS <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rps(name, r, scenario):
    text = open(f"{out}/{name}-{r}.txt").read()
    return float(re.search(rf"^{scenario}: ([\d.]+) req/s", text, re.M).group(1))
for scenario in ("get-by-id", "patch"):
    ratios = [rps("on", r, scenario) / rps("off", r, scenario) for r in range(1, rounds + 1)]
    verdict = "PASS" if statistics.median(ratios) >= 0.95 else "FAIL"
    print(f"{scenario:10s} on/off median {statistics.median(ratios):.3f} {[round(x, 3) for x in ratios]}  target >= 0.95  {verdict}")
PY
