"""Lifeline's own restarts (issue: drain, upgrade, reload) with real processes on loopback."""

from __future__ import annotations

import collections
import re
import selectors
import signal
import socket
import time
import urllib.error
import urllib.request

from sse_page import Deadline


def _admin_url(proc, timeout: float = 5.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in proc.stdout_lines:
            m = re.search(r"admin listening on (http://\S+)", line)
            if m:
                return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no admin line in {proc.stdout_lines}")


def _open_clients(port: int, count: int, path: str = "/events"):
    sel = selectors.DefaultSelector()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, {"buf": bytearray()})
    return sel


def _read_until_closed(sel, count: int, t0: float, timeout: float):
    """Reads every client until it closes; returns (close times since t0, buffers of closed clients)."""
    closed, buffers = [], []
    end = time.monotonic() + timeout
    while len(closed) < count and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            try:
                data = key.fileobj.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b"" if not isinstance(data, bytes) else data
            if data:
                key.data["buf"] += data
                continue
            closed.append(time.monotonic() - t0)
            buffers.append(bytes(key.data["buf"]))
            sel.unregister(key.fileobj)
            key.fileobj.close()
    return closed, buffers


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sigterm_drains_clients_over_the_window_then_exits(demo_origin, gateway):
    deadline = Deadline(40)
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--drain-window=6s", "--admin-listen=127.0.0.1:0",
                 "--heartbeat=1s")
    admin = _admin_url(gw)
    count = 400
    sel = _open_clients(gw.port, count)
    # Every client streaming before the signal.
    time.sleep(1.5)
    assert _status(admin + "/readyz") == 200
    t0 = time.monotonic()
    gw.popen.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert _status(admin + "/readyz") == 503, "/readyz turns 503 at once"
    closed, buffers = _read_until_closed(sel, count, t0, deadline.left(15))
    rc = gw.popen.wait(timeout=deadline.left(10))
    exited = time.monotonic() - t0
    assert rc == 0
    assert len(closed) == count, f"{len(closed)} of {count} clients closed"
    per_second = collections.Counter(int(c) for c in closed)
    assert max(per_second.values()) <= 0.30 * count, f"closes bunched: {sorted(per_second.items())}"
    assert len(per_second) >= 6, f"closes not spread over the 6 s window: {sorted(per_second.items())}"
    assert max(closed) < 6.5, f"last close at {max(closed):.2f} s"
    assert exited < 6 + 2, f"exited {exited:.2f} s after SIGTERM"
    # Each client was told when to come back, then its response ended cleanly; events flowed
    # until its own moment (the stream kept running during the drain).
    late = [b for c, b in zip(closed, buffers) if c > 4]
    for buf in buffers:
        assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", buf), buf[-200:]
    assert all(buf.count(b"\nid: ") > 40 for buf in late), "late clients kept receiving events"


def test_second_sigterm_or_sigint_stops_at_once(demo_origin, gateway):
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    for second in (signal.SIGTERM, signal.SIGINT):
        gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--drain-window=30s")
        sel = _open_clients(gw.port, 20)
        time.sleep(0.5)
        gw.popen.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        t0 = time.monotonic()
        gw.popen.send_signal(second)
        rc = gw.popen.wait(timeout=5)
        assert rc == 0
        assert time.monotonic() - t0 < 2, f"{second!r} during a drain exits at once"
        closed, _ = _read_until_closed(sel, 20, t0, 3)
        assert len(closed) == 20


def _metric(admin: str, name: str) -> float | None:
    with urllib.request.urlopen(admin + "/metrics", timeout=2) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


def _get_status(port: int, path: str) -> int:
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = s.recv(4096).decode("latin-1")
    s.close()
    return int(head.split()[1])


