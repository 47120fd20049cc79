#!/usr/bin/env bash
# Scale benchmark (issue 6) on one store: USERS users (default 1,000,000) and a group of
# GROUP members (default 100,000) imported with `scimd import` from generated NDJSON, then:
# userName eq median latency (1 connection), GET by id median latency, a cursor page of 100
# at depth DEPTH (default 900,000) against the first page, one-member PATCHes of the big
# group (32 connections), and scimd's peak resident memory (VmHWM) for import and serving.
# Usage: DATABASE_URL=postgres://... bench/scale.sh   (default: SQLite in a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000}; GROUP=${GROUP:-100000}; DEPTH=${DEPTH:-900000}; PORT=${PORT:-18093}
DUR=${DUR:-6s}; ROUNDS=${ROUNDS:-3}
OUT=bench/out/scale; mkdir -p $OUT; DATA=${DATA:-$(mktemp -d)}
STORE=(--data-dir "$DATA"); [ -n "${DATABASE_URL:-}" ] && STORE+=(--database-url "$DATABASE_URL")
BIN=./target/release/scimd

if [ ! -f $OUT/users-$USERS.ndjson ]; then
  python3 - "$USERS" "$GROUP" > $OUT/users-$USERS.ndjson <<'PY'
import json, sys, uuid
n, g = int(sys.argv[1]), int(sys.argv[2])
w = sys.stdout.write
w(json.dumps({"scimd_export": 1, "resources": n + 1}) + "\n")
t = "2026-11-23T00:00:00.000Z"
ids = []
for i in range(n):
    rid = str(uuid.UUID(int=i + 1))
    if i < g: ids.append(rid)
    w(json.dumps({"resource": {"resourceType": "User", "id": rid, "version": 1, "created": t, "modified": t,
        "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"user{i:07d}",
                 "name": {"givenName": "Given", "familyName": f"Family{i % 5000}"},
                 "emails": [{"value": f"user{i:07d}@example.com", "type": "work", "primary": True}],
                 "active": True}}}) + "\n")
gid = str(uuid.UUID(int=n + 1))
w(json.dumps({"resource": {"resourceType": "Group", "id": gid, "version": 1, "created": t, "modified": t,
    "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "everyone-big"}}}) + "\n")
w(json.dumps({"members": {"resourceType": "Group", "id": gid, "members": [{"value": m, "type": "User", "display": None} for m in ids]}}) + "\n")
PY
fi
if [ -z "${SKIP_IMPORT:-}" ]; then
  echo "import of $USERS users and a group of $GROUP:"
  /usr/bin/time -f "import: %e s, peak RSS %M KiB" $BIN import -q -f $OUT/users-$USERS.ndjson "${STORE[@]}" 2>&1 | grep -E "import:|rror"
fi

. bench/lib.sh
start_scimd "${STORE[@]}"
# A store that came from an import has no bootstrap file here: make a client for the benchmark.
CRED=$($BIN client create bench-$$-$RANDOM "${STORE[@]}")
CREDS=$(echo "$CRED" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["client_id"]+":"+d["client_secret"])')
export TOKEN=$(token)

python3 - "$URL" "$OUT" "$USERS" "$GROUP" "$DEPTH" <<'PY'
import json, os, random, sys, time, urllib.request, urllib.parse, uuid
url, out, n, g, depth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tok = os.environ["TOKEN"]
def get(path):
    return json.load(urllib.request.urlopen(urllib.request.Request(url + path, headers={"Authorization": "Bearer " + tok})))
random.seed(2)
q = lambda f: "/scim/v2/Users?filter=" + urllib.parse.quote(f)
open(out + "/eq.txt", "w").write("".join(q(f'userName eq "user{random.randrange(n):07d}"') + "\n" for _ in range(2000)))
open(out + "/byid.txt", "w").write("".join(f"/scim/v2/Users/{uuid.UUID(int=random.randrange(n) + 1)}\n" for _ in range(2000)))
t = time.time(); cursor, seen = "", 0
while seen < depth:
    page = get("/scim/v2/Users?count=1000&attributes=id&cursor=" + urllib.parse.quote(cursor))
    seen += len(page["Resources"]); cursor = page["nextCursor"]
print(f"walked to depth {seen} in {time.time() - t:.0f} s")
open(out + "/first.txt", "w").write("/scim/v2/Users?count=100&cursor=\n")
open(out + "/deep.txt", "w").write("/scim/v2/Users?count=100&cursor=" + urllib.parse.quote(cursor) + "\n")
open(out + "/members.txt", "w").write("".join(f"{uuid.UUID(int=i + 1)}\n" for i in range(g, min(n, g + 1000))))
open(out + "/group.txt", "w").write(str(uuid.UUID(int=n + 1)))
PY
for q in eq byid first deep; do PATHS_FILE=$OUT/$q.txt run_wrk $q 1 -s bench/paths.lua; done
for op in add remove; do
  MODE=$op GROUP=$(cat $OUT/group.txt) MEMBERS_FILE=$OUT/members.txt run_wrk group_$op 32 -s bench/patch.lua
done
echo "scimd serving: peak RSS $(grep VmHWM /proc/$PID/status | awk '{print $2}') KiB"
