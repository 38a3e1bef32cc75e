"""Lifeline's admin listener (`--admin-listen`) and Prometheus.

- the shipped deploy/prometheus.yml and deploy/lifeline-alerts.yml pass `promtool check`, and the
  alert rules pass their unit tests (Tests/e2e/prometheus_rules_test.yml: every alert has a case
  where it fires, and the origin-down and slow-client alerts have cases where they must not);
- `/metrics` of a gateway with live SSE clients passes `promtool check metrics` with no lint
  output, and has every metric of the contract with its type, labels and plausible values;
- a real Prometheus scrapes the admin listener: it sees the 3 subscribers, `up` and
  `lifeline_build_info`, evaluates every shipped alert rule without error, and LifelineOriginDown
  goes pending once the origin is killed.

promtool and prometheus come from the Debian package `prometheus` (scripts/setup installs it).
Everything listens on 127.0.0.1; each test bounds its time with a Deadline.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import Proc
from sse_page import Deadline

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = REPO / "deploy" / "prometheus.yml"
ALERTS_YML = REPO / "deploy" / "lifeline-alerts.yml"
RULES_TEST_YML = Path(__file__).resolve().parent / "prometheus_rules_test.yml"

ADMIN_RE = re.compile(r"admin listening on (http://\S+)")

# The contract of /metrics: name -> (type, {label: allowed values}).
CONNECTION_LABELS = {"protocol": {"http1", "h2"}, "tls": {"true", "false"}}
REFUSAL_REASONS = {"bad_request", "no_route", "request_timeout", "too_many_from_address", "head_too_large",
                   "too_many_clients", "origin_unreachable", "origin_timeout", "too_many_resumes",
                   "resume_store_unavailable"}
RECONNECT_REASONS = {"ended", "dropped", "idle_timeout"}
METRICS_CONTRACT: dict[str, tuple[str, dict[str, set[str]]]] = {
    "lifeline_connections": ("gauge", CONNECTION_LABELS),
    "lifeline_subscribers": ("gauge", {}),
    "lifeline_streams": ("gauge", {}),
    "lifeline_upstream_connected": ("gauge", {}),
    "lifeline_events_received_total": ("counter", {}),
    "lifeline_events_sent_total": ("counter", {}),
    "lifeline_heartbeats_sent_total": ("counter", {}),
    "lifeline_sent_bytes_total": ("counter", {}),
    "lifeline_replay_requests_total": ("counter", {"result": {"hit", "miss"}}),
    "lifeline_catch_up_joins_total": ("counter", {}),
    "lifeline_exchanges_ended_total": ("counter", {"by": {"none", "client", "origin", "lifeline"}}),
    "lifeline_upstream_reconnects_total": ("counter", {"reason": RECONNECT_REASONS}),
    "lifeline_slow_client_disconnects_total": ("counter", {}),
    "lifeline_requests_refused_total": ("counter", {"reason": REFUSAL_REASONS}),
    "lifeline_tls_handshake_failures_total": ("counter", {}),
    "process_resident_memory_bytes": ("gauge", {}),
    "process_open_fds": ("gauge", {}),
    "process_max_fds": ("gauge", {}),
    "process_cpu_seconds_total": ("counter", {}),
    "process_start_time_seconds": ("gauge", {}),
    "lifeline_build_info": ("gauge", {"version": set()}),  # any version, but the label must be there
}
# Label sets that must each be exposed (at 0 too), so that rate() and absent() work from the start.
ALL_LABEL_COMBINATIONS = {
    "lifeline_connections": {(("protocol", p), ("tls", t)) for p in ("http1", "h2") for t in ("true", "false")},
    "lifeline_replay_requests_total": {(("result", r),) for r in ("hit", "miss")},
    "lifeline_exchanges_ended_total": {(("by", b),) for b in ("none", "client", "origin", "lifeline")},
    "lifeline_upstream_reconnects_total": {(("reason", r),) for r in RECONNECT_REASONS},
    "lifeline_requests_refused_total": {(("reason", r),) for r in REFUSAL_REASONS},
}


# --------------------------------------------------------------------------------------------
# Helpers


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` not found on PATH: install it with scripts/setup (Debian package `prometheus`)",
                    pytrace=False)
    return path


def run(argv: list[str], timeout: float, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, cwd=REPO,
                          stdin=None if input is not None else subprocess.DEVNULL)


def output_of(result: subprocess.CompletedProcess) -> str:
    return (result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")).strip()


def admin_url(gw: Proc, timeout: float) -> str:
    """The URL of the gateway's `lifeline admin listening on URL` line (printed after its own)."""
    end = time.monotonic() + timeout
    while True:
        for line in list(gw.stdout_lines):
            m = ADMIN_RE.search(line)
            if m:
                url = m.group(1)
                assert url != gw.url, (
                    f"the first 'listening on' line was the admin listener's ({url}); the gateway's own "
                    f"line(s) must come first. stdout: {gw.stdout_lines}")
                return url
        if not gw.alive() or time.monotonic() > end:
            raise AssertionError(
                f"the gateway printed no 'admin listening on http://...' line within {timeout:g} s "
                f"({'exited' if not gw.alive() else 'still running'}); stdout: {gw.stdout_lines}")
        time.sleep(0.05)


