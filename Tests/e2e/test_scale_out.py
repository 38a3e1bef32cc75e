"""Several Lifeline instances acting as one gateway through Redis (`--redis`, docs/scale-out.md).

Real `redis-server` processes and real instances on loopback; the demo origin reports how many
event-stream connections it has open (`/demo/stats`), and every client checks that the ids it got
are consecutive (the demo origin numbers its ticks), so a gap or a duplicate anywhere fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sse_page import Deadline

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


# --------------------------------------------------------------------------------------------
# Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server on 127.0.0.1 that the test can stop and start again on the same port."""

    def __init__(self, workdir: Path, extra: tuple[str, ...] = (), certs=None):
        self.workdir = workdir
        self.extra = extra
        self.certs = certs  # TLS only (rediss://) when set
        self.port = 0
        self.popen: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        for _ in range(20):
            port = self.port or _free_port()
            log = open(self.workdir / f"redis-{port}.log", "ab")
            ports = ["--port", str(port)]
            if self.certs:
                ports = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.certs.cert),
                         "--tls-key-file", str(self.certs.key), "--tls-ca-cert-file", str(self.certs.ca),
                         "--tls-auth-clients", "no"]
            self.popen = subprocess.Popen(
                ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), *self.extra],
                stdout=log, stderr=log)
            if self._wait_ready(port):
                self.port = port
                return self
            self.popen.kill()
            self.popen.wait()
            if self.port:
                time.sleep(0.2)
        raise AssertionError("redis-server did not start")

    def _wait_ready(self, port: int) -> bool:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if self.popen.poll() is not None:
                return False
            try:
                if self.cli("PING", port=port).strip() in ("PONG", "NOAUTH Authentication required."):
                    return True
            except subprocess.SubprocessError:
                pass
            time.sleep(0.05)
        return False

    def cli(self, *args: str, port: int | None = None) -> str:
        tls = ["--tls", "--cacert", str(self.certs.ca)] if self.certs else []
        return subprocess.run(["redis-cli", *tls, "-p", str(port or self.port), *args], capture_output=True, text=True,
                              timeout=5).stdout

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    @property
    def url(self) -> str:
        return f"{'rediss' if self.certs else 'redis'}://127.0.0.1:{self.port}"


@pytest.fixture
def redis(tmp_path):
    servers: list[RedisServer] = []

    def start(*extra: str, certs=None) -> RedisServer:
        server = RedisServer(tmp_path, extra, certs=certs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "key-secret"
    path.write_bytes(os.urandom(32).hex().encode() + b"\n")
    return path


# --------------------------------------------------------------------------------------------
# Clients


class StreamClient(threading.Thread):
    """Reads one event stream over a raw socket and keeps the ids, until stopped."""

    def __init__(self, port: int, path: str = "/events/a", last_event_id: str | None = None):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.last_event_id = last_event_id
        self.ids: list[int] = []
        self.head = ""
        self.closed = False
        self._halt = threading.Event()

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        extra = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id else ""
        sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        sock.settimeout(0.2)
        buffer = b""
        while not self._halt.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buffer += data
            if not self.head and b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                self.head = head.decode("latin-1")
            # Chunk framing does not matter here: ids are on lines of their own.
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"id: "):
                    self.ids.append(int(line[4:].strip()))
        self.closed = True
        sock.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=3)


    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def assert_consecutive(self, what: str = "") -> None:
        gaps = [(a, b) for a, b in zip(self.ids, self.ids[1:]) if b != a + 1]
        assert not gaps, f"{what} ids not consecutive (gap or duplicate): {gaps[:5]} in {len(self.ids)} ids"


def _stop_all(clients: list[StreamClient]) -> None:
    """Stops every client at the same moment (then waits for each), so that their counts compare."""
    for client in clients:
        client._halt.set()
    for client in clients:
        client.join(timeout=3)


def _origin_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/stats", timeout=2) as answer:
        return json.loads(answer.read())


def _open_streams(port: int) -> int:
    return _origin_stats(port)["openStreams"].get("/events/a", 0)


