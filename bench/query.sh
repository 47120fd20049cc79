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
. bench/lib.sh
start_scimd --data-dir "$DATA"
bootstrap_creds "$DATA"
export TOKEN=$(token)
[ -n "${SKIP_SEED:-}" ] || seed_users "$USERS"
echo "users in store: $(user_count)"

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

export TOKEN=$(token)
for q in username:$CONN email:$CONN familysw:1 cursor_first:1 cursor_deep:1; do
  PATHS_FILE=$OUT/${q%%:*}.txt run_wrk ${q%%:*} ${q##*:} -s bench/paths.lua
done
