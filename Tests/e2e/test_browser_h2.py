"""A real browser behind Lifeline over HTTPS with HTTP/2: eight EventSources share one connection.

Over HTTP/1.1 a browser opens at most 6 connections per host, shared by all tabs, and an
EventSource holds one for good: the 7th and 8th streams (here the 8th and 9th: the demo page opens
one of its own) would wait forever. Over HTTP/2 they are streams on one TLS connection. The origin
is SIGKILLed and restarted once while they run; each EventSource must still see every tick exactly
once, in order, and never fire `error`.

The certificate is made at test time (tls_certs.py); the browser context ignores HTTPS errors.
"""

from __future__ import annotations

import time

import pytest

from sse_page import Deadline, EventSourceGroup, delivery_problems, summarize
from tls_certs import make_test_certs

TEST_BUDGET_S = 45          # the whole test body, processes and browser waits included
N_SOURCES = 8               # EventSources opened by the test (the demo page adds one more)
FIRST_EVENTS = 10           # each source, before the restart
DOWNTIME_S = 1.0            # how long the origin stays dead
EVENTS_AFTER_RESTART = 20   # ~1 s replayed by the origin (missed ids) + ~1 s of new ticks
RECOVERY_CAP_S = 12         # time allowed for Lifeline to reconnect and deliver them
STILL_RECEIVING = 10        # more events each source must get at the end
MIN_EVENTS = 40             # per source, in total

_NAV_PROTOCOL_JS = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return nav ? nav.nextHopProtocol : null;
}
"""

# A plain request while every EventSource is open: over HTTP/1.1 with 9 streams open it would wait
# for a free connection; over HTTP/2 it is one more stream. Its resource-timing entry names the
# protocol (EventSource entries appear only when their response ends, i.e. never here).
_FETCH_PROBE_JS = """
async () => {
  const started = performance.now();
  const r = await fetch('/?lifeline-h2-probe=1', { cache: 'no-store' });
  await r.text();
  const ms = performance.now() - started;
  const entries = performance.getEntriesByType('resource').map(e => ({ name: e.name, protocol: e.nextHopProtocol }));
  return { status: r.status, ms, entries };
}
"""


def _start_tls_gateway(gateway, certs, origin_port: int):
    try:
        return gateway(
            "--tls-listen=127.0.0.1:0",
            f"--tls-cert={certs.cert}",
            f"--tls-key={certs.key}",
            f"--route=/=http://127.0.0.1:{origin_port}",
            "--heartbeat=1s",
        )
    except pytest.fail.Exception as e:
        why = str(e)
    # Outside the except block, so that the report shows this message once, without the chain.
    pytest.fail(
        "lifeline did not start with a TLS listener (--tls-listen/--tls-cert/--tls-key, issue 3); "
        "is the TLS + HTTP/2 work in this binary (LIFELINE_BIN)?\n" + why,
        pytrace=False,
    )


def test_browser_h2_eight_event_sources_survive_origin_restart(demo_origin, gateway, new_page, tmp_path):
    deadline = Deadline(TEST_BUDGET_S)
    certs = make_test_certs(tmp_path / "tls")

    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = _start_tls_gateway(gateway, certs, origin.port)
    base = gw.url_for("https")
    assert base.startswith("https://127.0.0.1:"), f"unexpected https URL {base!r} (lines: {gw.stdout_lines})"
    assert gw.port_for("https") != gw.port, "the TLS and plaintext listeners report the same port"

    page = new_page(ignore_https_errors=True)

    # Chromium's own view of each response: protocol and connection id (DevTools protocol).
    responses: list[dict] = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.responseReceived", lambda ev: responses.append({
        "url": ev["response"].get("url", ""),
        "type": ev.get("type"),
        "status": ev["response"].get("status"),
        "protocol": ev["response"].get("protocol"),
        "connectionId": ev["response"].get("connectionId"),
    }))
    cdp.send("Network.enable")

    # /healthz, not the demo page at /, which opens streams of its own.
    response = page.goto(f"{base}/healthz", timeout=deadline.left(10) * 1000)
    assert response is not None and response.status == 200, (
        f"GET {base}/healthz through lifeline: status {response.status if response else None}")
    nav_protocol = page.evaluate(_NAV_PROTOCOL_JS)
    assert nav_protocol == "h2", (
        f"the page came over {nav_protocol!r}, not HTTP/2: ALPN on the TLS listener should pick h2")

    group = EventSourceGroup(page, "/events", N_SOURCES)
    group.wait_open(deadline.left(10), f"all {N_SOURCES} EventSources to open (if only some opened, the streams "
                    f"are queued behind a per-host connection limit: HTTP/1.1, not one multiplexed h2 connection)")
    group.wait_counts(FIRST_EVENTS, deadline.left(10), f"the first {FIRST_EVENTS} events on each of {N_SOURCES} EventSources")

    probe = page.evaluate(_FETCH_PROBE_JS)
    assert probe["status"] == 200, f"fetch('/?lifeline-h2-probe=1') with {N_SOURCES + 1} streams open: {probe}"
    assert probe["ms"] < 5000, f"a plain request waited {probe['ms']:.0f} ms behind the open streams: {probe}"
    probe_entries = [e for e in probe["entries"] if "lifeline-h2-probe" in e["name"]]
    assert probe_entries, f"no resource-timing entry for the probe request: {probe['entries']}"
    not_h2 = [e for e in probe["entries"] if e["protocol"] and e["protocol"] != "h2"]
    assert not not_h2, f"resource entries not over h2: {not_h2}"

    # Origin crash and restart while the eight streams run.
    before = group.counts()
    origin.kill()  # SIGKILL: no FIN-and-goodbye, the way a crash or an OOM kill looks
    time.sleep(DOWNTIME_S)
    deadline.left()
    origin = demo_origin(port=origin.port, tick="100ms", drop_every=0)
    group.wait_counts([n + EVENTS_AFTER_RESTART for n in before], deadline.left(RECOVERY_CAP_S),
                      f"{EVENTS_AFTER_RESTART} more events on each EventSource after the origin restart (had {before})")

    # All eight still receiving, and enough events overall.
    now = group.counts()
    group.wait_counts([max(n + STILL_RECEIVING, MIN_EVENTS) for n in now], deadline.left(10),
                      f"every EventSource still receiving ({STILL_RECEIVING} more events, {MIN_EVENTS} in all)")

    states = group.states()
    problems = {i: delivery_problems(st) for i, st in enumerate(states)}
    problems = {i: p for i, p in problems.items() if p}
    assert not problems, (
        "EventSources over h2 did not get every tick exactly once, in order, without errors, across an origin restart:\n"
        + "\n".join(f"  #{i}: {'; '.join(p)}\n      {summarize(states[i])}" for i, p in problems.items()))

    # What Chromium says about the wire: every response from lifeline came over h2, on one connection.
    ours = [r for r in responses if r["url"].startswith(base)]
    streams = [r for r in ours if r["type"] == "EventSource"]
    assert len(streams) >= N_SOURCES, f"DevTools saw {len(streams)} EventSource responses, expected >= {N_SOURCES}: {ours}"
    not_h2 = [r for r in ours if r["protocol"] != "h2"]
    assert not not_h2, f"responses not over h2 (DevTools): {not_h2}"
    connection_ids = {r["connectionId"] for r in ours if r["connectionId"]}
    assert len(connection_ids) <= 1, (
        f"the page, {len(streams)} EventSources and a fetch used {len(connection_ids)} connections "
        f"{sorted(connection_ids)}; over HTTP/2 they should share one: {ours}")