def _wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} (last: {last!r})")


def _instances(gateway, origin, redis_url: str, secret: Path, count: int = 3, lease: str = "2s", extra=()):
    return [
        gateway(f"--route=/=http://127.0.0.1:{origin.port}", f"--redis={redis_url}", f"--redis-key-secret-file={secret}",
                f"--redis-lease={lease}", f"--instance-name=i{n}", "--admin-listen=127.0.0.1:0", "--redis-timeout=500ms",
                *extra)
        for n in range(count)
    ]


def _admin(proc, timeout: float = 5) -> str:
    """The admin URL the instance printed (after its "listening on" line: wait for it)."""
    import re
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in list(proc.stdout_lines):
            m = re.search(r"admin listening on (http://\S+)", line)
            if m:
                return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no admin line in {proc.stdout_lines}")


def _status_streams(proc) -> list[dict]:
    with urllib.request.urlopen(_admin(proc) + "/status.json", timeout=2) as answer:
        return json.loads(answer.read())["streams"]


# --------------------------------------------------------------------------------------------
# Tests


def test_three_instances_hold_one_origin_connection_and_lose_nothing(demo_origin, gateway, redis, secret_file):
    deadline = Deadline(60)
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file)
    clients = [StreamClient(instances[n % 3].port) for n in range(90)]
    for client in clients:
        client.start()
    time.sleep(4)
    assert _open_streams(origin.port) == 1, "one origin connection for the stream across the three instances"
    roles = sorted(stream["role"] for proc in instances for stream in _status_streams(proc))
    assert roles == ["follower", "follower", "owner"], roles
    _stop_all(clients)
    for client in clients:
        assert client.header("Content-Type") == "text/event-stream"
        assert len(client.ids) > 40, f"{len(client.ids)} events in 4 s at 20/s"
        client.assert_consecutive()
    # Every client saw the same events (the stream's ids come from one origin connection).
    assert max(c.ids[-1] for c in clients) - min(c.ids[-1] for c in clients) < 10
    deadline.left()


def test_owner_killed_a_follower_takes_over_within_the_lease(demo_origin, gateway, redis, secret_file):
    deadline = Deadline(60)
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file, lease="2s")
    clients = [StreamClient(instances[n % 3].port) for n in range(30)]
    for client in clients:
        client.start()
        time.sleep(0.02)
    time.sleep(2)
    owner = next(proc for proc in instances if any(s["role"] == "owner" for s in _status_streams(proc)))
    survivors = [proc for proc in instances if proc is not owner]
    owner.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    # A new owner within about the lease (2 s) plus a lease check (2/3 s).
    new_owner = _wait_for(
        lambda: next((p for p in survivors if any(s["role"] == "owner" for s in _status_streams(p))), None),
        deadline.left(6), "a surviving instance owns the stream")
    took = time.monotonic() - killed_at
    assert took < 2 + 1.5, f"took over after {took:.1f} s"
    time.sleep(3)
    assert _open_streams(origin.port) == 1
    _stop_all(clients)
    for client in clients:
        if client.port == owner.port:
            continue  # its instance died with it
        client.assert_consecutive(f"client of :{client.port}")
        assert len(client.ids) > 80, f"{len(client.ids)} events"
    # The clients kept getting events after the takeover.
    survivors_last = [c.ids[-1] for c in clients if c.port != owner.port]
    assert max(survivors_last) - min(survivors_last) < 10
    assert new_owner in survivors


def test_resume_on_an_instance_without_that_stream_is_a_hit(demo_origin, gateway, redis, secret_file):
    server = redis()
    origin = demo_origin(tick="50ms")
    first, second = _instances(gateway, origin, server.url, secret_file, count=2)
    client = StreamClient(first.port)
    client.start()
    time.sleep(2)
    client.stop()
    assert len(client.ids) > 20
    resume_from = client.ids[5]
    resumed = StreamClient(second.port, last_event_id=str(resume_from))
    resumed.start()
    time.sleep(1.5)
    resumed.stop()
    assert resumed.header("Lifeline-Replay") == "hit"
    assert resumed.ids[0] == resume_from + 1, f"first event {resumed.ids[0]} after {resume_from}"
    resumed.assert_consecutive()
    # An id the history never had is an exact miss.
    stranger = StreamClient(second.port, last_event_id="12345")
    stranger.start()
    time.sleep(0.5)
    stranger.stop()
    assert stranger.header("Lifeline-Replay") == "miss"