def start_gateway_with_admin(demo_origin, gateway, deadline: Deadline) -> tuple[Proc, Proc, str]:
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--admin-listen=127.0.0.1:0")
    return origin, gw, admin_url(gw, deadline.left(5))


def http_get(url: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class SSEClient:
    """A plain HTTP/1.1 `GET /events` with `Accept: text/event-stream`, held open on a raw socket.

    Nothing reads it in the background: at the demo origin's 100 ms ticks the socket buffers take
    minutes to fill, far longer than a test.
    """

    def __init__(self, base_url: str, path: str = "/events", timeout: float = 5.0):
        u = urllib.parse.urlsplit(base_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\n\r\n".encode())
        self.data = b""

    def wait_events(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.data.count(b"data:") < n:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"SSE client: fewer than {n} events within {timeout:.1f} s; got {self.data[:600]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"SSE client: the gateway closed the connection; got {self.data[:600]!r}")
            self.data += chunk
            if b"\r\n\r\n" in self.data:
                status = self.data.split(b"\r\n", 1)[0]
                assert status.startswith(b"HTTP/1.1 200"), f"SSE client: {status!r}; got {self.data[:600]!r}"
                head = self.data.split(b"\r\n\r\n", 1)[0].lower()
                assert b"content-type: text/event-stream" in head, f"SSE client: not an event stream: {head!r}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_clients(stack: ExitStack, base_url: str, n: int, deadline: Deadline) -> list[SSEClient]:
    clients = []
    for _ in range(n):
        c = SSEClient(base_url, timeout=deadline.left(5))
        stack.callback(c.close)
        clients.append(c)
    for c in clients:
        c.wait_events(3, deadline.left(10))
    return clients


_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)(?:\s+\d+)?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[tuple, float]]]:
    """The text format as {name: type}, {name: help}, {name: {sorted label pairs: value}}.

    Enough for checking a contract; promtool checks the syntax itself.
    """
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[str, dict[tuple, float]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind.strip()
        elif line.startswith("# HELP "):
            parts = line.split(" ", 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
        elif line.startswith("#"):
            continue
        else:
            m = _SAMPLE_RE.match(line)
            assert m, f"/metrics: a sample line that does not parse: {line!r}"
            labels = tuple(sorted(_LABEL_RE.findall(m.group("labels") or "")))
            samples.setdefault(m.group("name"), {})[labels] = float(m.group("value"))
    return types, helps, samples


def single(samples: dict[str, dict[tuple, float]], name: str) -> float:
    series = samples.get(name, {})
    assert len(series) == 1, f"/metrics: expected one series of {name}, got {series}"
    return next(iter(series.values()))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prometheus(processes, tmp_path: Path, config: Path, deadline: Deadline) -> tuple[Proc, str]:
    """Starts Prometheus on a free 127.0.0.1 port and returns once `/-/ready` answers 200.

    It is handed to the `processes` fixture, which kills it at teardown and attaches its log to the
    report when the test fails (it prints no "listening on" line, so `processes.start` cannot be used).
    """
    prometheus = tool("prometheus")
    last_log = ""
    for attempt in range(3):
        port = free_port()  # closed again before Prometheus binds it: another process may take it (retried)
        log_path = tmp_path / f"prometheus-{attempt}.log"
        argv = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / f'tsdb-{attempt}'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=tmp_path, start_new_session=True)
        proc = Proc(name="prometheus", argv=argv, popen=popen, stderr_path=log_path,
                    url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
        processes.procs.append(proc)
        end = time.monotonic() + deadline.left(15)
        while time.monotonic() < end:
            if not proc.alive():
                break
            try:
                status, _, _ = http_get(f"{proc.url}/-/ready", timeout=1)
                if status == 200:
                    return proc, proc.url
            except OSError:
                pass
            time.sleep(0.1)
        proc.kill()
        last_log = proc.stderr_tail(3000)
        if "address already in use" not in last_log:
            break
    raise AssertionError(f"Prometheus did not become ready (/-/ready); its log:\n{last_log}")


def prom_query(prom_url: str, query: str, timeout: float) -> list[dict]:
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, _, body = http_get(url, timeout=timeout)
    doc = json.loads(body)
    assert status == 200 and doc.get("status") == "success", f"GET {url}: {status} {body[:500]!r}"
    return doc["data"]["result"]


def prom_api(prom_url: str, path: str, timeout: float) -> dict:
    status, _, body = http_get(f"{prom_url}{path}", timeout=timeout)
    doc = json.loads(body)
    assert status == 200 and doc.get("status") == "success", f"GET {path}: {status} {body[:500]!r}"
    return doc["data"]


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    """Calls `check()` until it returns (ok, observed) with ok true; fails with the last observed."""
    end = time.monotonic() + timeout
    observed = None
    while True:
        ok, observed = check()
        if ok:
            return observed
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.1f} s; last seen: {observed}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# The deploy files


def test_deploy_files_pass_promtool():
    promtool = tool("promtool")

    # rule_files in prometheus.yml is relative to the config file's directory, so this checks
    # deploy/lifeline-alerts.yml too, from any working directory.
    r = run([promtool, "check", "config", str(PROMETHEUS_YML)], timeout=20)
    assert r.returncode == 0, f"promtool check config {PROMETHEUS_YML}: exit {r.returncode}\n{output_of(r)}"
    assert "lifeline-alerts.yml" in output_of(r), f"the config's rule file was not checked:\n{output_of(r)}"

    r = run([promtool, "check", "rules", str(ALERTS_YML)], timeout=20)
    assert r.returncode == 0, f"promtool check rules {ALERTS_YML}: exit {r.returncode}\n{output_of(r)}"

    # The rules do what they say: series in, alerts out (and not out, where they must not fire).
    r = run([promtool, "test", "rules", str(RULES_TEST_YML)], timeout=60)
    assert r.returncode == 0, f"promtool test rules {RULES_TEST_YML}: exit {r.returncode}\n{output_of(r)}"

    # Every alert in the rule file has a unit test in which it fires, the job scraped is the one
    # the rules select, and the alerts the brief promises are there.
    rules = ALERTS_YML.read_text()
    tests = RULES_TEST_YML.read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M)
    assert {"LifelineDown", "LifelineOriginDown", "LifelineUpstreamReconnectsHigh", "LifelineSlowClientDisconnects",
            "LifelineRequestsRefused", "LifelineFileDescriptorsNearLimit"} <= set(alerts), alerts
    untested = [a for a in alerts
                if not re.search(rf"alertname: {a}\n\s+exp_alerts:\n\s+- exp_labels:", tests)]
    assert not untested, f"alerts with no firing case in {RULES_TEST_YML.name}: {untested}"
    for a in alerts:
        block = rules.split(f"- alert: {a}", 1)[1].split("- alert:", 1)[0]
        assert re.search(r"^\s+for: \d+[smh]$", block, re.M), f"{a} has no `for:`"
        assert re.search(r"^\s+severity: (critical|warning|info)$", block, re.M), f"{a} has no severity label"
        assert "summary:" in block and "description:" in block, f"{a} lacks a summary or a description"
    assert re.search(r"^\s+- job_name: lifeline$", PROMETHEUS_YML.read_text(), re.M)


