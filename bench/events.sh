#!/usr/bin/env bash
# The cost of the change log and of SCIM Events, on both stores, in one run (issue 18):
#  1. write throughput, paired: each round runs scimd on fresh stores, "off" (change_log = false,
#     no stream) and "on" (the change log and one push stream to a receiver on this machine,
#     bench/receiver.rs), in alternating order, through the peer harness as is
#     (../shared/peer-bench/scim-load.sh), twice per mode: SCENARIOS=patch (the seed's POSTs and
#     PATCH) and SCENARIOS=group (its own seed, then group-add-members), each kind of write measured
#     with the stream caught up rather than while it delivers the backlog of the scenario before
#     (push delivery yields the CPU to writes, events_push_nice); prints on/off per scenario,
#     medians over ROUNDS (target >= 0.90);
#  2. delivery latency: creates paced at RATE=1000/s for LATENCY_SECS through a push stream; the
#     receiver takes arrival time - the SET's toe (the change's time, to the millisecond); p50/p99
#     (target p99 < 1 s);
#  3. a backlog (SQLite): BACKLOG=1000000 changes made through a poll stream nobody polls, then
#     drained by a poller (maxEvents 1000, acknowledging each answer) while scimd's resident
#     memory is sampled (target: peak < 200 MB).
# PostgreSQL: a throwaway cluster started here (as bench/pg.sh), unless STORES=sqlite.
# Outputs in bench/out/events. Usage: bench/events.sh  (needs wrk, python3, a release build:
# cargo build --release; PostgreSQL's binaries for the pg store)
# Knobs: ROUNDS=3, STORES="sqlite pg", PHASES="1 2 3", RATE=1000, LATENCY_SECS=20, BACKLOG=1000000,
# PORT=18097, RPORT=18098; SETTLE=6 (scim-load.sh's pause between the seed and the scenario, off and
# on alike: the stream, which yields the CPU to the seed's writes, delivers their backlog meanwhile,
# about 10,000 SETs); N, DURATION,
# ... go to scim-load.sh as they are; QUICK=1: N=2000 DURATION=3
# ROUNDS=1 BACKLOG=20000 LATENCY_SECS=5 (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${QUICK:-}" = 1 ]; then
  export N=${N:-2000} DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-1}; BACKLOG=${BACKLOG:-20000}
  LATENCY_SECS=${LATENCY_SECS:-5}
fi
ROUNDS=${ROUNDS:-3}; STORES=${STORES:-"sqlite pg"}; RATE=${RATE:-1000}; LATENCY_SECS=${LATENCY_SECS:-20}
BACKLOG=${BACKLOG:-1000000}; PORT=${PORT:-18097}; RPORT=${RPORT:-18098}; PHASES=${PHASES:-"1 2 3"}
SETTLE=${SETTLE:-6}
OUT=bench/out/events; mkdir -p $OUT; ROOT=$(mktemp -d /tmp/scimd-bench-events.XXXXXX)
URL=http://127.0.0.1:$PORT; SCIMD_PID=; RECEIVER_PID=; PG_BIN=; PGURL=
. bench/lib.sh   # serve_scimd, bootstrap_creds, token, start_receiver
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$SCIMD_PID" ] && kill $SCIMD_PID 2>/dev/null
  [ -n "$RECEIVER_PID" ] && kill $RECEIVER_PID 2>/dev/null
  [ -n "$PG_BIN" ] && as_pg "$PG_BIN/pg_ctl" -D "$ROOT/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$ROOT"
}
trap cleanup EXIT
! curl -s -o /dev/null $URL/healthz || { echo "port $PORT is in use: set PORT" >&2; exit 2; }

start_receiver $RPORT
RECEIVER=http://127.0.0.1:$RPORT/events

if [[ " $STORES " == *" pg "* ]]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$ROOT/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$ROOT" "$ROOT/pg"
  as_pg "$PG_BIN/initdb" -D "$ROOT/pg" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$ROOT/pg" -l "$ROOT/pg.log" -w -o "-p $PGPORT -k $ROOT \
    -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
  PGURL=postgres://postgres@127.0.0.1:$PGPORT/scimd
fi

# fresh STORE NAME: a new empty store; prints the serve arguments that name it.
fresh() {
  if [ "$1" = pg ]; then
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS scimd WITH (FORCE)' -c 'CREATE DATABASE scimd' >/dev/null
    echo "--database-url $PGURL"
  fi
}

# start STORE MODE TAG: scimd on a fresh store; MODE on adds a push stream to the receiver.
start() {
  local store=$1 mode=$2 tag=$3 data=$ROOT/data-$3 args
  args=$(fresh $store)
  rm -rf "$data"
  if [ "$mode" = off ]; then
    SCIMD_CHANGE_LOG=false serve_scimd "$data" $OUT/server-$tag.log $args
  else
    serve_scimd "$data" $OUT/server-$tag.log $args
    curl -s http://127.0.0.1:$RPORT/reset >/dev/null   # what it keeps until asked for stats
    ./target/release/scimd stream create bench --push $RECEIVER --data-dir "$data" $args >/dev/null
  fi
  SCIMD_PID=$SCIMD_PID DATA=$data ARGS=$args
  bootstrap_creds "$data"; TOKEN=$(token)
}
stop() { kill $SCIMD_PID 2>/dev/null || true; wait $SCIMD_PID 2>/dev/null || true; SCIMD_PID=; }