def test_redis_killed_and_restarted_mid_stream_loses_nothing(demo_origin, gateway, redis, secret_file):
    deadline = Deadline(60)
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file)
    clients = [StreamClient(instances[n % 3].port) for n in range(15)]
    for client in clients:
        client.start()
    time.sleep(2)
    server.kill()
    # Each instance falls back to its own origin connection.
    _wait_for(lambda: _open_streams(origin.port) == 3, deadline.left(5), "each instance reads the origin itself")
    assert all(s["role"] == "fallback" for proc in instances for s in _status_streams(proc))
    time.sleep(1)
    server.start()
    # Back to one owner once Redis answers again.
    _wait_for(lambda: _open_streams(origin.port) == 1, deadline.left(20), "one origin connection again")
    time.sleep(1)
    for client in clients:
        client.stop()
        client.assert_consecutive()
        assert len(client.ids) > 80


def test_a_paused_owner_stores_nothing_after_its_lease(demo_origin, gateway, redis, secret_file):
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file, lease="1s")
    clients = [StreamClient(instances[n % 3].port) for n in range(6)]
    for client in clients:
        client.start()
    time.sleep(2)
    owner = next(proc for proc in instances if any(s["role"] == "owner" for s in _status_streams(proc)))
    owner.popen.send_signal(signal.SIGSTOP)
    time.sleep(3)  # three leases
    owner.popen.send_signal(signal.SIGCONT)
    time.sleep(3)
    assert _open_streams(origin.port) == 1
    for client in clients:
        client.stop()
        client.assert_consecutive(f"client of :{client.port}")
    # The stored history is one lineage: consecutive origin ids, no event twice.
    key = next(k for k in server.cli("--scan", "--pattern", "lifeline:*:events").split())
    entries = server.cli("XRANGE", key, "-", "+").split("\n")
    stored = [int(line[1:]) for line in entries if line.startswith("=")]
    assert len(stored) > 50
    assert all(b == a + 1 for a, b in zip(stored, stored[1:])), "stored ids are consecutive"


def test_password_file_and_a_wrong_password(demo_origin, gateway, redis, secret_file, tmp_path):
    server = redis("--requirepass", "s3cret-pass")
    origin = demo_origin(tick="50ms")
    good = tmp_path / "good"
    good.write_text("s3cret-pass\n")
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    first = gateway(f"--route=/=http://127.0.0.1:{origin.port}", f"--redis={server.url}", f"--redis-password-file={good}",
                    f"--redis-key-secret-file={secret_file}", "--admin-listen=127.0.0.1:0")
    wrong = gateway(f"--route=/=http://127.0.0.1:{origin.port}", f"--redis={server.url}", f"--redis-password-file={bad}",
                    f"--redis-key-secret-file={secret_file}", "--admin-listen=127.0.0.1:0")
    a, b = StreamClient(first.port), StreamClient(wrong.port)
    a.start()
    b.start()
    time.sleep(2)
    a.stop()
    b.stop()
    # The right password owns the stream in Redis; the wrong one still serves, on its own.
    assert [s["role"] for s in _status_streams(first)] == ["owner"]
    assert [s["role"] for s in _status_streams(wrong)] == ["fallback"]
    a.assert_consecutive()
    b.assert_consecutive()
    assert len(b.ids) > 20