# --------------------------------------------------------------------------------------------
# /metrics


def test_metrics_output_passes_promtool_check_metrics(demo_origin, gateway):
    promtool = tool("promtool")
    deadline = Deadline(30)
    _, gw, admin = start_gateway_with_admin(demo_origin, gateway, deadline)

    with ExitStack() as stack:
        open_clients(stack, gw.url, 2, deadline)  # events received and sent are not 0
        status, headers, body = http_get(f"{admin}/metrics", timeout=deadline.left(5))

    assert status == 200, f"GET {admin}/metrics: {status} {body[:300]!r}"
    ctype = headers.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"/metrics Content-Type: {ctype!r}"
    r = run([promtool, "check", "metrics"], timeout=deadline.left(20), input=body)
    out = output_of(r)
    assert r.returncode == 0 and out == "", (
        f"promtool check metrics: exit {r.returncode}, output:\n{out}\n--- /metrics ---\n{body.decode(errors='replace')}")


def test_metrics_follow_the_contract(demo_origin, gateway):
    """Every metric of the contract, with its type, its label values and plausible values."""
    deadline = Deadline(30)
    _, gw, admin = start_gateway_with_admin(demo_origin, gateway, deadline)

    with ExitStack() as stack:
        open_clients(stack, gw.url, 2, deadline)
        status, _, body = http_get(f"{admin}/metrics", timeout=deadline.left(5))
    assert status == 200, f"GET {admin}/metrics: {status}"
    text = body.decode("utf-8")
    types, helps, samples = parse_exposition(text)

    problems = []
    for name, (kind, labels) in METRICS_CONTRACT.items():
        if name not in samples:
            problems.append(f"{name}: missing")
            continue
        if types.get(name) != kind:
            problems.append(f"{name}: TYPE {types.get(name)!r}, expected {kind!r}")
        if not helps.get(name, "").strip():
            problems.append(f"{name}: no HELP text")
        for series in samples[name]:
            names = {k for k, _ in series}
            if names != set(labels):
                problems.append(f"{name}: labels {sorted(names)}, expected {sorted(labels)}")
            for k, v in series:
                if labels.get(k) and v not in labels[k]:
                    problems.append(f"{name}: {k}={v!r} is not one of {sorted(labels[k])}")
                if k in labels and not labels[k] and not v:
                    problems.append(f"{name}: empty {k} label")
        want = ALL_LABEL_COMBINATIONS.get(name)
        if want is not None and set(samples[name]) != want:
            problems.append(f"{name}: series {sorted(samples[name])}, expected exactly {sorted(want)}")
    for name, kind in types.items():
        if kind == "counter" and not name.endswith("_total"):
            problems.append(f"{name}: a counter whose name does not end in _total")
        if name.endswith("_total") and kind != "counter":
            problems.append(f"{name}: ends in _total but is a {kind}")
    for name, series in samples.items():
        for labels, value in series.items():
            if math.isnan(value) or value < 0:
                problems.append(f"{name}{dict(labels)}: {value}")
    assert not problems, "/metrics breaks the contract:\n  " + "\n  ".join(problems) + "\n--- /metrics ---\n" + text

    # What the 2 clients on one shared stream make.
    assert single(samples, "lifeline_subscribers") == 2, text
    assert single(samples, "lifeline_streams") == 1, text
    assert single(samples, "lifeline_upstream_connected") == 1, text
    connections = {dict(k)["protocol"] + "/" + dict(k)["tls"]: v for k, v in samples["lifeline_connections"].items()}
    assert connections == {"http1/false": 2, "http1/true": 0, "h2/false": 0, "h2/true": 0}, (
        f"lifeline_connections: {connections} (2 plaintext HTTP/1.1 clients; the scrape itself is not a client)")
    assert single(samples, "lifeline_events_received_total") >= 3, text
    assert single(samples, "lifeline_events_sent_total") >= 6, text
    assert single(samples, "lifeline_sent_bytes_total") > 0, text
    assert single(samples, "lifeline_build_info") == 1, text

    # process_*: this process's own figures.
    rss = single(samples, "process_resident_memory_bytes")
    open_fds = single(samples, "process_open_fds")
    max_fds = single(samples, "process_max_fds")
    start = single(samples, "process_start_time_seconds")
    assert 1 << 20 < rss < 4 << 30, f"process_resident_memory_bytes {rss}"
    assert 5 <= open_fds <= max_fds, f"process_open_fds {open_fds}, process_max_fds {max_fds}"
    assert time.time() - 120 < start <= time.time() + 1, f"process_start_time_seconds {start} (now {time.time():.0f})"
    assert 0 <= single(samples, "process_cpu_seconds_total") < 120, text


