#!/usr/bin/env python3
"""A stand-in for the admin listener, to work on the status page without the gateway: serves
Sources/Admin/StatusPage/status-page.html at `/` (read again on each request), `/status.json` and
a fake `/status/events` feed of StatusReports (Sources/Admin/StatusReport.swift) with 1,000 made-up
streams, `top` and `filter` applied. Not a test.

    python3 Tests/e2e/status_mock.py [--port=8099] [--streams=1000]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PAGE = Path(__file__).resolve().parents[2] / "Sources/Admin/StatusPage/status-page.html"
START = time.time()
ORIGINS = ["http://10.0.0.5:3000", "http://10.0.0.6:3000", "https://feeds.internal:8443"]
ERRORS = ["connection refused (ECONNREFUSED) to 10.0.0.6:3000",
          "origin answered 502 Bad Gateway",
          "read timed out after 45 s of silence (no heartbeat from the origin)",
          "TLS: certificate verify failed: unable to get local issuer certificate"]


class Fake:
    """The made-up gateway: streams whose figures drift a little each second."""

    def __init__(self, n: int, seed: int = 7):
        rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.streams = []
        for i in range(n):
            kind = rnd.choice(["prices", "orders", "chat/room", "notifications/user", "builds", "metrics"])
            path = f"/events/{kind}/{i}" + ("?token=…" if rnd.random() < 0.2 else "")
            subs = max(1, int(rnd.paretovariate(1.1))) if rnd.random() < 0.97 else rnd.randint(200, 2400)
            rate = rnd.choice([0.2, 1, 2, 5, 10, 40]) * rnd.uniform(0.6, 1.4)
            state = rnd.choices(["connected", "reconnecting", "connecting", "ended"], [92, 4, 2, 2])[0]
            self.streams.append({
                "id": f"s{i:05x}", "path": path, "origin": rnd.choice(ORIGINS), "shared": rnd.random() < 0.95,
                "subscribers": subs, "ageSeconds": rnd.uniform(5, 90_000), "rate": rate,
                "upstream": {"state": state, "sinceSeconds": rnd.uniform(1, 5000), "reconnects": rnd.choice([0, 0, 0, 1, 2, 7])},
                "lastError": rnd.choice(ERRORS) if state != "connected" or rnd.random() < 0.05 else None,
                "received": rnd.randint(0, 2_000_000), "history": [rate * rnd.uniform(0.5, 1.5) for _ in range(60)],
                "maxEvents": 1000, "maxBytes": 1 << 20, "maxAgeSeconds": 300.0,
            })
        self.recent = [
            {"at": START - 40, "kind": "origin_down", "stream": "/events/builds/17", "detail": "connection reset by peer; reconnecting in 1.2 s", "count": 1},
            {"at": START - 30, "kind": "origin_up", "stream": "/events/builds/17", "detail": "reconnected after 1 attempt, resumed from id 88231", "count": 1},
            {"at": START - 12, "kind": "slow_client", "stream": "/events/prices/3", "detail": "client 10.1.4.22 fell 4,096 events behind and was cut", "count": 3},
            {"at": START - 5, "kind": "refused", "stream": None, "detail": "--max-connections=10000 reached", "count": 12},
            {"at": START - 2, "kind": "origin_ended", "stream": "/events/orders/42", "detail": "origin answered 204 No Content: stream ended", "count": 1},
        ]
        self.totals = {"eventsReceived": 8_123_456, "eventsSent": 912_345_678, "heartbeatsSent": 1_234_567,
                       "bytesSent": 91_234_567_890}

    def tick(self) -> None:
        with self.lock:
            t = time.time()
            for s in self.streams:
                v = max(0.0, s["rate"] * (1 + 0.5 * math.sin(t / 7 + hash(s["id"]) % 10)) * random.uniform(0.7, 1.3))
                s["history"] = (s["history"] + [v])[-60:]
                s["received"] += int(v)

    def report(self, top: int, flt: str) -> dict:
        with self.lock:
            now = time.time()
            up = now - START + 3 * 86400 + 4000
            f = flt.lower()
            matching = [s for s in self.streams if f in s["path"].lower()]
            matching.sort(key=lambda s: -s["subscribers"])
            subs = sum(s["subscribers"] for s in self.streams)
            rin = sum(s["history"][-1] for s in self.streams)
            rout = sum(s["history"][-1] * s["subscribers"] for s in self.streams)
            elapsed = now - START
            return {
                "at": now,
                "process": {"version": "0.9.0-dev", "pid": os.getpid(), "uptimeSeconds": up, "residentBytes": 412_345_678,
                            "openFiles": 12_408, "maxFiles": 1_048_576, "cpuSeconds": 8123.4 + elapsed * 0.4, "threads": 4,
                            "state": "ready"},
                "connections": {"http1": 7_010, "http1TLS": 3_204, "h2": 12, "h2TLS": 1_877, "total": 12_103},
                "subscribers": subs,
                "totals": {**{k: v + int(elapsed * rin) for k, v in self.totals.items() if k == "eventsReceived"},
                           "eventsSent": self.totals["eventsSent"] + int(elapsed * rout),
                           "heartbeatsSent": self.totals["heartbeatsSent"] + int(elapsed * 800),
                           "bytesSent": self.totals["bytesSent"] + int(elapsed * rout * 90),
                           "replayHits": 5_123, "replayMisses": 17, "upstreamReconnects": 231,
                           "slowClientDisconnects": 3, "requestsRefused": 12, "tlsHandshakeFailures": 0,
                           "eventsReceivedPerSecond": rin, "eventsSentPerSecond": rout, "bytesSentPerSecond": rout * 90},
                "streamCount": len(self.streams),
                "upstreamConnected": sum(1 for s in self.streams if s["upstream"]["state"] == "connected"),
                "filter": flt, "top": top, "matching": len(matching),
                "streams": [self._stream(s) for s in matching[:top]],
                "recent": self.recent,
            }

    @staticmethod
    def _stream(s: dict) -> dict:
        r = s["history"][-1]
        events = min(s["maxEvents"], int(r * min(300.0, s["ageSeconds"] % 400)))
        upstream = dict(s["upstream"])
        if s["lastError"]:
            upstream["lastError"] = s["lastError"]  # Swift's JSONEncoder leaves a nil optional out
        return {
            "id": s["id"], "path": s["path"], "origin": s["origin"], "shared": s["shared"],
            "subscribers": s["subscribers"], "ageSeconds": s["ageSeconds"] + time.time() - START,
            "upstream": upstream,
            "events": {"received": s["received"], "sent": s["received"] * s["subscribers"],
                       "receivedPerSecond": r, "sentPerSecond": r * s["subscribers"], "history": s["history"]},
            "replay": {"events": events, "bytes": events * 180, "ageSeconds": min(300.0, events / max(r, 0.01)),
                       "maxEvents": s["maxEvents"], "maxBytes": s["maxBytes"], "maxAgeSeconds": s["maxAgeSeconds"]},
        }


def make_handler(fake: Fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _query(self) -> tuple[int, str]:
            q = parse_qs(urlsplit(self.path).query)
            try:
                top = max(0, min(1000, int(q.get("top", ["50"])[0])))
            except ValueError:
                top = 50
            return top, q.get("filter", [""])[0]

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/":
                return self._send(200, "text/html; charset=utf-8", PAGE.read_bytes())
            if path == "/status.json":
                return self._send(200, "application/json", json.dumps(fake.report(*self._query())).encode())
            if path == "/status/events":
                top, flt = self._query()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    while True:
                        self.wfile.write(b"data: " + json.dumps(fake.report(top, flt)).encode() + b"\n\n")
                        self.wfile.flush()
                        time.sleep(1)
                except (BrokenPipeError, ConnectionResetError):
                    return
            return self._send(404, "text/plain", b"not found\n")

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--streams", type=int, default=1000)
    args = ap.parse_args()
    fake = Fake(args.streams)

    def ticker():
        while True:
            time.sleep(1)
            fake.tick()

    threading.Thread(target=ticker, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(fake))
    server.daemon_threads = True
    print(f"status mock listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