def test_trimmed_history_and_lost_epoch_are_exact_misses(demo_origin, gateway, redis, secret_file):
    server = redis()
    origin = demo_origin(tick="50ms")
    first, second = _instances(gateway, origin, server.url, secret_file, count=2, extra=("--replay-events=10",))
    client = StreamClient(first.port)
    client.start()
    time.sleep(2)
    # Trimmed: 40 events later, the 10-event history no longer holds this one.
    old = client.ids[2]
    trimmed = StreamClient(second.port, last_event_id=str(old))
    trimmed.start()
    time.sleep(0.8)
    trimmed.stop()
    assert trimmed.header("Lifeline-Replay") == "miss"
    # Lost: Redis forgets everything; an id the second instance never saw cannot be a hit.
    recent = client.ids[-1]
    client.stop()
    server.cli("FLUSHALL")
    time.sleep(0.3)
    third = _instances(gateway, origin, server.url, secret_file, count=1)[0]
    lost = StreamClient(third.port, last_event_id=str(recent))
    lost.start()
    time.sleep(1)
    lost.stop()
    # The origin was opened from the client's id: it is told "miss" (the gateway could not replay)
    # and the origin's own replay leaves no gap.
    assert lost.header("Lifeline-Replay") == "miss", lost.head
    assert lost.ids and lost.ids[0] == recent + 1


def test_tls_to_redis_verifies_the_server(demo_origin, gateway, redis, secret_file, tmp_path):
    from tls_certs import make_test_certs
    certs = make_test_certs(tmp_path / "certs")
    server = redis(certs=certs)
    origin = demo_origin(tick="50ms")
    trusted = _instances(gateway, origin, server.url, secret_file, count=2, extra=(f"--redis-ca={certs.ca}",))
    untrusted = gateway(f"--route=/=http://127.0.0.1:{origin.port}", f"--redis={server.url}",
                        f"--redis-key-secret-file={secret_file}", "--admin-listen=127.0.0.1:0")
    clients = [StreamClient(proc.port) for proc in (*trusted, untrusted)]
    for client in clients:
        client.start()
    time.sleep(2.5)
    _stop_all(clients)
    roles = sorted(s["role"] for proc in trusted for s in _status_streams(proc))
    assert roles == ["follower", "owner"], roles
    # A certificate the instance does not trust: it does not use that Redis, and serves on its own.
    assert [s["role"] for s in _status_streams(untrusted)] == ["fallback"]
    for client in clients:
        client.assert_consecutive()
        assert len(client.ids) > 20
    assert _open_streams(origin.port) == 2


def _metrics(proc) -> dict[str, float]:
    with urllib.request.urlopen(_admin(proc) + "/metrics", timeout=2) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _readyz(proc) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(_admin(proc) + "/readyz", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_wedged_redis_is_noticed_and_shown_then_one_owner_again(demo_origin, gateway, redis, secret_file):
    """Redis stops answering without closing anything (SIGSTOP: connections stay open, blocking reads
    never return): the liveness checks notice, every instance reads the origin itself and says so in
    its metrics, /readyz and status; after SIGCONT they converge to one owner; no client sees a gap."""
    deadline = Deadline(60)
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file)
    clients = [StreamClient(instances[n % 3].port) for n in range(9)]
    for client in clients:
        client.start()
    time.sleep(2)
    first = _metrics(instances[0])
    assert first["lifeline_redis_up"] == 1
    assert sum(_metrics(p)['lifeline_shared_streams{role="owner"}'] for p in instances) == 1
    assert sum(_metrics(p)['lifeline_shared_streams{role="follower"}'] for p in instances) == 2
    assert _readyz(instances[0]) == (200, "ready\n")
    server.popen.send_signal(signal.SIGSTOP)
    try:
        _wait_for(lambda: _open_streams(origin.port) == 3, deadline.left(10), "each instance reads the origin itself")
        _wait_for(lambda: all(_metrics(p)["lifeline_redis_up"] == 0 for p in instances), deadline.left(5),
                  "lifeline_redis_up is 0 everywhere")
        assert all(_metrics(p)['lifeline_shared_streams{role="fallback"}'] == 1 for p in instances)
        status, body = _readyz(instances[1])
        assert status == 200 and "degraded" in body, (status, body)
        assert all(_metrics(p)["lifeline_history_fallbacks_total"] >= 1 for p in instances)
    finally:
        server.popen.send_signal(signal.SIGCONT)
    _wait_for(lambda: sorted(s["role"] for p in instances for s in _status_streams(p)) == ["follower", "follower", "owner"],
              deadline.left(25), "one owner and two followers again")
    assert _open_streams(origin.port) == 1
    _wait_for(lambda: all(_metrics(p)["lifeline_redis_up"] == 1 for p in instances), deadline.left(5), "redis up again")
    owners = [s.get("owner") for p in instances for s in _status_streams(p)]
    assert len(set(owners)) == 1 and owners[0] in {"i0", "i1", "i2"}, owners
    time.sleep(1)
    _stop_all(clients)
    for client in clients:
        client.assert_consecutive()
    assert sum(_metrics(p)['lifeline_history_appends_total{result="stored"}'] for p in instances) > 0


