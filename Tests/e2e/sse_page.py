"""Helpers that drive an EventSource inside a Playwright page and check what it received."""

from __future__ import annotations

import time

DEFAULT_KEY = "__lifeline_e2e"

# Installs window[key] and opens an EventSource on `path` (relative to the page).
# Each default-type message records [lastEventId, data.tick]; open/error events are counted.
_OPEN_EVENT_SOURCE_JS = """
([path, key]) => {
  const st = window[key] = { received: [], opens: 0, errors: [], badData: [] };
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
(key) => {
  const st = window[key];
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
    """One EventSource in `page`, its record kept in `window[key]` (several probes need several keys)."""

    def __init__(self, page, path: str = "/events", key: str = DEFAULT_KEY):
        self.page = page
        self.key = key
        self._js = f"window[{key!r}]"
        page.evaluate(_OPEN_EVENT_SOURCE_JS, [path, key])

    def state(self) -> dict:
        return self.page.evaluate(_STATE_JS, self.key)

    def count(self) -> int:
        return self.page.evaluate(f"() => {self._js}.received.length")

    def wait_open(self, timeout_s: float) -> None:
        self._wait(f"{self._js}.opens >= 1", timeout_s, "the EventSource to open")

    def wait_count(self, n: int, timeout_s: float, what: str = "") -> None:
        self._wait(f"{self._js}.received.length >= {int(n)}", timeout_s, what or f"{n} events")

    def _wait(self, expr: str, timeout_s: float, what: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(f"() => {expr}", timeout=max(1, int(timeout_s * 1000)), polling=100)
        except PlaywrightTimeout:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}; state: {summarize(self.state())}") from None


class EventSourceGroup:
    """`n` EventSources on `path` in one page (like n tabs' worth of streams), waited on together."""

    def __init__(self, page, path: str = "/events", n: int = 8, key_prefix: str = "__lifeline_e2e_"):
        self.page = page
        self.probes = [EventSourceProbe(page, path, key=f"{key_prefix}{i}") for i in range(n)]

    def __len__(self) -> int:
        return len(self.probes)

    def states(self) -> list[dict]:
        keys = [p.key for p in self.probes]
        return self.page.evaluate(f"(keys) => keys.map(k => ({_STATE_JS})(k))", keys)

    def counts(self) -> list[int]:
        keys = [p.key for p in self.probes]
        return self.page.evaluate("(keys) => keys.map(k => window[k].received.length)", keys)

    def wait_open(self, timeout_s: float, what: str = "every EventSource to open") -> None:
        self._wait_all("st.opens >= 1", timeout_s, what)

    def wait_counts(self, targets: list[int] | int, timeout_s: float, what: str = "") -> None:
        """Waits until EventSource i has at least targets[i] events (or `targets` each)."""
        if isinstance(targets, int):
            targets = [targets] * len(self.probes)
        assert len(targets) == len(self.probes)
        keys = [p.key for p in self.probes]
        self._wait_all_js(
            f"(() => {{ const ks = {keys!r}, ns = {[int(n) for n in targets]!r}; "
            f"return ks.every((k, i) => window[k].received.length >= ns[i]); }})()",
            timeout_s, what or f"events up to {targets}")

    def _wait_all(self, cond: str, timeout_s: float, what: str) -> None:
        keys = [p.key for p in self.probes]
        self._wait_all_js(f"{keys!r}.every(k => {{ const st = window[k]; return {cond}; }})", timeout_s, what)

    def _wait_all_js(self, expr: str, timeout_s: float, what: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(f"() => {expr}", timeout=max(1, int(timeout_s * 1000)), polling=100)
        except PlaywrightTimeout:
            lines = "\n  ".join(f"#{i}: {summarize(st)}" for i, st in enumerate(self.states()))
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}; states:\n  {lines}") from None


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


def delivery_problems(state: dict, expect_opens: int = 1) -> list[str]:
    """Everything wrong with one EventSource's record: errors, reopens, bad data, ids that differ
    from ticks, and ticks that are not strictly consecutive (each exactly once, in order)."""
    problems = []
    if state["errors"]:
        problems.append(f"fired 'error' {len(state['errors'])} times (its connection dropped): {state['errors'][:3]}")
    if state["opens"] != expect_opens:
        problems.append(f"opened {state['opens']} times; expected {expect_opens}")
    if state["badData"]:
        problems.append(f"events whose data is not JSON with a tick: {state['badData'][:3]}")
    received = state["received"]
    bad_ids = [(i, eid, tick) for i, (eid, tick) in enumerate(received) if eid != str(tick)]
    if bad_ids:
        problems.append(f"lastEventId differs from data.tick (first 3 as (index, id, tick)): {bad_ids[:3]}")
    seq = sequence_problems([tick for _, tick in received])
    if seq:
        problems.append(f"ticks not strictly consecutive ({len(seq)} problems, first 5): " + "; ".join(seq[:5]))
    return problems
