#!/usr/bin/env python3
"""Helpers of bench/events.sh (standard library only; the push receiver is bench/receiver.rs).

  events.py pace URL TOKEN RATE SECONDS   POST /Users at RATE a second for SECONDS (8 threads,
                                          keep-alive); prints the rate reached
  events.py bulk URL TOKEN COUNT          creates COUNT users by Bulk requests of 1,000 operations
  events.py drain URL TOKEN COUNT         polls a poll stream until COUNT SETs were received
                                          and acknowledged (maxEvents 1000)
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def connection(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60), u.path.rstrip("/")


def pace(url, token, rate, seconds):
    rate, seconds, threads = float(rate), float(seconds), 8
    done = [0]
    lock = threading.Lock()
    start = time.time() + 0.5
    run = str(int(start))

    def worker(k):
        conn, base = connection(url)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}
        i = 0
        while True:
            due = start + (i * threads + k) / rate
            if due > start + seconds:
                return
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            body = json.dumps({"userName": f"paced-{run}-{k}-{i}"})
            conn.request("POST", f"{base}/Users", body, headers)
            r = conn.getresponse()
            r.read()
            if r.status == 201:
                with lock:
                    done[0] += 1
            i += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(json.dumps({"created": done[0], "rate": round(done[0] / (time.time() - start), 1)}))


def bulk(url, token, count):
    conn, base = connection(url)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}
    run, made, n = str(int(time.time())), 0, int(count)
    while made < n:
        ops = [{"method": "POST", "path": "/Users", "bulkId": f"b{i}",
                "data": {"userName": f"backlog-{run}-{made + i}"}} for i in range(min(1000, n - made))]
        conn.request("POST", f"{base}/Bulk", json.dumps(
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}), headers)
        r = conn.getresponse()
        answer = json.loads(r.read())
        made += sum(1 for op in answer.get("Operations", []) if op.get("status") == "201")
    print(json.dumps({"created": made}))


def drain(url, token, count):
    conn, path = connection(url)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    got, ack, n = 0, [], int(count)
    while got < n:
        conn.request("POST", path, json.dumps({"ack": ack, "maxEvents": 1000, "returnImmediately": True}), headers)
        r = conn.getresponse()
        answer = json.loads(r.read())
        ack = list(answer["sets"])
        got += len(ack)
    conn.request("POST", path, json.dumps({"ack": ack, "maxEvents": 0, "returnImmediately": True}), headers)
    conn.getresponse().read()
    print(json.dumps({"received": got}))


if __name__ == "__main__":
    {"pace": pace, "bulk": bulk, "drain": drain}[sys.argv[1]](*sys.argv[2:])