def test_status_page_shows_roles_owner_and_a_degraded_store_live(demo_origin, gateway, redis, secret_file, new_page):
    deadline = Deadline(40)
    server = redis()
    origin = demo_origin(tick="100ms")
    owner, follower = _instances(gateway, origin, server.url, secret_file, count=2)
    clients = [StreamClient(owner.port), StreamClient(follower.port)]
    clients[0].start()
    time.sleep(0.5)
    clients[1].start()
    problems = []
    page = new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(_admin(follower) + "/")

    def view():
        return page.evaluate("""() => ({
            store: document.getElementById('store-box').hidden ? null : document.getElementById('store').textContent,
            detail: document.getElementById('store-detail').textContent,
            rows: [...document.querySelectorAll('#streams tr')].map(tr => tr.textContent),
            navigations: performance.getEntriesByType('navigation').length })""")

    v = _wait_for(lambda: (lambda v: v if v["store"] == "up" and any("following i0" in r for r in v["rows"]) else None)(view()),
                  deadline.left(8), "the follower's page shows Redis up and the stream following i0")
    assert "this instance: i1" in v["detail"], v
    server.kill()
    v = _wait_for(lambda: (lambda v: v if v["store"] == "unreachable" else None)(view()), deadline.left(8),
                  "the page shows Redis unreachable without a reload")
    assert "degraded" in v["detail"], v
    _wait_for(lambda: any("on its own" in r for r in view()["rows"]), deadline.left(8), "the stream shown on its own")
    assert view()["navigations"] == 1
    _stop_all(clients)
    assert not problems, problems


def test_a_stopping_owner_gives_its_lease_back(demo_origin, gateway, redis, secret_file):
    """SIGTERM: the owner drains, and as it stops it releases its leases, so another instance takes
    over at once rather than a lease (here 8 s) later."""
    deadline = Deadline(40)
    server = redis()
    origin = demo_origin(tick="50ms")
    instances = _instances(gateway, origin, server.url, secret_file, count=2, lease="8s", extra=("--drain-window=1s",))
    clients = [StreamClient(instances[0].port)]
    clients[0].start()
    time.sleep(1)
    clients.append(StreamClient(instances[1].port))
    clients[1].start()
    time.sleep(1.5)
    owner = next(proc for proc in instances if any(s["role"] == "owner" for s in _status_streams(proc)))
    other = next(proc for proc in instances if proc is not owner)
    owner.popen.send_signal(signal.SIGTERM)
    owner.popen.wait(timeout=deadline.left(10))
    exited = time.monotonic()
    _wait_for(lambda: any(s["role"] == "owner" for s in _status_streams(other)), deadline.left(8), "the other instance owns it")
    assert time.monotonic() - exited < 4, "taken over well within the 8 s lease: the lease was released"
    time.sleep(1)
    _stop_all(clients)
    survivor = next(c for c in clients if c.port == other.port)
    survivor.assert_consecutive()


# --------------------------------------------------------------------------------------------
# Redis Cluster


