#!/usr/bin/env bash
# Bulk vs single POSTs (issue 7): N user creates as one POST /Bulk, against the
# same N creates as single POSTs sent one after another over one keep-alive
# connection (python http.client). Each round uses a fresh data directory;
# the median of ROUNDS runs of each is reported with the ratio.
# Usage: bench/bulk.sh   (needs a release build: cargo build --release -p scimd)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; N=${N:-1000}; PORT=${PORT:-18190}
OUT=bench/out; mkdir -p $OUT
python3 - "$ROUNDS" "$N" "$PORT" <<'PY'
import http.client, json, os, shutil, statistics, subprocess, sys, tempfile, time, base64
rounds, n, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def start():
    data = tempfile.mkdtemp()
    log = open("bench/out/bulk-server.log", "a")
    proc = subprocess.Popen(["./target/release/scimd", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", data], stdout=log, stderr=log,
                            env={**os.environ, "RUST_LOG": "warn"})
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/readyz")
            if c.getresponse().status == 200: break
        except OSError: time.sleep(0.05)
    boot = json.load(open(os.path.join(data, "bootstrap-client.json")))
    c = http.client.HTTPConnection("127.0.0.1", port)
    basic = base64.b64encode(f'{boot["client_id"]}:{boot["client_secret"]}'.encode()).decode()
    c.request("POST", "/oauth/token", "grant_type=client_credentials",
              {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
    token = json.loads(c.getresponse().read())["access_token"]
    return proc, data, token

def user(i, tag):
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"{tag}-{i}",
            "name": {"givenName": "Given", "familyName": f"Family{i}"},
            "emails": [{"value": f"{tag}-{i}@example.com", "primary": True}], "active": True}

def singles(token):
    c = http.client.HTTPConnection("127.0.0.1", port)
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    t = time.perf_counter()
    for i in range(n):
        c.request("POST", "/scim/v2/Users", json.dumps(user(i, "single")), h)
        r = c.getresponse(); r.read()
        assert r.status == 201, r.status
    return time.perf_counter() - t

def bulk(token):
    body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                       "Operations": [{"method": "POST", "path": "/Users", "bulkId": f"b{i}",
                                       "data": user(i, "bulk")} for i in range(n)]})
    c = http.client.HTTPConnection("127.0.0.1", port)
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    t = time.perf_counter()
    c.request("POST", "/scim/v2/Bulk", body, h)
    r = c.getresponse(); out = json.loads(r.read())
    took = time.perf_counter() - t
    assert r.status == 200 and all(o["status"] == "201" for o in out["Operations"]), out["Operations"][:3]
    return took

results = {"single": [], "bulk": []}
for _ in range(rounds):
    for kind, fn in (("single", singles), ("bulk", bulk)):
        proc, data, token = start()
        try:
            results[kind].append(fn(token))
        finally:
            proc.terminate(); proc.wait(); shutil.rmtree(data, ignore_errors=True)
s, b = statistics.median(results["single"]), statistics.median(results["bulk"])
print(f"{n} single POSTs (one connection): median {s:.3f} s  runs {[round(x, 3) for x in results['single']]}")
print(f"1 Bulk of {n} POSTs:               median {b:.3f} s  runs {[round(x, 3) for x in results['bulk']]}")
print(f"ratio single/bulk: {s / b:.1f}x")
PY