echo "== 1. write throughput, change log and a push stream on vs off (load $(cut -d' ' -f1-3 /proc/loadavg))"
for store in $STORES; do
  for r in $(seq $ROUNDS); do
    order="off on"; [ $((r % 2)) = 0 ] && order="on off"
    for mode in $order; do
      for part in patch group; do
        echo "-- $store round $r: $mode, $part"
        start $store $mode $store-$r-$mode-$part
        SCENARIOS=$part SERVER_PID=$SCIMD_PID SEED_CONC=32 SETTLE=$SETTLE \
          ../shared/peer-bench/scim-load.sh $URL/scim/v2 "$TOKEN" > $OUT/$store-$r-$mode-$part.txt
        grep -E '^(seed|patch|group-add-members):' $OUT/$store-$r-$mode-$part.txt | sed 's/^/   /'
        stop
      done
    done
  done
done

if [[ " $PHASES " == *" 2 "* ]]; then
echo "== 2. delivery latency at $RATE writes/s for $LATENCY_SECS s"
for store in $STORES; do
  start $store on $store-latency
  curl -s http://127.0.0.1:$RPORT/reset >/dev/null
  python3 bench/events.py pace $URL/scim/v2 "$TOKEN" $RATE $LATENCY_SECS > $OUT/$store-pace.json
  sleep 3
  curl -s http://127.0.0.1:$RPORT/stats > $OUT/$store-latency.json
  echo "   $store: written $(cat $OUT/$store-pace.json), received $(cat $OUT/$store-latency.json)"
  stop
done

fi

if [[ " $PHASES " == *" 3 "* ]]; then
echo "== 3. a backlog of $BACKLOG events drained (SQLite)"
start sqlite on backlog
ADMIN=$TOKEN
STREAM=$(./target/release/scimd stream create backlog --poll --base-url $URL --data-dir "$DATA")
SCOPE=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["scope"])' "$STREAM")
POLL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pollUrl"])' "$STREAM")
./target/release/scimd stream pause bench --data-dir "$DATA" >/dev/null   # the push stream waits
POLLER=$(./target/release/scimd client create poller --scopes "$SCOPE" --data-dir "$DATA")
CREDS=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["client_id"]+":"+d["client_secret"])' "$POLLER")
PTOKEN=$(token)
t0=$(date +%s)
python3 bench/events.py bulk $URL/scim/v2 "$ADMIN" $BACKLOG > $OUT/backlog-bulk.json
t1=$(date +%s)
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$SCIMD_PID/status; }
BEFORE=$(rss); PEAK=$BEFORE
python3 bench/events.py drain $POLL "$PTOKEN" $BACKLOG > $OUT/backlog-drain.json & DRAIN=$!
while kill -0 $DRAIN 2>/dev/null; do m=$(rss); [ "$m" -gt "$PEAK" ] && PEAK=$m; sleep 0.5; done
wait $DRAIN
t2=$(date +%s)
echo "   made in $((t1 - t0)) s ($(cat $OUT/backlog-bulk.json)); drained in $((t2 - t1)) s ($(cat $OUT/backlog-drain.json))"
echo "   scimd resident memory: $BEFORE MB before the drain, peak $PEAK MB during it (target < 200 MB)" | tee $OUT/backlog-rss.txt
stop
fi

python3 - $OUT "$STORES" $ROUNDS <<'PY'
import json, os, re, sys, statistics as st
out, stores, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def rps(prefix):
    """The scenarios' rates of one round and mode: seed and PATCH from the patch run, member
    additions from the group run."""
    found = {}
    for part, names in (("patch", ("seed", "patch")), ("group", ("group-add-members",))):
        text = open(f"{prefix}-{part}.txt").read()
        for m in re.finditer(r"^([\w-]+): ([\d.]+) req/s", text, re.M):
            if m[1] in names:
                found[m[1]] = float(m[2])
    return found
print(f"\nmedians over {rounds} paired round(s): on/off (target >= 0.90)")
for store in stores:
    for name in ("seed", "patch", "group-add-members"):
        ratios, on, off = [], [], []
        for r in range(1, rounds + 1):
            a, b = rps(f"{out}/{store}-{r}-on").get(name), rps(f"{out}/{store}-{r}-off").get(name)
            if a and b:
                on.append(a); off.append(b); ratios.append(a / b)
        if ratios:
            m = st.median(ratios)
            print(f"{store:6s} {name:18s} on {st.median(on):8.0f}/s  off {st.median(off):8.0f}/s  "
                  f"ratio {m:.3f} {'PASS' if m >= 0.9 else 'FAIL'}  rounds {[round(x, 3) for x in ratios]}")
    if not os.path.exists(f"{out}/{store}-latency.json"):
        continue
    lat = json.load(open(f"{out}/{store}-latency.json"))
    p99 = lat.get("p99_ms")
    print(f"{store:6s} delivery latency p50 {lat.get('p50_ms')} ms, p99 {p99} ms, max {lat.get('max_ms')} ms "
          f"({lat['distinct']} SETs) {'PASS' if p99 is not None and p99 < 1000 else 'FAIL'}")
if os.path.exists(f"{out}/backlog-rss.txt"):
    print(open(f"{out}/backlog-rss.txt").read().strip())
PY