def _cluster_port() -> int:
    """A port P <= 55535 with P and P + 10000 (the cluster bus) free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 55535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair for a cluster node")


class RedisCluster:
    """Six nodes (3 masters, 3 replicas) made with `redis-cli --cluster create`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.nodes: dict[int, subprocess.Popen] = {}

    def start(self) -> "RedisCluster":
        ports = []
        while len(ports) < 6:
            port = _cluster_port()
            if port in ports:
                continue
            log = open(self.workdir / f"cluster-{port}.log", "ab")
            self.nodes[port] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "1500", "--save", "",
                 "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", str(self.workdir)],
                stdout=log, stderr=log)
            ports.append(port)
        for port in ports:
            _wait_for(lambda: self.cli(port, "PING").strip() == "PONG", 5, f"cluster node {port} up")
        made = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                               "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stdout + made.stderr
        for port in ports:
            _wait_for(lambda: "cluster_state:ok" in self.cli(port, "CLUSTER", "INFO"), 20, f"node {port} sees the cluster ok")
        for port in self.replicas():
            _wait_for(lambda: "master_link_status:up" in self.cli(port, "INFO", "replication"), 20, f"replica {port} synced")
        return self

    def cli(self, port: int, *args: str) -> str:
        try:
            return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""

    def masters(self) -> list[int]:
        return [p for p, proc in self.nodes.items() if proc.poll() is None and "role:master" in self.cli(p, "INFO", "replication")]

    def replicas(self) -> list[int]:
        return [p for p, proc in self.nodes.items() if proc.poll() is None and "role:slave" in self.cli(p, "INFO", "replication")]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in list(self.nodes)[:3])

    def kill(self, port: int) -> None:
        self.nodes[port].kill()
        self.nodes[port].wait()

    def stop(self) -> None:
        for proc in self.nodes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_redis_cluster_spreads_streams_over_masters_and_survives_a_master_failover(demo_origin, gateway, secret_file, tmp_path):
    deadline = Deadline(120)
    cluster = RedisCluster(tmp_path).start()
    try:
        origin = demo_origin(tick="100ms")
        instances = _instances(gateway, origin, cluster.url, secret_file, count=2, lease="3s")
        paths = [f"/events/s{n}" for n in range(24)]
        clients = [StreamClient(instances[n % 2].port, path=paths[n % 24]) for n in range(48)]
        for client in clients:
            client.start()
        time.sleep(3)
        stats = _origin_stats(origin.port)["openStreams"]
        assert all(stats.get(p, 0) == 1 for p in paths), f"one origin connection per stream: {stats}"
        # Each history lives on the master that holds its slot: the 24 spread over all three.
        per_master = {p: len([k for k in cluster.cli(p, "--scan", "--pattern", "lifeline:*:events").split() if k])
                      for p in cluster.masters()}
        assert sum(per_master.values()) == 24 and all(n > 0 for n in per_master.values()), per_master
        # A master dies; its replica is promoted; no client sees a gap or a duplicate.
        victim = max(per_master, key=per_master.get)
        cluster.kill(victim)
        _wait_for(lambda: len(cluster.masters()) == 3, deadline.left(30), "a replica promoted")
        _wait_for(lambda: all(v == 1 for v in (_origin_stats(origin.port)["openStreams"].get(p, 0) for p in paths)),
                  deadline.left(40), "one origin connection per stream again")
        time.sleep(2)
        _stop_all(clients)
        for client in clients:
            client.assert_consecutive(client.path)
            assert len(client.ids) > 50, (client.path, len(client.ids))
    finally:
        cluster.stop()


