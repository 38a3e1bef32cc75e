"""Helpers that drive an EventSource inside a Playwright page and check what it received."""

from __future__ import annotations

import time

# Installs window.__lifeline_e2e and opens an EventSource on `path` (relative to the page).
# Each default-type message records [lastEventId, data.tick]; open/error events are counted.
_OPEN_EVENT_SOURCE_JS = """
(path) => {
  const st = window.__lifeline_e2e = { received: [], opens: 0, errors: [], badData: [] };
  const es = new EventSource(path);
  st.es = es;
  es.addEventListener('open', () => { st.opens++; });
  es.addEventListener('error', () => {
    st.errors.push({ at: new Date().toISOString(), readyState: es.readyState, afterEvents: st.received.length });
  });
  es.addEventListener('message', (e) => {
    let tick = null;
    try { tick = JSON.parse(e.data).tick; } catch (err) { st.badData.push(String(e.data).slice(0, 200)); }
    st.received.push([e.lastEventId, tick]);
  });
}
"""

_STATE_JS = """
() => {
  const st = window.__lifeline_e2e;
  return { received: st.received, opens: st.opens, errors: st.errors, badData: st.badData,
           readyState: st.es.readyState };
}
"""


class Deadline:
    """A time budget for a whole test; every wait takes min(its own cap, what is left)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"test ran past its {self.seconds:g} s budget")
        return left if cap is None else min(left, cap)


class EventSourceProbe:
    def __init__(self, page, path: str = "/events"):
        self.page = page
        page.evaluate(_OPEN_EVENT_SOURCE_JS, path)

    def state(self) -> dict:
        return self.page.evaluate(_STATE_JS)

    def count(self) -> int:
        return self.page.evaluate("() => window.__lifeline_e2e.received.length")

    def wait_open(self, timeout_s: float) -> None:
        self._wait("window.__lifeline_e2e.opens >= 1", timeout_s, "the EventSource to open")

    def wait_count(self, n: int, timeout_s: float, what: str = "") -> None:
        self._wait(f"window.__lifeline_e2e.received.length >= {int(n)}", timeout_s, what or f"{n} events")

    def _wait(self, expr: str, timeout_s: float, what: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(f"() => {expr}", timeout=max(1, int(timeout_s * 1000)), polling=100)
        except PlaywrightTimeout:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}; state: {summarize(self.state())}") from None


def summarize(state: dict) -> str:
    rec = state["received"]
    ticks = [t for _, t in rec]
    span = f"ticks {ticks[0]}..{ticks[-1]}" if ticks else "no ticks"
    return (f"{len(rec)} events ({span}), opens={state['opens']}, errors={state['errors']}, "
            f"readyState={state['readyState']}, badData={state['badData'][:3]}")


def sequence_problems(ticks: list) -> list[str]:
    """Describes every place where `ticks` are not consecutive integers (gaps, duplicates, reorders)."""
    problems = []
    for i, t in enumerate(ticks):
        if not isinstance(t, int) or isinstance(t, bool):
            problems.append(f"event #{i}: tick {t!r} is not an integer")
    ints = [t for t in ticks if isinstance(t, int) and not isinstance(t, bool)]
    for i in range(1, len(ints)):
        prev, cur = ints[i - 1], ints[i]
        if cur == prev + 1:
            continue
        if cur == prev:
            problems.append(f"event #{i}: tick {cur} duplicated")
        elif cur > prev + 1:
            missing = cur - prev - 1
            problems.append(f"event #{i}: after tick {prev} came {cur} ({missing} missing: {prev + 1}..{cur - 1})")
        else:
            problems.append(f"event #{i}: after tick {prev} came {cur} (went back by {prev - cur + 1}: duplicate or reordered)")
    return problems
