#!/usr/bin/env bash
# One push stream's delivery rate and scimd's CPU per SET (issue 18), on SQLite: COUNT creates made
# (by Bulk) while the stream is paused, then the stream resumed and timed until the receiver
# (bench/receiver.rs) has them all; scimd's and the receiver's CPU time over the drain are read from /proc.
# Usage: bench/push-drain.sh  (a release build; knobs COUNT=30000, PORT=18197, RPORT=18198; PERF=FILE
# records a CPU profile of scimd over the drain with perf)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-30000}; PORT=${PORT:-18197}; RPORT=${RPORT:-18198}; URL=http://127.0.0.1:$PORT
BIN=./target/release/scimd; SCIMD_PID=
. bench/lib.sh   # serve_scimd, bootstrap_creds, token, start_receiver
data=$(mktemp -d /tmp/scimd-push-drain.XXXXXX)
RECEIVER_PID=
trap 'kill $RECEIVER_PID $SCIMD_PID 2>/dev/null; rm -rf "$data"' EXIT
start_receiver $RPORT
serve_scimd "$data/d" "$data/server.log"
$BIN stream create drain --push http://127.0.0.1:$RPORT/events --data-dir "$data/d" >/dev/null
$BIN stream pause drain --data-dir "$data/d" >/dev/null
bootstrap_creds "$data/d"; TOKEN=$(token)
python3 bench/events.py bulk $URL/scim/v2 "$TOKEN" $COUNT >/dev/null
sleep 2
curl -s http://127.0.0.1:$RPORT/reset >/dev/null
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
c0=$(cpu $SCIMD_PID); r0=$(cpu $RECEIVER_PID); t0=$(date +%s.%N)
[ -n "${PERF:-}" ] && { perf record -F 999 -g -o "$PERF" -p $SCIMD_PID 2>/dev/null & PERF_PID=$!; sleep 0.5; }
$BIN stream resume drain --data-dir "$data/d" >/dev/null
until [ "$(curl -s http://127.0.0.1:$RPORT/count | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')" -ge $COUNT ]; do
  sleep 0.2
done
[ -n "${PERF:-}" ] && { kill -INT $PERF_PID; wait $PERF_PID || true; }
t1=$(date +%s.%N); c1=$(cpu $SCIMD_PID); r1=$(cpu $RECEIVER_PID); hz=$(getconf CLK_TCK)
python3 -c "d = $t1 - $t0; cpu = ($c1 - $c0) / $hz; rcpu = ($r1 - $r0) / $hz
print(f'{$COUNT} SETs delivered in {d:.2f} s: {$COUNT / d:.0f}/s; scimd CPU {cpu:.2f} s, {cpu / $COUNT * 1e6:.1f} us a SET;'
      f' receiver CPU {rcpu:.2f} s, {rcpu / $COUNT * 1e6:.1f} us a SET')"
