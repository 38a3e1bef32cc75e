"""The browser client the gateway serves (`/_lifeline/client.js`, docs/client.md), in Chromium."""

from __future__ import annotations

import time

from sse_page import Deadline, sequence_problems

# Pages are loaded from /healthz, not /: the demo origin's page at / runs streams of its own
# (a LifelineEventSource on /events among them) that would share the helper's sessionStorage key.

# Collects LifelineEventSource ticks in window.__ll (survives nothing: a reload starts afresh,
# and the helper resumes from the id it kept in sessionStorage).
_OPEN_JS = """
([path]) => new Promise((resolve, reject) => {
  const st = window.__ll = { received: [], opens: 0, errors: 0, gaps: [], reconnecting: 0 };
  const script = document.createElement('script');
  script.src = '/_lifeline/client.js';
  script.onerror = () => reject(new Error('client.js did not load'));
  script.onload = () => {
    const es = new LifelineEventSource(path);
    st.es = es;
    es.addEventListener('open', () => { st.opens++; });
    es.addEventListener('error', () => { st.errors++; });
    es.addEventListener('lifeline:gap', (e) => { st.gaps.push(e.detail); });
    es.addEventListener('lifeline:reconnecting', () => { st.reconnecting++; });
    es.onmessage = (e) => { st.received.push([e.lastEventId, JSON.parse(e.data).tick]); };
    resolve(true);
  };
  document.head.appendChild(script);
})
"""

_STATE_JS = "() => ({ received: window.__ll.received, opens: window.__ll.opens, errors: window.__ll.errors, " \
            "gaps: window.__ll.gaps, readyState: window.__ll.es.readyState })"


def _wait(page, predicate_js: str, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if page.evaluate(predicate_js):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}: {page.evaluate(_STATE_JS)}")


# The client's own parser on one response's chunks: [type, data, lastEventId] per event.
_PARSE_JS = """(chunks) => {
    const out = [];
    const p = new LifelineEventSource._Parser("", (id, e) => { if (e) out.push([e.type, e.data, e.lastEventId]); }, () => {});
    for (const c of chunks) p.feed(c);
    return out;
}"""


def test_parser_follows_the_whatwg_format_cases_in_the_browser(demo_origin, gateway, new_page):
    origin = demo_origin(port=0, tick="1s", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}")
    page = new_page()
    page.goto(f"{gw.url}/healthz")
    page.add_script_tag(url="/_lifeline/client.js")
    # (chunks, expected [type, data, lastEventId] list) — the web-platform-tests format-* cases
    # that the Swift parser's tests also cover, fed in awkward splits.
    cases = [
        (["data: a\n\n"], [["message", "a", ""]]),
        (["\ufeffdata: bom\n\n"], [["message", "bom", ""]]),
        (["data:1\r", "\ndata:2\r\rdata:3\n\n"], [["message", "1\n2", ""], ["message", "3", ""]]),
        (["id: 7\ndata: x\n\n", "data: y\n\n"], [["message", "x", "7"], ["message", "y", "7"]]),
        (["id: a\u0000b\ndata: nul\n\n"], [["message", "nul", ""]]),
        (["event: tick\ndata\n\n"], [["tick", "", ""]]),
        ([":comment\n", "data:  two spaces\n\n"], [["message", " two spaces", ""]]),
        (["retry: 1x\ndata: r\n\n"], [["message", "r", ""]]),
        (["data: cut"], []),
        (["id: only\n\n", "data: after\n\n"], [["message", "after", "only"]]),
    ]
    for chunks, expected in cases:
        got = page.evaluate(_PARSE_JS, chunks)
        assert got == expected, f"{chunks!r}: got {got}, expected {expected}"
        # The same bytes one character at a time.
        single = [c for chunk in chunks for c in chunk]
        got = page.evaluate(_PARSE_JS, single)
        assert got == expected, f"{chunks!r} split into characters: got {got}, expected {expected}"


def test_reload_resumes_with_no_gap(demo_origin, gateway, new_page):
    deadline = Deadline(40)
    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")
    page = new_page()
    page.goto(f"{gw.url}/healthz")
    page.evaluate(_OPEN_JS, ["/events"])
    _wait(page, "() => window.__ll.received.length >= 10", deadline.left(10), "10 ticks")
    before = page.evaluate(_STATE_JS)["received"]

    # Leave the page for 1.5 s, come back: the helper resumes from the id it kept.
    page.goto("about:blank")
    time.sleep(1.5)
    page.goto(f"{gw.url}/healthz")
    # What the first page kept: it went on receiving between our snapshot and its unload, so
    # the id it stored (the one it resumes from) is at or after the snapshot's last.
    stored = page.evaluate("(url) => sessionStorage.getItem('lifeline:' + url)", f"{gw.url}/events")
    assert stored is not None and int(stored) >= before[-1][1], (stored, before[-1])
    page.evaluate(_OPEN_JS, ["/events"])
    _wait(page, "() => window.__ll.received.length >= 25", deadline.left(10), "25 ticks after the reload")
    state = page.evaluate(_STATE_JS)
    after = state["received"]

    last_before = int(stored)
    ticks_after = [tick for _, tick in after]
    assert ticks_after[0] <= last_before + 1, (
        f"the first tick after the reload is {ticks_after[0]}, the last before it {last_before}: a gap")
    # A reload may see the last ticks of the first page again only if they were not yet stored;
    # from the first new tick on, everything is consecutive.
    new = [t for t in ticks_after if t > last_before]
    assert new and new[0] == last_before + 1, f"gap after reload: last before {last_before}, then {ticks_after[:5]}"
    problems = sequence_problems(new)
    assert not problems, f"ticks after the reload are not consecutive: {problems[:10]}"
    assert state["gaps"] == [], f"the gateway reported a replay miss: {state['gaps']}"
    assert state["errors"] == 0 and state["opens"] == 1, state
