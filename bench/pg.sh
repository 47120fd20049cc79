#!/usr/bin/env bash
# scimd against PostgreSQL's own limit in one run. Paired runs: each round measures the server
# with pgbench (-N: simple-update writes, -S: select by primary key; 32 clients, 2 threads, on a
# `pgbench -i -s 10` database made once), then scimd on a fresh database `scimd` through the peer
# harness as is (../shared/peer-bench/scim-load.sh, SEED_CONC=32; mixed runs after the group
# scenarios there), then scimd again on a fresh database with SCENARIOS=mixed only ("mixed-before":
# no group yet). scimd's figures are divided by pgbench's of the same round; medians over ROUNDS.
# Targets: seed (POST), PATCH, PUT >= 0.40 of -N; GET by id >= 0.35 of -S; mixed (both) >= 3000/s
# and >= the slowest pure scenario (seed, get-by-id, filter-eq, patch, put) of its round.
# PostgreSQL: a throwaway 15 cluster started here (fsync on, default config plus
# pg_stat_statements and max_connections=200, trust auth, C locale, a free loopback port; stopped
# and removed on exit), or the server of BENCH_DATABASE_URL (its databases pgbench and scimd are
# recreated). Outputs in bench/out/pg: round-R.txt, round-R-mixed-before.txt, pgbench-{N,S}-R.txt,
# statements-round-R*.txt (top statements of each scimd run), server-round-R*.log.
# Usage: bench/pg.sh   (needs wrk, pgbench, psql and a release build: cargo build --release)
# scimd gets as many PostgreSQL connections as pgbench has clients (--db-pool-size 32; the default
# is 16): with fewer, fewer commits wait on one flush together.
# Knobs: ROUNDS=3, PGBENCH_SECS=10, PORT=18095, POOL=32; N, DURATION, CONC, ... go to scim-load.sh as they
# are; QUICK=1 defaults to N=2000 DURATION=3 ROUNDS=1 PGBENCH_SECS=3 (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${QUICK:-}" = 1 ]; then export N=${N:-2000} DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-1}; PGBENCH_SECS=${PGBENCH_SECS:-3}; fi
ROUNDS=${ROUNDS:-3}; PGBENCH_SECS=${PGBENCH_SECS:-10}; PORT=${PORT:-18095}; POOL=${POOL:-32}
OUT=bench/out/pg; mkdir -p $OUT; ROOT=$(mktemp -d /tmp/scimd-bench-pg.XXXXXX)
URL=http://127.0.0.1:$PORT; SCIMD_PID=; PG_BIN=
. bench/lib.sh   # bootstrap_creds, token
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$SCIMD_PID" ] && kill $SCIMD_PID 2>/dev/null
  [ -n "$PG_BIN" ] && as_pg "$PG_BIN/pg_ctl" -D "$ROOT/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$ROOT"
}
trap cleanup EXIT
! curl -s -o /dev/null $URL/healthz || { echo "port $PORT is in use: set PORT" >&2; exit 2; }

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  # PGHOST, PGPORT, PGUSER, PGPASSWORD (and PGSSLMODE) for psql/pgbench; scimd gets database scimd.
  eval "$(python3 - "$BENCH_DATABASE_URL" <<'PY'
import sys, shlex, urllib.parse as u
p = u.urlsplit(sys.argv[1]); q = dict(u.parse_qsl(p.query))
env = {"PGHOST": p.hostname, "PGPORT": p.port or 5432, "PGUSER": p.username,
       "PGPASSWORD": p.password and u.unquote(p.password), "PGSSLMODE": q.get("sslmode"),
       "SCIMD_DB_URL": u.urlunsplit(p._replace(path="/scimd"))}
print("\n".join(f"export {k}={shlex.quote(str(v))}" for k, v in env.items() if v))
PY
)"
else
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  export PGHOST=127.0.0.1 PGUSER=postgres
  export PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  [ "$(id -u)" = 0 ] && chown postgres: "$ROOT"
  as_pg "$PG_BIN/initdb" -D "$ROOT/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/log" -w -o "-p $PGPORT -k $ROOT \
    -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c max_connections=200" start >/dev/null
  SCIMD_DB_URL=postgres://postgres@127.0.0.1:$PGPORT/scimd
fi
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "$1" >/dev/null; }
echo "PostgreSQL $(psql -X -tA -d postgres -c 'SHOW server_version') at $PGHOST:$PGPORT, fsync $(psql -X -tA -d postgres -c 'SHOW fsync')"
sql 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' 2>/dev/null || echo "(no pg_stat_statements)"
sql 'DROP DATABASE IF EXISTS pgbench WITH (FORCE)'; sql 'CREATE DATABASE pgbench'
pgbench -i -s 10 -q pgbench > $OUT/pgbench-init.txt 2>&1

