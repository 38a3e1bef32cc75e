"""A real browser behind Lifeline: origin restarts must be invisible to an EventSource."""

from __future__ import annotations

import time

from sse_page import Deadline, EventSourceProbe, sequence_problems, summarize

TEST_BUDGET_S = 40       # the whole test body, processes and browser waits included
MIN_EVENTS = 40          # ~4 s of ticks at 100 ms
RESTARTS = 2
DOWNTIME_S = 1.0         # how long the origin stays dead each time
EVENTS_AFTER_RESTART = 20  # ~1 s replayed by the origin (missed ids) + ~1 s of new ticks
RECOVERY_CAP_S = 12      # time allowed for Lifeline to reconnect and deliver them


def test_browser_survives_origin_restarts(demo_origin, gateway, new_page):
    deadline = Deadline(TEST_BUDGET_S)

    origin = demo_origin(port=0, tick="100ms", drop_every=0)
    gw = gateway(f"--route=/=http://127.0.0.1:{origin.port}", "--heartbeat=1s")

    page = new_page()
    # /healthz, not the demo page at /, which opens streams of its own.
    response = page.goto(f"{gw.url}/healthz", timeout=deadline.left(10) * 1000)
    assert response is not None and response.status == 200, (
        f"GET {gw.url}/healthz through lifeline: status {response.status if response else None}")

    es = EventSourceProbe(page, "/events")
    es.wait_open(deadline.left(10))
    es.wait_count(10, deadline.left(10), "the first 10 events")

    for n in range(1, RESTARTS + 1):
        before = es.count()
        origin.kill()  # SIGKILL: no FIN-and-goodbye, the way a crash or an OOM kill looks
        time.sleep(DOWNTIME_S)
        deadline.left()
        origin = demo_origin(port=origin.port, tick="100ms", drop_every=0)
        es.wait_count(before + EVENTS_AFTER_RESTART, deadline.left(RECOVERY_CAP_S),
                      f"{EVENTS_AFTER_RESTART} more events after origin restart #{n} (had {before})")

    es.wait_count(MIN_EVENTS, deadline.left(10), f"at least {MIN_EVENTS} events")
    state = es.state()
    received = state["received"]
    ticks = [tick for _, tick in received]

    assert state["errors"] == [], (
        "the browser's EventSource fired 'error' (its connection to lifeline dropped): " + summarize(state))
    assert state["opens"] == 1, f"EventSource opened {state['opens']} times; expected exactly once. " + summarize(state)
    assert state["badData"] == [], f"events whose data is not JSON with a tick: {state['badData'][:5]}"

    bad_ids = [(i, eid, tick) for i, (eid, tick) in enumerate(received) if eid != str(tick)]
    assert not bad_ids, f"lastEventId differs from data.tick (first 5 as (index, id, tick)): {bad_ids[:5]}"

    problems = sequence_problems(ticks)
    assert not problems, (
        f"ticks are not strictly consecutive across {RESTARTS} origin restarts "
        f"({len(problems)} problems, first 10):\n  " + "\n  ".join(problems[:10]) + "\n" + summarize(state))

    assert len(ticks) >= MIN_EVENTS, f"only {len(ticks)} events; expected at least {MIN_EVENTS}"
