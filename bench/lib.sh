# Shared by the benchmark scripts (sourced): start scimd, get tokens, seed users, run wrk rounds.
# Expects OUT, PORT, ROUNDS, DUR; `start_scimd ARGS...` sets PID and URL.

start_scimd() {
  ./target/release/scimd --listen 127.0.0.1:$PORT "$@" >$OUT/server.log 2>&1 &
  PID=$!; trap 'kill $PID 2>/dev/null' EXIT
  until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.1; done
  URL=http://127.0.0.1:$PORT
}

# serve_scimd DATA LOG ARGS...: scimd on $PORT over the data directory DATA (log in LOG, extra serve
# ARGS), once it answers and has written its bundled client; sets SCIMD_PID (the caller stops it).
serve_scimd() {
  local data=$1 log=$2; shift 2
  ${SCIMD_BIN:-./target/release/scimd} serve --listen 127.0.0.1:$PORT --data-dir "$data" --token-lifetime-secs 7200 \
    "$@" > "$log" 2>&1 &
  SCIMD_PID=$!
  until curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && [ -s "$data/bootstrap-client.json" ]; do
    kill -0 $SCIMD_PID 2>/dev/null || { echo "scimd exited, see $log" >&2; return 1; }
    sleep 0.1
  done
}

# CREDS="id:secret" of the bundled client of data directory $1.
bootstrap_creds() {
  CREDS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["client_id"]+":"+d["client_secret"])' "$1/bootstrap-client.json")
}

token() {
  curl -s -u "$CREDS" -d grant_type=client_credentials $URL/oauth/token \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

user_count() {
  curl -s -H "Authorization: Bearer $TOKEN" "$URL/scim/v2/Users?count=0" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])'
}

# Creates users with bench/post.lua until there are at least $1.
seed_users() {
  while [ "$(user_count)" -lt "$1" ]; do
    wrk -t2 -c32 -d10s -s bench/post.lua $URL >/dev/null
    export TOKEN=$(token)  # seeding can outlast a token
  done
}

# wrk's threads (WRK_THREADS, default 1). wrk shares the machine's two cores with scimd, and one
# thread drives as many requests as two on the cheapest route (22,000-27,000/s here) while taking
# less CPU from the server; measured in docs/benchmarks.md (session of 2026-11-24, fourth).
WRK_THREADS=${WRK_THREADS:-1}

# run_wrk NAME CONNECTIONS WRK-ARGS...: ROUNDS runs against $URL, then their medians.
run_wrk() {
  local name=$1 conn=$2; shift 2
  for r in $(seq $ROUNDS); do
    wrk -t$(( conn < WRK_THREADS ? conn : WRK_THREADS )) -c$conn -d$DUR --latency "$@" $URL > $OUT/$name.$r.txt
  done
  python3 bench/summary.py "$name" $(for r in $(seq $ROUNDS); do echo $OUT/$name.$r.txt; done)
}

# start_receiver PORT: the push receiver bench/receiver.rs (built here with rustc when changed) on
# 127.0.0.1:PORT; sets RECEIVER_PID (the caller stops it) once it answers.
start_receiver() {
  local bin=target/bench-receiver
  [ "$bin" -nt bench/receiver.rs ] || { mkdir -p target; rustc -O --edition 2021 -o $bin bench/receiver.rs; }
  $bin "$1" & RECEIVER_PID=$!
  until curl -sf http://127.0.0.1:$1/count >/dev/null; do sleep 0.1; done
}
