#!/usr/bin/env bash
# Load benchmark of scimd on loopback (issue 2): seeds 10,000 users, then measures
# POST, GET by id, a list page of 100, PUT, and the ServiceProviderConfig route as the
# ceiling of the HTTP stack (same router, middleware and JSON path, no store).
# Each measurement runs ROUNDS times; the median requests/s and p99 are printed.
# OAuth (issue 5): every request carries a bearer token of the bundled client; GET by id
# is measured again in BYPASS mode in the same run (ratio reported), and /oauth/token
# is measured with HTTP Basic client authentication.
# Usage: bench/run.sh   (needs wrk and a release build: cargo build --release)
# ONLY=auth runs just the OAuth measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-8s}; CONN=${CONN:-32}; PORT=${PORT:-18090}
OUT=bench/out; mkdir -p $OUT; DATA=$(mktemp -d)
./target/release/scimd --listen 127.0.0.1:$PORT --data-dir "$DATA" >$OUT/server.log 2>&1 &
PID=$!; trap 'kill $PID 2>/dev/null; rm -rf "$DATA"' EXIT
until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.1; done
URL=http://127.0.0.1:$PORT
export RUST_LOG=warn
CID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$DATA/bootstrap-client.json")
CSECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$DATA/bootstrap-client.json")
export BASIC=$(printf '%s:%s' "$CID" "$CSECRET" | base64 -w0)
export TOKEN=$(curl -s -u "$CID:$CSECRET" -d grant_type=client_credentials $URL/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
AUTH="Authorization: Bearer $TOKEN"

WRK_THREADS=${WRK_THREADS:-1}  # as in bench/lib.sh
run() { # name, wrk args...
  local name=$1; shift
  for r in $(seq $ROUNDS); do
    wrk -t$WRK_THREADS -c$CONN -d$DUR --latency "$@" > $OUT/$name.$r.txt
  done
  python3 - "$name" $OUT/$name.*.txt <<'PY'
import re, sys, statistics
name, files = sys.argv[1], sys.argv[2:]
rps, p99 = [], []
for f in files:
    t = open(f).read()
    rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    v = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    p99.append(v)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    if non2xx: print(f"  WARNING {f}: {non2xx.group(1)} non-2xx responses")
print(f"{name:10s} median {statistics.median(rps):10.0f} req/s   p99 median {statistics.median(p99):7.2f} ms   runs {[round(x) for x in rps]}")
PY
}

# Seed to 10,000 users (also a POST measurement of its own).
if [ "${ONLY:-}" != auth ]; then run post -s bench/post.lua $URL; fi
total=$(curl -s -H "$AUTH" "$URL/scim/v2/Users?count=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])')
SEED=${SEED:-10000}
if [ "$total" -lt $SEED ]; then
  python3 - "$URL" $((SEED - total)) <<'PY'
import json, os, sys, urllib.request, concurrent.futures
url, n = sys.argv[1], int(sys.argv[2])
def mk(i):
    body = json.dumps({"userName": f"seed-{i}"}).encode()
    req = urllib.request.Request(url + "/scim/v2/Users", body, {"Content-Type": "application/scim+json",
        "Authorization": "Bearer " + os.environ["TOKEN"]})
    urllib.request.urlopen(req).read()
with concurrent.futures.ThreadPoolExecutor(16) as ex: list(ex.map(mk, range(n)))
PY
fi
curl -s -H "$AUTH" "$URL/scim/v2/Users?count=1000&attributes=userName" | python3 -c '
import json,sys
for r in json.load(sys.stdin)["Resources"]: print(r["id"], r["userName"])' > $OUT/ids.txt
echo "users in store: $(curl -s -H "$AUTH" "$URL/scim/v2/Users?count=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])')"
export IDS_FILE=$OUT/ids.txt
if [ "${ONLY:-}" = auth ]; then
  MODE=get run get_oauth -s bench/ids.lua $URL
  ./target/release/scimd protection set bypass --data-dir "$DATA" >/dev/null 2>&1
  until [ "$(curl -s -o /dev/null -w '%{http_code}' $URL/scim/v2/Users?count=0)" = 200 ]; do sleep 0.2; done
  MODE=get TOKEN= run get_bypass -s bench/ids.lua $URL
  ./target/release/scimd protection set oauth --data-dir "$DATA" >/dev/null 2>&1
  until [ "$(curl -s -o /dev/null -w '%{http_code}' $URL/scim/v2/Users?count=0)" = 401 ]; do sleep 0.2; done
  run token -s bench/token.lua $URL
  exit 0
fi
run ceiling $URL/scim/v2/ServiceProviderConfig
MODE=get run get -s bench/ids.lua $URL
MODE=page run page -s bench/ids.lua $URL
MODE=put run put -s bench/ids.lua $URL