# run_scimd NAME ARGS...: scimd on a fresh database `scimd` and data dir, then scim-load.sh (env ARGS).
run_scimd() {
  local name=$1 data=$ROOT/$1; shift
  sql 'DROP DATABASE IF EXISTS scimd WITH (FORCE)'; sql 'CREATE DATABASE scimd'; sql CHECKPOINT
  serve_scimd "$data" $OUT/server-$name.log --database-url "$SCIMD_DB_URL" --db-pool-size $POOL
  bootstrap_creds "$data"; TOKEN=$(token)
  sql 'SELECT pg_stat_statements_reset()' 2>/dev/null || true
  env "$@" SERVER_PID=$SCIMD_PID SEED_CONC=32 ../shared/peer-bench/scim-load.sh $URL/scim/v2 "$TOKEN" | tee $OUT/$name.txt
  psql -X -d postgres -c "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms,
    left(regexp_replace(query, '\s+', ' ', 'g'), 150) AS query FROM pg_stat_statements
    ORDER BY total_exec_time DESC LIMIT 25" > $OUT/statements-$name.txt 2>&1 || true
  kill $SCIMD_PID 2>/dev/null || true; wait $SCIMD_PID || true; SCIMD_PID=
}

for r in $(seq $ROUNDS); do
  echo "== round $r of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for mode in N S; do
    sql CHECKPOINT
    pgbench -$mode -c 32 -j 2 -T $PGBENCH_SECS pgbench > $OUT/pgbench-$mode-$r.txt 2>&1
    echo "pgbench -$mode: $(grep -o 'tps = [0-9.]* (without' $OUT/pgbench-$mode-$r.txt | cut -d' ' -f3) tps"
  done
  run_scimd round-$r
  echo "-- mixed-before (fresh database, seed then mixed only)"
  run_scimd round-$r-mixed-before SCENARIOS=mixed
done

python3 - $OUT $ROUNDS <<'PY'
import re, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def rps(path):
    return {m[1]: float(m[2]) for m in re.finditer(r"^([\w-]+): ([\d.]+) req/s", open(path).read(), re.M)}
def tps(path):
    return float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", open(path).read())[1])
R = []
for r in range(1, rounds + 1):
    d = rps(f"{out}/round-{r}.txt")
    if "mixed" in (b := rps(f"{out}/round-{r}-mixed-before.txt")): d["mixed-before"] = b["mixed"]
    d["-N"], d["-S"] = tps(f"{out}/pgbench-N-{r}.txt"), tps(f"{out}/pgbench-S-{r}.txt")
    pure = [d.get(k, 0.0) for k in ("seed", "get-by-id", "filter-eq", "patch", "put")]
    d["slowest"] = min(pure)
    R.append(d)
def med(key, ref=None):
    xs = [d[key] / d[ref] if ref else d[key] for d in R if key in d and (not ref or d[ref])]
    return st.median(xs) if xs else None
f = lambda x, p=0: "-" if x is None else f"{x:.{p}f}"
print(f"\nmedians over {rounds} round(s); ratio = median of the per-round ratios to the reference")
print(f"{'scenario':22s} {'req/s':>9s} {'ratio':>6s}  {'of':11s} {'target':30s} result")
rows = [("seed", "seed (POST, c=32)", "-N", 0.40), ("patch", "patch", "-N", 0.40), ("put", "put", "-N", 0.40),
        ("get-by-id", "get-by-id", "-S", 0.35)]
for key, label, ref, goal in rows:
    v, q = med(key), med(key, ref)
    ok = "PASS" if q is not None and q >= goal else "FAIL"
    print(f"{label:22s} {f(v,1):>9s} {f(q,3):>6s}  {'pgbench ' + ref:11s} {f'>= {goal:.2f} of pgbench {ref}':30s} {ok}")
for key, label in (("mixed", "mixed (after group)"), ("mixed-before", "mixed-before")):
    v, q = med(key), med(key, "slowest")
    ok = "PASS" if v is not None and v >= 3000 and q is not None and q >= 1 else "FAIL"
    print(f"{label:22s} {f(v,1):>9s} {f(q,3):>6s}  {'slowest':11s} {'>= 3000/s and >= slowest pure':30s} {ok}")
for key in ("filter-eq", "list-page", "group-add-members", "group-get", "group-remove-member"):
    print(f"{key:22s} {f(med(key),1):>9s}")
print(f"{'pgbench -N (tps)':22s} {f(med('-N'),1):>9s}\n{'pgbench -S (tps)':22s} {f(med('-S'),1):>9s}")
print(f"{'slowest pure':22s} {f(med('slowest'),1):>9s}")
for r, d in enumerate(R, 1):
    print(f"round {r}:", " ".join(f"{k} {d[k]:.0f}" for k in ("-N", "-S", "seed", "patch", "put", "get-by-id", "mixed", "mixed-before") if k in d))
PY
