#!/usr/bin/env bash
# PATCH benchmark (issue 4): single-attribute PATCH of users at 32 connections, and adding or
# removing one member in a group of BIG members (default 100,000) against a group of 100.
# Needs a store with at least BIG + 1,000 users: pass the data directory of bench/query.sh
# (DATA=/path bench/patch.sh) or let it seed. Medians of ROUNDS runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-8s}; CONN=${CONN:-32}; PORT=${PORT:-18092}; BIG=${BIG:-100000}
OUT=bench/out/patch; mkdir -p $OUT; DATA=${DATA:-$(mktemp -d)}
. bench/lib.sh
start_scimd --data-dir "$DATA"
bootstrap_creds "$DATA"
export TOKEN=$(token)
seed_users $((BIG + 1000))
if [ "${ONLY:-}" = attr ]; then
  python3 - "$URL" "$OUT" <<'PY'
import json, os, sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url + "/scim/v2/Users?count=1000&attributes=userName",
    headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
open(out + "/ids.txt", "w").write("".join(f"{r['id']} {r['userName']}\n" for r in json.load(urllib.request.urlopen(req))["Resources"]))
PY
fi
# Groups: BIG members (users 1..BIG), 100 members; MEMBERS_FILE: the 1,000 users in neither.
[ "${ONLY:-}" = attr ] || python3 - "$URL" "$OUT" "$BIG" <<'PY'
import json, os, sys, urllib.request, urllib.parse
url, out, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = os.environ["TOKEN"]
def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": "Bearer " + tok, "Content-Type": "application/scim+json"})
    return json.load(urllib.request.urlopen(req))
ids, cursor = [], ""
while True:
    page = call("GET", "/scim/v2/Users?count=1000&attributes=userName&cursor=" + urllib.parse.quote(cursor))
    ids += [(r["id"], r["userName"]) for r in page["Resources"]]
    cursor = page.get("nextCursor")
    if not cursor: break
def group(name, members):
    g = call("POST", "/scim/v2/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})
    for i in range(0, len(members), 1000):
        call("PATCH", "/scim/v2/Groups/" + g["id"] + "?excludedAttributes=members",
             {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
              "Operations": [{"op": "add", "path": "members", "value": [{"value": m} for m, _ in members[i:i + 1000]]}]})
    return g["id"]
big_id = group(f"big-{os.getpid()}", ids[:big])
small_id = group(f"small-{os.getpid()}", ids[:100])
open(out + "/groups.txt", "w").write(f"{big_id} {small_id}\n")
open(out + "/ids.txt", "w").write("".join(f"{i} {n}\n" for i, n in ids[:10000]))
open(out + "/members.txt", "w").write("".join(f"{i}\n" for i, _ in ids[big:big + 1000]))
g = call("GET", f"/scim/v2/Groups/{big_id}?attributes=displayName")
print("groups ready: big", big_id, "small", small_id)
PY
read BIG_ID SMALL_ID < $OUT/groups.txt || true
export TOKEN=$(token)
MODE=attr IDS_FILE=$OUT/ids.txt run_wrk patch_attr $CONN -s bench/patch.lua
[ "${ONLY:-}" = attr ] && exit 0
for g in big small; do
  id=$BIG_ID; [ $g = small ] && id=$SMALL_ID
  MODE=add GROUP=$id MEMBERS_FILE=$OUT/members.txt run_wrk ${g}_add $CONN -s bench/patch.lua
  MODE=remove GROUP=$id MEMBERS_FILE=$OUT/members.txt run_wrk ${g}_remove $CONN -s bench/patch.lua
done
