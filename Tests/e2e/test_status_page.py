"""The admin listener's status page (Sources/Admin/StatusPage/status-page.html, served at `/` of
`--admin-listen`) in Chromium: it follows the gateway live over `/status/events`, without reloading,
as SSE clients come and go; its filter narrows the streams table; and `/status.json` has every field
the page reads (Sources/Admin/StatusReport.swift)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request

from sse_page import Deadline

ADMIN_RE = re.compile(r"admin listening on (http://\S+)")

# What the page reads from the DOM it renders: one entry per stream row, and the header figures.
_VIEW_JS = """() => ({
  rows: [...document.querySelectorAll('#streams tr[data-path]')].map(tr => ({
    path: tr.dataset.path, subscribers: tr.querySelector('td.subs').textContent })),
  subscribers: document.getElementById('subscribers').textContent,
  count: document.getElementById('stream-count').textContent,
  state: document.getElementById('state').dataset.state,
  navigations: performance.getEntriesByType('navigation').length,
  marker: window.__statusMarker || null,
})"""


class SSEClient:
    """One raw HTTP/1.1 SSE subscriber on a thread: reads until closed."""

    def __init__(self, host: str, port: int, path: str):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        self.data = bytearray()
        self.got_event = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
                if b"\r\n\r\n" in self.data and b"\ndata:" in self.data:
                    self.got_event.set()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=2)


def _admin_url(gw, deadline: Deadline) -> str:
    end = time.monotonic() + deadline.left(5)
    while time.monotonic() < end:
        for line in list(gw.stdout_lines):
            if m := ADMIN_RE.search(line):
                return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no 'admin listening on' line; stdout: {gw.stdout_lines}")


def _start(demo_origin, gateway, deadline: Deadline):
    origin = demo_origin(tick="100ms")
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--admin-listen=127.0.0.1:0", "--stream-linger=1s")
    admin = _admin_url(gw, deadline)
    assert admin != gw.url, f"the admin listener shares the gateway's address {gw.url}"
    return gw, admin


def _wait_view(page, predicate, timeout: float, what: str) -> dict:
    end = time.monotonic() + timeout
    view = None
    while True:
        view = page.evaluate(_VIEW_JS)
        if predicate(view):
            return view
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}; the page shows {view}")
        time.sleep(0.1)


def _subs(view: dict) -> dict[str, str]:
    return {r["path"]: r["subscribers"] for r in view["rows"]}


def test_status_page_follows_clients_live(demo_origin, gateway, new_page):
    deadline = Deadline(30)
    gw, admin = _start(demo_origin, gateway, deadline)
    page = new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(f"{admin}/")
    view = _wait_view(page, lambda v: v["state"] == "live" and v["count"], deadline.left(8), "the first report")
    assert view["rows"] == [] and view["subscribers"] == "0", f"no client yet, but the page shows {view}"
    page.evaluate("window.__statusMarker = 'first load'")

    clients = [SSEClient(gw.host, gw.port, p) for p in ("/events", "/events", "/events/b")]
    try:
        for c in clients:
            assert c.got_event.wait(deadline.left(5)), f"an SSE client got no event: {bytes(c.data[:300])!r}"
        view = _wait_view(page, lambda v: _subs(v) == {"/events": "2", "/events/b": "1"} and v["subscribers"] == "3",
                          deadline.left(6), "rows /events ×2 and /events/b ×1, 3 subscribers")
        assert [r["path"] for r in view["rows"]] == ["/events", "/events/b"], f"most subscribers first: {view}"
        assert view["count"] == "showing 2 of 2 matching, 2 streams", view
        assert view["navigations"] == 1 and view["marker"] == "first load", f"the page reloaded: {view}"

        page.fill("#filter", "/B")  # case-insensitive substring of the path
        view = _wait_view(page, lambda v: _subs(v) == {"/events/b": "1"}, deadline.left(5), "the filter to narrow to /events/b")
        assert view["count"] == "showing 1 of 1 matching, 2 streams", view
        assert view["subscribers"] == "3", f"the total counts every stream, filtered or not: {view}"
        page.fill("#filter", "")
        _wait_view(page, lambda v: len(v["rows"]) == 2, deadline.left(5), "both rows again without the filter")
    finally:
        for c in clients:
            c.close()

    view = _wait_view(page, lambda v: v["subscribers"] == "0" and all(s == "0" for s in _subs(v).values()),
                      deadline.left(5), "the subscriber counts to drop to 0")
    # --stream-linger=1s: the streams close a second after their last client, and their rows go.
    view = _wait_view(page, lambda v: v["rows"] == [], deadline.left(6), "the rows of the closed streams to go")
    assert view["navigations"] == 1 and view["marker"] == "first load", f"the page reloaded: {view}"
    assert view["state"] == "live", view
    assert not problems, problems


# Every field the page reads, by object (Sources/Admin/StatusReport.swift). `lastError` is optional.
_FIELDS = {
    "": {"at", "process", "connections", "subscribers", "totals", "streamCount", "upstreamConnected",
         "filter", "top", "matching", "streams", "recent"},
    "process": {"version", "pid", "uptimeSeconds", "residentBytes", "openFiles", "maxFiles", "cpuSeconds",
                "threads", "state"},
    "connections": {"http1", "http1TLS", "h2", "h2TLS", "total"},
    "totals": {"eventsReceived", "eventsSent", "heartbeatsSent", "bytesSent", "replayHits", "replayMisses",
               "upstreamReconnects", "slowClientDisconnects", "requestsRefused", "tlsHandshakeFailures",
               "eventsReceivedPerSecond", "eventsSentPerSecond", "bytesSentPerSecond"},
    "stream": {"id", "path", "origin", "shared", "role", "subscribers", "ageSeconds", "upstream", "events", "replay"},
    "upstream": {"state", "sinceSeconds", "reconnects"},
    "events": {"received", "sent", "receivedPerSecond", "sentPerSecond", "history"},
    "replay": {"events", "bytes", "ageSeconds", "maxEvents", "maxBytes", "maxAgeSeconds"},
}


def test_status_json_has_what_the_page_reads(demo_origin, gateway):
    deadline = Deadline(20)
    gw, admin = _start(demo_origin, gateway, deadline)
    client = SSEClient(gw.host, gw.port, "/events?token=secret-value")
    try:
        assert client.got_event.wait(deadline.left(5)), bytes(client.data[:300])
        with urllib.request.urlopen(f"{admin}/status.json?top=5&filter=EVENTS", timeout=deadline.left(5)) as resp:
            assert resp.status == 200
            report = json.load(resp)
    finally:
        client.close()

    def missing(obj: dict, key: str) -> set:
        return _FIELDS[key] - set(obj)

    assert not missing(report, ""), f"report lacks {missing(report, '')}"
    for key in ("process", "connections", "totals"):
        assert not missing(report[key], key), f"{key} lacks {missing(report[key], key)}"
    assert report["filter"] == "EVENTS" and report["top"] == 5, report
    assert report["subscribers"] == 1 and report["streamCount"] == 1 and report["matching"] == 1, report
    [stream] = report["streams"]
    for key in ("upstream", "events", "replay"):
        assert not missing(stream[key], key), f"stream.{key} lacks {missing(stream[key], key)}"
    assert not missing(stream, "stream"), f"stream lacks {missing(stream, 'stream')}"
    assert stream["subscribers"] == 1, stream
    assert "secret-value" not in stream["path"] and stream["path"].startswith("/events?token="), stream["path"]
    assert isinstance(stream["events"]["history"], list), stream
