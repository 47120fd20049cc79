#!/usr/bin/env bash
# The peer harness's mixed scenario (60 % GET by id, 20 % filter eq, 10 % PATCH, 5 % PUT,
# 5 % POST; ../shared/peer-bench/scim-load.sh, as is) on the embedded SQLite store, before and
# after a big group exists. Each round starts scimd on a fresh --data-dir and runs the harness
# twice on that store: SCENARIOS=mixed ("mixed-before"), then SCENARIOS="group mixed"
# ("mixed-after": group-add-members, group-get, group-remove-member on a MEMBERS-member group,
# then mixed). The harness always seeds N users first, so the second run's store holds 2 N users
# (plus those mixed created): mixed-after is measured on a store twice as large. Both seeds
# run at SEED_CONC=32. Medians of ROUNDS rounds; target: mixed >= 3000 req/s.
# Outputs in bench/out/mixed: round-R-before.txt, round-R-after.txt, server-R.log.
# Usage: bench/mixed.sh   (needs wrk and a release build: cargo build --release)
# Knobs: ROUNDS=3, PORT=18096; N, DURATION, CONC, ... go to scim-load.sh as they are;
# QUICK=1 defaults to N=2000 DURATION=3 ROUNDS=1 (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${QUICK:-}" = 1 ]; then export N=${N:-2000} DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-1}; fi
ROUNDS=${ROUNDS:-3}; PORT=${PORT:-18096}
OUT=bench/out/mixed; mkdir -p $OUT; ROOT=$(mktemp -d /tmp/scimd-bench-mixed.XXXXXX)
URL=http://127.0.0.1:$PORT; PID=
. bench/lib.sh   # bootstrap_creds, token
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$ROOT"' EXIT
! curl -s -o /dev/null $URL/healthz || { echo "port $PORT is in use: set PORT" >&2; exit 2; }

load() { # NAME SCENARIOS: one harness run against the running scimd
  SCENARIOS=$2 SERVER_PID=$PID SEED_CONC=32 ../shared/peer-bench/scim-load.sh $URL/scim/v2 "$TOKEN" | tee $OUT/$1.txt
}
for r in $(seq $ROUNDS); do
  echo "== round $r of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  DATA=$ROOT/$r
  serve_scimd "$DATA" $OUT/server-$r.log; PID=$SCIMD_PID
  bootstrap_creds "$DATA"; TOKEN=$(token)
  echo "-- mixed-before (seed, then mixed)"; load round-$r-before mixed
  echo "-- mixed-after (seed again, group scenarios, then mixed)"; load round-$r-after "group mixed"
  kill $PID 2>/dev/null || true; wait $PID || true; PID=
  rm -rf "$DATA"
done

python3 - $OUT $ROUNDS <<'PY'
import re, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def rps(path):
    return {m[1]: float(m[2]) for m in re.finditer(r"^([\w-]+): ([\d.]+) req/s", open(path).read(), re.M)}
rows = {}
for r in range(1, rounds + 1):
    for phase in ("before", "after"):
        for k, v in rps(f"{out}/round-{r}-{phase}.txt").items():
            name = f"mixed-{phase}" if k == "mixed" else k if phase == "after" and k != "seed" else f"{k} ({phase})"
            rows.setdefault(name, []).append(v)
print(f"\nSQLite store, medians over {rounds} round(s)")
for name in ("seed (before)", "mixed-before", "seed (after)", "group-add-members", "group-get",
             "group-remove-member", "mixed-after"):
    xs = rows.get(name, [])
    m = st.median(xs) if xs else None
    target = "" if not name.startswith("mixed") else "  >= 3000/s " + ("PASS" if m and m >= 3000 else "FAIL")
    print(f"{name:22s} {'-' if m is None else f'{m:9.1f}':>9s} req/s  runs {[round(x) for x in xs]}{target}")
PY