def test_resume_on_the_only_instance_after_its_restart_is_a_hit(demo_origin, gateway, redis, secret_file):
    """One instance with --redis, killed and started again: a client that comes back with its id gets
    what it missed from Redis, then the live stream, once the new process owns the stream."""
    deadline = Deadline(40)
    server = redis()
    origin = demo_origin(tick="50ms")
    first = _instances(gateway, origin, server.url, secret_file, count=1, lease="2s")[0]
    client = StreamClient(first.port)
    client.start()
    time.sleep(1.5)
    client.stop()
    first.kill(signal.SIGKILL)
    resume_from = client.ids[10]
    second = _instances(gateway, origin, server.url, secret_file, count=1, lease="2s")[0]
    resumed = StreamClient(second.port, last_event_id=str(resume_from))
    resumed.start()
    _wait_for(lambda: any(s["role"] == "owner" for s in _status_streams(second)), deadline.left(8),
              "the new process owns the stream once the dead one's lease ran out")
    time.sleep(1.5)
    resumed.stop()
    assert resumed.header("Lifeline-Replay") == "hit", resumed.head
    assert resumed.ids[0] == resume_from + 1
    resumed.assert_consecutive()
    assert resumed.ids[-1] > client.ids[-1] + 20, "and the live stream after what Redis kept"


# --------------------------------------------------------------------------------------------
# Private generations (POST streams) kept in Redis: resumed on any instance, after a restart

from test_private_streams import _header, _post_and_drop, _resume, _tokens, token_origin  # noqa: E402,F401


def test_a_generation_resumes_on_another_instance_and_after_a_restart_with_one_post(token_origin, gateway, redis,
                                                                                    secret_file):
    origin = token_origin(tokens=tuple(f"t{n}" for n in range(12)), pauses={n: 0.15 for n in range(12)})
    server = redis()
    a, b = _instances(gateway, origin, server.url, secret_file, count=2)
    head, got = _post_and_drop(a.port, after_tokens=3)
    resume = _header(head, "Lifeline-Resume")
    assert resume, head
    # On the other instance, by id, while the generation runs: what followed, the live rest, the end.
    rhead, text, clean = _resume(b.port, resume, {"Authorization": "Bearer k1", "Last-Event-ID": str(len(got))})
    assert rhead.startswith("HTTP/1.1 200"), rhead
    assert _header(rhead, "Lifeline-Replay") == "hit", rhead
    assert got + _tokens(text) == [f"t{n}" for n in range(12)], (got, _tokens(text))
    assert clean and "[DONE]" in text
    # Another caller, on either instance: 404, as for an unknown token.
    for port in (a.port, b.port):
        assert _resume(port, resume, {"Authorization": "Bearer k2"}, read_for=3)[0].startswith("HTTP/1.1 404")
    # The instance that ran it restarts: its successor resumes it by count from Redis.
    a.kill(signal.SIGTERM)
    a2 = _instances(gateway, origin, server.url, secret_file, count=1)[0]
    rhead, text, clean = _resume(a2.port, resume, {"Authorization": "Bearer k1", "Lifeline-Resume-From": "5"})
    assert rhead.startswith("HTTP/1.1 200") and _header(rhead, "Lifeline-Replay") == "hit", rhead
    assert _header(rhead, "X-Request-Id") == "req-1", "the origin's headers are kept with it"
    assert _tokens(text) == [f"t{n}" for n in range(5, 12)] and clean
    assert origin.posts == 1, "the generation ran once"


def test_a_generation_whose_instance_dies_breaks_off_for_resumers_elsewhere(token_origin, gateway, redis, secret_file):
    origin = token_origin(tokens=("a", "b", "c", "d"), pauses={2: 60})
    server = redis()
    a, b = _instances(gateway, origin, server.url, secret_file, count=2, lease="1s")
    head, got = _post_and_drop(a.port, after_tokens=2)
    assert got == ["a", "b"]
    resume = _header(head, "Lifeline-Resume")
    result = {}

    def read():
        result["answer"] = _resume(b.port, resume, {"Authorization": "Bearer k1", "Lifeline-Resume-From": "1"}, read_for=20)
        result["at"] = time.monotonic()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(1)
    a.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    reader.join(25)
    rhead, text, clean = result["answer"]
    assert rhead.startswith("HTTP/1.1 200"), rhead
    assert _tokens(text) == ["b"], text
    assert not clean, "the generation broke off: so does its resume, not a clean end"
    assert result["at"] - killed_at < 8, f"broke off {result['at'] - killed_at:.1f} s after (3 leases + a read)"
    assert origin.posts == 1