# --------------------------------------------------------------------------------------------
# A real Prometheus


def test_real_prometheus_scrapes_the_admin_listener(demo_origin, gateway, processes, tmp_path):
    deadline = Deadline(40)
    origin, gw, admin = start_gateway_with_admin(demo_origin, gateway, deadline)
    target = urllib.parse.urlsplit(admin).netloc

    # The shipped rules, evaluated every second against the live gateway.
    shutil.copy(ALERTS_YML, tmp_path / ALERTS_YML.name)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS_YML.name}
scrape_configs:
  - job_name: lifeline
    static_configs:
      - targets: ["{target}"]
""")

    with ExitStack() as stack:
        open_clients(stack, gw.url, 3, deadline)
        prom, prom_url = start_prometheus(processes, tmp_path, config, deadline)
        try:
            def value_of(query: str):
                result = prom_query(prom_url, query, timeout=2)
                return [(r["metric"], float(r["value"][1])) for r in result]

            def check(query: str, want: float):
                def f():
                    got = value_of(query)
                    return len(got) == 1 and got[0][1] == want, got
                return f

            wait_until(check("lifeline_subscribers", 3), deadline.left(20), "Prometheus sees lifeline_subscribers == 3")
            up = value_of('up{job="lifeline"}')
            assert len(up) == 1 and up[0][1] == 1 and up[0][0].get("instance") == target, f"up: {up}"
            info = value_of("lifeline_build_info")
            assert len(info) == 1 and info[0][1] == 1 and info[0][0].get("version"), f"lifeline_build_info: {info}"
            assert value_of('lifeline_connections{protocol="http1",tls="false"}')[0][1] == 3

            # Every shipped rule evaluates against the real series without error, and none is
            # pending or firing while all is well.
            def rules_ok():
                groups = prom_api(prom_url, "/api/v1/rules", timeout=2)["groups"]
                rules = [r for g in groups for r in g["rules"]]
                bad = [(r["name"], r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"]
                return bool(rules) and not bad, bad or rules
            wait_until(rules_ok, deadline.left(10), "every alert rule evaluated with health ok")
            # (LifelineMetricsAbsent is pending for a moment if the rules are evaluated before the
            # first scrape: wait for the next evaluation.)
            def no_alerts():
                alerts = prom_api(prom_url, "/api/v1/alerts", timeout=2)["alerts"]
                return alerts == [], alerts
            wait_until(no_alerts, deadline.left(5), "no alert pending or firing while the gateway and origin are fine")

            # The origin dies: its stream keeps its 3 clients and loses its origin connection,
            # so LifelineOriginDown goes pending (it fires after 5 minutes).
            origin.kill()

            def origin_down_pending():
                alerts = prom_api(prom_url, "/api/v1/alerts", timeout=2)["alerts"]
                mine = [a for a in alerts if a["labels"].get("alertname") == "LifelineOriginDown"]
                return any(a["state"] == "pending" for a in mine), alerts
            alerts = wait_until(origin_down_pending, deadline.left(15), "LifelineOriginDown pending after the origin died")
            assert [a["labels"]["alertname"] for a in alerts] == ["LifelineOriginDown"], f"other alerts too: {alerts}"
            assert value_of("lifeline_upstream_connected")[0][1] == 0
            assert value_of("lifeline_subscribers")[0][1] == 3, "clients must stay connected while the origin is down"
        finally:
            prom.kill(signal.SIGTERM, wait=5.0)