def test_sighup_applies_a_new_route_keeps_streams_and_survives_a_broken_file(tmp_path, demo_origin, gateway):
    deadline = Deadline(40)
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    flags = tmp_path / "lifeline.flags"
    flags.write_text(f"--route=/a=http://127.0.0.1:{origin.port}\n--heartbeat=1s\n")
    gw = gateway(f"--flagfile={flags}", "--admin-listen=127.0.0.1:0")
    admin = _admin_url(gw)
    sel = _open_clients(gw.port, 3, path="/a/events")
    time.sleep(1)
    assert _get_status(gw.port, "/b/events") == 404, "no route for /b yet"

    flags.write_text(f"--route=/a=http://127.0.0.1:{origin.port}\n--route=/b=http://127.0.0.1:{origin.port}\n--heartbeat=1s\n")
    gw.popen.send_signal(signal.SIGHUP)
    end = time.monotonic() + deadline.left(5)
    while _get_status(gw.port, "/b/events") != 200:
        assert time.monotonic() < end, "the new route never went live"
        time.sleep(0.05)
    # Counted once every loop has the new configuration: a moment after the first one serves it.
    while _metric(admin, 'lifeline_config_reloads_total{result="success"}') != 1:
        assert time.monotonic() < end, "the reload was not counted"
        time.sleep(0.05)

    # A broken file: the running configuration stays and the error names the file and line.
    flags.write_text(f"--route=/a=http://127.0.0.1:{origin.port}\n--heartbeat=banana\n")
    gw.popen.send_signal(signal.SIGHUP)
    end = time.monotonic() + deadline.left(5)
    while _metric(admin, 'lifeline_config_reloads_total{result="failure"}') != 1:
        assert time.monotonic() < end, "the failed reload was not counted"
        time.sleep(0.05)
    assert _get_status(gw.port, "/b/events") == 200, "a broken file changes nothing"
    assert f"{flags}:2" in gw.stderr_tail(), gw.stderr_tail()

    # The three clients of /a were never cut: each has received events all along.
    t0 = time.monotonic()
    received = {key.fileobj: 0 for key in sel.get_map().values()}
    while time.monotonic() - t0 < 1.0:
        for key, _ in sel.select(timeout=0.1):
            data = key.fileobj.recv(65536)
            assert data, "a running stream was closed by the reload"
            received[key.fileobj] += data.count(b"\nid: ") + data.startswith(b"id: ")
    assert all(count >= 5 for count in received.values()), received
    for key in list(sel.get_map().values()):
        key.fileobj.close()


class _Resumer:
    """An EventSource-like client on a raw socket: HTTP/1.0 (so the body is the bare event
    stream), reconnects after the server's `retry:` with `Last-Event-ID`, records every id."""

    def __init__(self, port: int, path: str):
        self.port, self.path = port, path
        self.ids: list[int] = []
        self.last_id: str | None = None
        self.retry_ms = 1000
        self.sock: socket.socket | None = None
        self.buf = b""
        self.head_done = False
        self.reconnect_at: float | None = None
        self.connections = 0
        self.refused = 0
        self.resets = 0
        self.statuses: list[int] = []

    def connect(self, sel):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except ConnectionRefusedError:
            self.refused += 1
            s.close()
            self.reconnect_at = time.monotonic() + 0.1
            return
        headers = f"GET {self.path} HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n"
        if self.last_id is not None:
            headers += f"Last-Event-ID: {self.last_id}\r\n"
        self.pending = (headers + "\r\n").encode()
        self.sock, self.buf, self.head_done, self.reconnect_at = s, b"", False, None
        self.connections += 1
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def on_event(self, sel, mask):
        if mask & selectors.EVENT_WRITE and self.pending:
            try:
                sent = self.sock.send(self.pending)
            except ConnectionRefusedError:
                self.refused += 1
                return self.closed(sel)
            except OSError:
                self.resets += 1
                return self.closed(sel)
            self.pending = self.pending[sent:]
            if not self.pending:
                sel.modify(self.sock, selectors.EVENT_READ, self)
            return
        try:
            data = self.sock.recv(65536)
        except ConnectionRefusedError:
            self.refused += 1
            return self.closed(sel)
        except ConnectionResetError:
            self.resets += 1
            return self.closed(sel)
        if not data:
            return self.closed(sel)
        self.buf += data
        if not self.head_done:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.statuses.append(int(head.split()[1]))
            self.head_done = True
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if line.startswith(b"id: "):
                    self.last_id = line[4:].decode()
                    self.ids.append(int(self.last_id))
                elif line.startswith(b"retry: "):
                    self.retry_ms = int(line[7:])

    def closed(self, sel):
        sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        self.reconnect_at = time.monotonic() + self.retry_ms / 1000


def _origin_stats(origin_port: int, what: str = "streamRequests") -> dict:
    import json
    with urllib.request.urlopen(f"http://127.0.0.1:{origin_port}/demo/stats", timeout=2) as answer:
        return json.loads(answer.read())[what]


