"""The demo page of `lifeline --demo` (Sources/DemoOrigin/DemoPage.swift) in Chromium: its plain
EventSource misses ticks after a network cut and after leaving the page; LifelineEventSource
through Lifeline misses none."""

from __future__ import annotations

import time

from sse_page import Deadline

_STATE_JS = """() => ({
  plain: { received: demo.plain.received, missed: demo.plain.missed, last: demo.plain.last,
           shown: Number(document.getElementById('plain-missed').textContent),
           state: document.getElementById('plain-state').textContent },
  lifeline: { received: demo.lifeline.received, missed: demo.lifeline.missed, last: demo.lifeline.last,
              shown: Number(document.getElementById('lifeline-missed').textContent),
              state: document.getElementById('lifeline-state').textContent },
})"""


def _wait(page, predicate, timeout: float, what: str) -> dict:
    end = time.monotonic() + timeout
    state = None
    while True:
        try:
            state = page.evaluate(_STATE_JS)
        except Exception as e:  # noqa: BLE001 - the page is reloading: its context comes and goes
            state = {"error": str(e)}
        if "error" not in state and predicate(state):
            return state
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}: {state}")
        time.sleep(0.1)


def test_demo_page_shows_both_cures(gateway, new_page):
    deadline = Deadline(60)
    # 200 ms ticks and a 1 s heartbeat keep the test short; the origin does not drop by itself.
    gw = gateway("--demo", "--demo-tick=200ms", "--demo-drop-every=0", "--heartbeat=1s")
    page = new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{gw.url}/")
    state = _wait(page, lambda s: s["plain"]["received"] >= 5 and s["lifeline"]["received"] >= 5,
                  deadline.left(10), "ticks in both columns")
    assert state["plain"]["state"] == "open" and state["lifeline"]["state"] == "open", state

    # Cut the network: the page's open connections go silent without closing.
    page.click("#cut")
    page.wait_for_function("() => /Network cut: [1-9]/.test(document.getElementById('notice').textContent)",
                           timeout=deadline.left(5) * 1000)
    cut_at = time.monotonic()
    plain_at_cut = page.evaluate(_STATE_JS)["plain"]["received"]
    # The helper's watchdog (2.5 heartbeats) reconnects and the gateway replays: ticks go on.
    state = _wait(page, lambda s: s["lifeline"]["last"] is not None and s["plain"]["last"] is not None
                  and s["lifeline"]["last"] >= s["plain"]["last"] + 20 and "nothing for" in s["plain"]["state"],
                  deadline.left(12), "LifelineEventSource 20 ticks past the silent EventSource, shown on the page")
    assert time.monotonic() - cut_at < 2.5 * 1 + 4.0 + 2.0, "the watchdog took too long"
    assert state["plain"]["received"] <= plain_at_cut + 2, f"the plain EventSource kept receiving: {state}"
    assert state["plain"]["shown"] >= 15, f"the page does not show the ticks the plain side missed: {state}"
    assert state["lifeline"]["missed"] == 0 and state["lifeline"]["shown"] == 0, state

    # Leave the page for 3 s and come back: the plain side starts over, the helper resumes.
    plain_before = state["plain"]["missed"]
    page.click("#away-button")
    state = _wait(page, lambda s: s["plain"]["received"] > 0 and s["lifeline"]["last"] is not None
                  and s["plain"]["last"] is not None and s["plain"]["missed"] > plain_before
                  and s["lifeline"]["last"] >= s["plain"]["last"],
                  deadline.left(15), "both columns live again after the reload")
    assert state["plain"]["missed"] - plain_before >= 10, (
        f"3 s away at 5 ticks/s: the plain EventSource should have missed ≥ 10 more ticks: {state}")
    assert state["lifeline"]["missed"] == 0, f"LifelineEventSource missed ticks across the reload: {state}"
    assert not errors, errors
