#!/usr/bin/env bash
# A/B runs: one wrk script against a fresh copy of a store, for comparing two builds on the same data.
# Usage: SRC=/path/to/data-dir bench/ab.sh BINARY SCRIPT.lua [ROUNDS]   (wrk env such as MODE, IDS_FILE
# or PATHS_FILE passes through; WRK_THREADS as in lib.sh; prints the requests/s of each 6-second round)
set -euo pipefail
BIN=$1; LUA=$2; R=${3:-3}; SRC=${SRC:?set SRC to a data directory to copy}; PORT=${PORT:-18200}
WORK=$(mktemp -d); trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
cp "$SRC"/* "$WORK"/
"$BIN" --listen 127.0.0.1:$PORT --data-dir "$WORK" > "$WORK/log" 2>&1 & PID=$!
until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.1; done
CREDS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["client_id"]+":"+d["client_secret"])' "$WORK/bootstrap-client.json")
export TOKEN=$(curl -s -u "$CREDS" -d grant_type=client_credentials http://127.0.0.1:$PORT/oauth/token \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for i in $(seq "$R"); do
  wrk -t${WRK_THREADS:-1} -c32 -d6s -s "$LUA" http://127.0.0.1:$PORT | awk '/Requests\/sec/ {printf "%s ", $2}'
done
echo
