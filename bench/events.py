#!/usr/bin/env python3
"""Helpers of bench/events.sh (standard library only).

  events.py receive PORT                  a push receiver on 127.0.0.1:PORT (POST /events -> 202);
                                          GET /stats answers {count, distinct, p50_ms, p99_ms, max_ms}
                                          of (arrival - toe) over the SETs received since GET /reset
                                          (decoded then), GET /count {count} alone
  events.py pace URL TOKEN RATE SECONDS   POST /Users at RATE a second for SECONDS (8 threads,
                                          keep-alive); prints the rate reached
  events.py bulk URL TOKEN COUNT          creates COUNT users by Bulk requests of 1,000 operations
  events.py drain URL TOKEN COUNT         polls a poll stream until COUNT SETs were received
                                          and acknowledged (maxEvents 1000)
"""
import base64
import http.client
import json
import sys
import threading
import time
import urllib.parse


def claims(set_token):
    payload = set_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock"):
            self.received = []

    def add(self, set_token, arrived):
        # Kept as they came and decoded when asked for: the receiver's CPU
        # during a measurement is the same two cores' as scimd's.
        with self.lock:
            self.received.append((set_token, arrived))

    def summary(self):
        with self.lock:
            decoded = [(claims(t), arrived) for t, arrived in self.received]
            self.count = len(decoded)
            self.jtis = {c["jti"] for c, _ in decoded}
            self.latencies = [(arrived - float(c["toe"])) * 1000.0 for c, arrived in decoded]
            xs = sorted(self.latencies)
            pick = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None
            return {"count": self.count, "distinct": len(self.jtis), "p50_ms": pick(0.5),
                    "p99_ms": pick(0.99), "max_ms": round(xs[-1], 1) if xs else None}


def receive(port):
    """A push receiver that costs the machine little: HTTP/1.1 keep-alive parsed by
    hand on asyncio (the standard library's http.server took a core at a few
    thousand SETs a second, from the two that scimd runs on)."""
    import asyncio
    stats = Stats()
    accepted = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"

    class Receiver(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4:end + 4 + length]
                self.buffer = self.buffer[end + 4 + length:]
                request = head.split(" ", 2)
                if request[0] == "POST":
                    stats.add(body.decode(), time.time())
                    self.transport.write(accepted)
                else:
                    if request[1] == "/reset":
                        stats.reset()
                    if request[1] == "/count":
                        out = json.dumps({"count": len(stats.received)}).encode()
                    else:
                        out = json.dumps(stats.summary()).encode()
                    self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                         b"content-length: %d\r\n\r\n%s" % (len(out), out))

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Receiver, "127.0.0.1", int(port)))
    loop.run_until_complete(server.serve_forever())


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
    {"receive": receive, "pace": pace, "bulk": bulk, "drain": drain}[sys.argv[1]](*sys.argv[2:])
