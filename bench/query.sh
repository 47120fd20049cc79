#!/usr/bin/env bash
# Query benchmark (issue 3) with USERS users (default 100,000) in SQLite: userName eq and
# emails.value eq (req/s at 32 connections), name.familyName sw returning a page of 100
# (median latency), and a cursor page at depth 90,000 against the first page (median
# latency ratio). Each measurement runs ROUNDS times; medians are printed.
# Usage: bench/query.sh   (needs wrk and a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-8s}; CONN=${CONN:-32}; PORT=${PORT:-18091}; USERS=${USERS:-100000}
OUT=bench/out/query; mkdir -p $OUT; DATA=${DATA:-$(mktemp -d)}
./target/release/scimd --listen 127.0.0.1:$PORT --data-dir "$DATA" >$OUT/server.log 2>&1 &
PID=$!; trap 'kill $PID 2>/dev/null' EXIT
until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.1; done
URL=http://127.0.0.1:$PORT
creds=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["client_id"]+":"+d["client_secret"])' "$DATA/bootstrap-client.json")
token() { curl -s -u "$creds" -d grant_type=client_credentials $URL/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
export TOKEN=$(token)
count() { curl -s -H "Authorization: Bearer $TOKEN" "$URL/scim/v2/Users?count=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])'; }
SKIP_SEED=${SKIP_SEED:-}
while [ -z "$SKIP_SEED" ] && [ "$(count)" -lt "$USERS" ]; do
  wrk -t2 -c32 -d10s -s bench/post.lua $URL >/dev/null
  export TOKEN=$(token)
done
echo "users in store: $(count)"

# Paths: real userNames and emails from a cursor walk; family name prefixes; the cursor at depth 90,000.
python3 - "$URL" "$OUT" <<'PY'
import json, os, random, sys, urllib.request, urllib.parse
url, out = sys.argv[1], sys.argv[2]
tok = os.environ["TOKEN"]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + tok})
    return json.load(urllib.request.urlopen(req))
names, emails, cursor, depth, deep = [], [], "", 0, None
while True:
    page = get("/scim/v2/Users?count=1000&attributes=userName,emails&cursor=" + urllib.parse.quote(cursor))
    for r in page["Resources"]:
        names.append(r["userName"]); emails.append(r.get("emails", [{}])[0].get("value"))
    depth += len(page["Resources"])
    cursor = page.get("nextCursor")
    if depth >= 90000 and deep is None: deep = cursor
    if not cursor: break
q = lambda f: "/scim/v2/Users?filter=" + urllib.parse.quote(f)
random.seed(1)
with open(out + "/username.txt", "w") as f:
    for n in random.sample(names, 2000): f.write(q(f'userName eq "{n}"') + "\n")
with open(out + "/email.txt", "w") as f:
    for e in random.sample([e for e in emails if e], 2000): f.write(q(f'emails.value eq "{e}"') + "\n")
with open(out + "/familysw.txt", "w") as f:
    for i in range(1, 100): f.write(q(f'name.familyName sw "User{i}"') + "&count=100\n")
with open(out + "/cursor_first.txt", "w") as f: f.write("/scim/v2/Users?count=100&cursor=\n")
with open(out + "/cursor_deep.txt", "w") as f:
    f.write("/scim/v2/Users?count=100&cursor=" + urllib.parse.quote(deep or "") + "\n")
print("walked", depth, "users; deep cursor:", bool(deep))
PY

run() { # name, connections
  local name=$1 conn=$2
  for r in $(seq $ROUNDS); do
    PATHS_FILE=$OUT/$name.txt wrk -t$(( conn < 2 ? 1 : 2 )) -c$conn -d$DUR --latency -s bench/paths.lua $URL > $OUT/$name.$r.txt
  done
  python3 - "$name" $OUT/$name.*.txt <<'PY'
import re, sys, statistics
name, files = sys.argv[1], sys.argv[2:]
def ms(t, pct):
    m = re.search(pct + r"%\s+([\d.]+)(us|ms|s)", t)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
rps = [float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1)) for f in files]
p50 = [ms(open(f).read(), "50") for f in files]
for f in files:
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", open(f).read())
    if m: print(f"  WARNING {f}: {m.group(1)} non-2xx responses")
print(f"{name:14s} median {statistics.median(rps):9.0f} req/s   median latency {statistics.median(p50):7.2f} ms   runs {[round(x) for x in rps]}")
PY
}
export TOKEN=$(token)
run username $CONN
run email $CONN
run familysw 1
run cursor_first 1
run cursor_deep 1