def test_upgrade_under_reconnecting_clients_loses_nothing(demo_origin, gateway):
    deadline = Deadline(60)
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--drain-window=4s", "--heartbeat=1s",
                 "--admin-listen=127.0.0.1:0")
    admin = _admin_url(gw)
    paths = ["/events/a", "/events/b", "/events/c"]
    sel = selectors.DefaultSelector()
    clients = [_Resumer(gw.port, paths[i % 3]) for i in range(300)]
    for client in clients:
        client.connect(sel)

    def pump(seconds: float, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, mask in sel.select(timeout=0.05):
                key.data.on_event(sel, mask)
            now = time.monotonic()
            for client in clients:
                if client.sock is None and client.reconnect_at is not None and client.reconnect_at <= now:
                    client.connect(sel)
            if until is not None and until():
                return True
        return False

    assert pump(deadline.left(10), until=lambda: all(len(c.ids) >= 5 for c in clients)), "all streaming"
    before = _origin_stats(origin.port)
    assert sum(before.values()) == 3, f"one origin request per stream before the upgrade: {before}"
    with urllib.request.urlopen(admin + "/status.json", timeout=2) as answer:
        old_pid = __import__("json").loads(answer.read())["process"]["pid"]
    assert old_pid == gw.pid

    gw.popen.send_signal(signal.SIGUSR2)
    # The old process hands over, drains over 4 s and exits; the new one serves everyone.
    assert pump(deadline.left(20), until=lambda: gw.popen.poll() is not None and all(
        c.connections >= 2 and c.sock is not None and len(c.ids) >= 2 and c.ids[-1] >= max(x.ids[-1] for x in clients) - 5
        for c in clients)), (
        f"every client reconnected to the new process: old exited {gw.popen.poll()}, "
        f"reconnected {sum(c.connections >= 2 for c in clients)}, open {sum(c.sock is not None for c in clients)}, "
        f"refused {sum(c.refused for c in clients)}, resets {sum(c.resets for c in clients)}, "
        f"statuses {collections.Counter(s for c in clients for s in c.statuses)}, "
        f"newest {max(x.ids[-1] for x in clients)}, oldest last {min(x.ids[-1] for x in clients)}")
    pump(1.0)
    with urllib.request.urlopen(admin + "/status.json", timeout=2) as answer:
        new_pid = __import__("json").loads(answer.read())["process"]["pid"]
    assert new_pid != old_pid, "the new process answers on the same admin socket"
    assert gw.popen.wait(timeout=1) == 0

    refused = sum(c.refused for c in clients)
    resets = sum(c.resets for c in clients)
    assert refused == 0 and resets == 0, f"{refused} refused and {resets} reset connections"
    for c in clients:
        steps = [b - a for a, b in zip(c.ids, c.ids[1:])]
        assert all(step == 1 for step in steps), f"{c.path}: gap or duplicate at {[(i, s) for i, s in enumerate(steps) if s != 1][:5]}"
        assert all(status == 200 for status in c.statuses), c.statuses
    after = _origin_stats(origin.port)
    new_requests = {path: after.get(path, 0) - before.get(path, 0) for path in paths}
    print(f"origin requests per stream during the upgrade: {new_requests}")
    # 100 clients per stream: without sharing that would be ~100 requests each. A few catch-up
    # streams open while the first resumer's stream is being made (more on a loaded machine: 12
    # once in CI beside other test runs, 1-4 when idle).
    assert all(count <= 20 for count in new_requests.values()), \
        f"the new process should open a handful of origin connections per stream, not one per client: {new_requests}"
    # Clients that came back with an older id than the first resumer caught up on connections of
    # their own; each of those closes once it reaches the shared stream: one per stream is left.
    merged = pump(deadline.left(5), until=lambda: all(_origin_stats(origin.port, "openStreams").get(p, 0) == 1 for p in paths))
    open_streams = _origin_stats(origin.port, "openStreams")
    print(f"origin connections per stream open after the upgrade: {open_streams}")
    assert merged, f"one origin connection per stream within a few seconds of the upgrade: {open_streams}"
    for c in clients:
        steps = [b - a for a, b in zip(c.ids, c.ids[1:])]
        assert all(step == 1 for step in steps), f"{c.path}: gap or duplicate after the merge at {[(i, s) for i, s in enumerate(steps) if s != 1][:5]}"
    for key in list(sel.get_map().values()):
        key.fileobj.close()


def test_systemd_socket_activation_serves_on_inherited_sockets(demo_origin, lifeline_bin, tmp_path):
    import os
    import subprocess

    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    listeners = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        listeners.append(s)
    public_port, admin_port = (s.getsockname()[1] for s in listeners)
    # A client that connects before Lifeline runs waits in the socket's queue, as with systemd.
    early = socket.create_connection(("127.0.0.1", public_port))
    early.sendall(b"GET /events HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")

    def as_systemd_would():
        os.dup2(listeners[0].fileno(), 3)
        os.dup2(listeners[1].fileno(), 4)
        os.environ["LISTEN_FDS"] = "2"
        os.environ["LISTEN_PID"] = str(os.getpid())

    proc = subprocess.Popen(
        [lifeline_bin, f"--listen=127.0.0.1:{public_port}", f"--admin-listen=127.0.0.1:{admin_port}",
         f"--route=/=http://127.0.0.1:{origin.port}", "--drain-window=1s"],
        stdout=subprocess.PIPE, stderr=open(tmp_path / "lifeline.stderr", "wb"),
        preexec_fn=as_systemd_would, close_fds=False, start_new_session=True)
    try:
        for s in listeners:
            s.close()  # systemd keeps its own copy; here the child's is the only one now
        lines = [proc.stdout.readline().decode() for _ in range(2)]
        assert f"listening on http://127.0.0.1:{public_port}" in lines[0], lines
        assert f"admin listening on http://127.0.0.1:{admin_port}" in lines[1], lines
        early.settimeout(5)
        answer = early.recv(4096)
        assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer
        assert _status(f"http://127.0.0.1:{admin_port}/readyz") == 200
    finally:
        early.close()
        proc.terminate()
        proc.wait(timeout=15)
