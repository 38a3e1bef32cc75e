#!/usr/bin/env python3
"""Figures and the table for Benchmarks/run (side-by-side runs).

    report.py line RUN_DIR          one line about one run (stderr of Benchmarks/run)
    report.py final WORK_DIR OUT    results.json + table.md in OUT; the table on stdout

Benchmarks/run leaves, per run, RUN_DIR/meta.env (key=value: what ran, the CPU and RSS samples of
the gateway's processes, the window) and the load tool's output (load-I.json per shard, or
h2load.out), and in WORK_DIR machine.env and floor-N.json.

How each figure is made (docs/benchmarks.md says the same for readers):
- CPU per delivered event: the gateway processes' CPU time (user + system) over the window, from the
  per-thread run time in /proc/PID/task/*/schedstat (ns; /proc/PID/stat utime+stime in clock ticks is
  kept in results.json as a cross-check), divided by the events delivered in the window. The load tool
  reports events for the whole run only, so events in the window = events x window / delivery time,
  where delivery time = hold - ramp/2 (clients connect evenly over the ramp). The window starts 1 s
  after the ramp and ends 1.5 s before the end, so connection setup and teardown are not in it.
- RSS per held client: (summed VmRSS during the hold - summed VmRSS before any client) / clients held.
- Added latency: the gateway's delivery latency p50/p99 minus the direct run's in the same scenario.
  Several load processes (--shard) are merged with `lifeline-bench merge`, which merges their histograms.
- Ratios: to nginx in the same scenario and run; "x floor": CPU per event / the floor's CPU per write
  for the same number of sockets.
- Scenario r (scale-out, its own table): one run directory per Lifeline instance (gateway
  lifeline-single, or lifeline-redis with its role: owner or follower). CPU per event and latency are
  each instance's own (its process, its clients); "x single" and "+p50/+p99" compare them with the
  lifeline-single run of the same scenario. Redis: its CPU over the window per event stored in the
  window (the history's `seq` at both ends of the window), and memory per stored event:
  (used_memory at the end of the window - before any client) / XLEN, and MEMORY USAGE of the events
  key / XLEN (the key alone, without client buffers and scripts).
- Scenario f (reconnect storm, its own table): every load process drops all its streams at one
  wall-clock moment and reconnects at once with Last-Event-ID. resumed: subscriptions that got an
  event after their drop; resume p50/p99: drop -> first event on the new connection (the load tool's
  histogram, merged over shards); origin_requests: stream requests the origin counted (GET /stats)
  from 0.5 s before the storm until the clients were gone; gaps/dups over the whole run;
  cpu_us_per_resume: the gateway's CPU over the storm window (0.5 s before the storm to 5.5 s after)
  / resumed, and cpu_excess_us_per_resume the same less the CPU of as long a window just before it
  (the steady fan-out that would have been spent anyway).
"""
import json
import os
import re
import sys
from glob import glob


def read_env(path):
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def num(v, default=0.0):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


# ------------------------------------------------------------------------------------------------
# The load tool's JSON summary. Its exact key names are the load tool's business: find each figure by
# what its key path says (e.g. "connections.held", "latency_us.p99"), and record which key was used.

def flatten(obj, prefix=""):
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        pass
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, (int, float)):
        out[prefix] = obj
    return out


def norm_path(path):
    return "/".join(re.sub(r"[^a-z0-9]", "", part.lower()) for part in path.split("/"))


FIGURES = {
    # name: (regexes that must all match the normalised key path, regexes that must not)
    "held": ([r"held"], [r"lat", r"time", r"ttfb"]),
    "failed": ([r"fail"], [r"lat", r"time", r"ttfb"]),
    "events": ([r"(^|/)(events?|eventsreceived|received|total)$", r"event"],
               [r"lat", r"gap", r"dup", r"heartbeat", r"persec", r"rate", r"time", r"ttfb"]),
    "gaps": ([r"gap"], [r"lat", r"time"]),
    "duplicates": ([r"dup"], [r"lat", r"time"]),
    "heartbeats": ([r"heartbeat"], [r"lat", r"interval", r"time"]),
    "reconnects": ([r"reconnect"], [r"lat", r"time", r"delay"]),
    "p50": ([r"lat|deliver", r"(p50|median|50th|p500)$"], [r"ttfb|firstbyte"]),
    "p99": ([r"lat|deliver", r"(p99|99th|p990)$"], [r"ttfb|firstbyte"]),
    "p999": ([r"lat|deliver", r"(p999|p9990|999th)$"], [r"ttfb|firstbyte"]),
    "max": ([r"lat|deliver", r"max$"], [r"ttfb|firstbyte"]),
}


def find(flat, name):
    include, exclude = FIGURES[name]
    for key, value in flat.items():
        p = norm_path(key)
        if all(re.search(r, p) for r in include) and not any(re.search(r, p) for r in exclude):
            scale = 1.0
            if name in ("p50", "p99", "p999", "max"):  # microseconds unless the key says otherwise
                k = key.lower()
                if re.search(r"(_|\b)ms\b|millis", k):
                    scale = 1000.0
                elif re.search(r"(_|\b)ns\b|nanos", k):
                    scale = 0.001
                elif re.search(r"(_|\b)s\b|seconds", k) and not re.search(r"(_|\b)(us|µs)\b|micros", k):
                    scale = 1e6
            return value * scale, key
    return None, None


COUNTS = ("held", "failed", "events", "gaps", "missing_events", "duplicates", "heartbeats", "comments", "dropped",
          "reconnects", "attempts", "storm_dropped", "storm_not_streaming", "resumed")


def bench_figures(doc):
    """Figures from a `lifeline-bench load` (or `merge`) summary, by its own key names."""
    got = {k: doc[k] for k in ("held", "failed", "events", "gaps", "missing_events", "duplicates", "comments",
                                "dropped", "reconnects", "attempts") if isinstance(doc.get(k), (int, float))}
    lat = doc.get("latency_us") or {}
    for name in ("p50", "p99", "p999", "max"):
        if isinstance(lat.get(name), (int, float)) and lat.get("count", 1):
            got[name] = lat[name]
    # Comment lines are Lifeline's opening comment (one per response it opens) and its heartbeats;
    # the benchmark origin sends none. Responses opened = attempts that got as far as a stream.
    bad = sum((doc.get("bad_status") or {}).values())
    opened = (doc.get("attempts", 0) - doc.get("connect_errors", 0) - bad - doc.get("not_event_stream", 0)
              - doc.get("closed_before_head", 0))
    if "comments" in got:
        got["heartbeats"] = max(0, got["comments"] - max(0, opened))
    storm = doc.get("storm")
    if isinstance(storm, dict):
        got["storm_dropped"] = storm.get("dropped", 0)
        got["storm_not_streaming"] = storm.get("not_streaming", 0)
        got["resumed"] = storm.get("resumed", 0)
        got["storm_first_drop_us"] = storm.get("first_drop_epoch_us", 0)
        got["storm_last_drop_us"] = storm.get("last_drop_epoch_us", 0)
        res = storm.get("resume_us") or {}
        if res.get("count"):
            for name in ("p50", "p99", "max"):
                got[f"resume_{name}"] = res.get(name)
    return got


def load_summary(run_dir, meta):
    """Figures of the run's load processes (merged), the keys used, and any problems."""
    if meta.get("tool") == "h2load":
        return h2load_summary(run_dir, meta)
    merged = os.path.join(run_dir, "load-merged.json")
    files = [merged] if os.path.exists(merged) else sorted(glob(os.path.join(run_dir, "load-[0-9]*.json")))
    out = {"shards": int(num(meta.get("shards"), 1)), "keys": {}, "problems": []}
    if not files:
        out["problems"].append("no JSON from the load tool")
        return out
    per = []
    for path in files:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            out["problems"].append(f"{os.path.basename(path)}: {e}")
            continue
        if isinstance(doc, dict) and "latency_us" in doc and "subscriptions" in doc:
            got = bench_figures(doc)
            out["keys"]["schema"] = "lifeline-bench"
            if doc.get("errors"):
                out.setdefault("errors", {}).update(doc["errors"])
            if doc.get("bad_status"):
                out.setdefault("bad_status", {}).update(doc["bad_status"])
        else:  # another tool's summary: find each figure by what its key says
            flat = flatten(doc)
            got = {}
            for name in FIGURES:
                value, key = find(flat, name)
                if value is not None:
                    got[name] = value
                    out["keys"][name] = key
        per.append(got)
    if files != [merged] and len(files) < out["shards"]:
        out["problems"].append(f"{len(files)} of {out['shards']} load processes wrote JSON")
    for name in COUNTS:
        vals = [g[name] for g in per if name in g]
        out[name] = int(sum(vals)) if vals else None
    # The storm's span over every shard, and its resume percentiles (exact when merged; without a
    # merge the shards' maximum, an upper bound).
    firsts = [g["storm_first_drop_us"] for g in per if g.get("storm_first_drop_us")]
    if firsts:
        out["storm_first_drop_us"] = min(firsts)
        out["storm_last_drop_us"] = max(g.get("storm_last_drop_us", 0) for g in per)
    for name in ("p50", "p99", "max"):
        vals = [g[f"resume_{name}"] for g in per if g.get(f"resume_{name}") is not None]
        if vals:
            out[f"resume_{name}_us"] = vals[0] if len(per) == 1 else max(vals)
    if len(per) == 1:
        for name in ("p50", "p99", "p999", "max"):
            out[f"{name}_us"] = per[0].get(name)
    else:
        # Without `lifeline-bench merge`: p50 is the event-weighted mean of the shards', the others
        # their maximum (an upper bound).
        events = [g.get("events", 0) or 0 for g in per]
        p50s = [(g["p50"], e) for g, e in zip(per, events) if "p50" in g]
        if p50s:
            w = sum(e for _, e in p50s)
            out["p50_us"] = (sum(p * e for p, e in p50s) / w) if w else max(p for p, _ in p50s)
            out["percentiles_approximate"] = True
        for name in ("p99", "p999", "max"):
            vals = [g[name] for g in per if name in g]
            out[f"{name}_us"] = max(vals) if vals else None
    return out


def h2load_summary(run_dir, meta):
    out = {"shards": 1, "keys": {}, "problems": [], "tool": "h2load"}
    try:
        text = open(os.path.join(run_dir, "h2load.out"), errors="replace").read()
    except OSError:
        out["problems"].append("no h2load output")
        return out
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data", text)
    proto = re.search(r"Application protocol: (\S+)", text)
    if not (req and traffic):
        out["problems"].append("h2load output not understood")
        return out
    total, started, done, succeeded, failed, errored, timedout = map(int, req.groups())
    out["held"] = timedout                  # still open when -T ended the connection: held to the end
    out["failed"] = total - timedout
    out["data_bytes"] = int(traffic.group(3))
    out["application_protocol"] = proto.group(1) if proto else None
    event_bytes = int(num(meta.get("event_bytes"), 0))
    if event_bytes:
        out["events"] = out["data_bytes"] // event_bytes
        out["events_estimated"] = True
    return out


# ------------------------------------------------------------------------------------------------
# One run's figures

def run_figures(run_dir):
    meta = read_env(os.path.join(run_dir, "meta.env"))
    load = load_summary(run_dir, meta)
    hold, ramp = num(meta.get("hold_s")), num(meta.get("ramp_s"))
    t0, wa, wb, end = (num(meta.get(k)) for k in ("t0_us", "window_a_us", "window_b_us", "load_end_us"))
    window = (wb - wa) / 1e6 if wa and wb else 0.0
    wall = (end - t0) / 1e6 if end and t0 else 0.0
    # Delivery time: the load tool's --duration is taken to include the ramp; if its processes ran
    # clearly longer (a --duration that excludes the ramp), the ramp is added instead.
    delivery = hold - ramp / 2
    if ramp and wall > hold + 0.75 * ramp:
        delivery = hold + ramp / 2
    fig = {"window_s": round(window, 3), "load_wall_s": round(wall, 3), "delivery_s": delivery}
    gw = meta.get("gateway")
    events = load.get("events") or 0
    # Direct runs sample the origin (a bare SwiftNIO server writing the events): CPU only.
    if gw != "direct" or num(meta.get("cpu_b_ns")) > 0:
        cpu_sched_s = (num(meta.get("cpu_b_ns")) - num(meta.get("cpu_a_ns"))) / 1e9
        ticks = num(meta.get("cpu_b_ticks")) - num(meta.get("cpu_a_ticks"))
        cpu_stat_s = ticks / num(meta.get("clk_tck"), 100)
        # The per-thread run time is finer, but blind to threads that exit: use it only when the same
        # threads were there at both samples (and the kernel keeps it), else utime+stime from stat.
        same_threads = meta.get("cpu_a_threads") == meta.get("cpu_b_threads") and meta.get("cpu_a_threads") not in (None, "", "none")
        if same_threads and cpu_sched_s > 0:
            cpu_s, fig["cpu_source"] = cpu_sched_s, "schedstat"
        else:
            cpu_s, fig["cpu_source"] = cpu_stat_s, "stat"
        fig["cpu_s"] = round(cpu_s, 6)
        fig["cpu_schedstat_s"] = round(cpu_sched_s, 6)
        fig["cpu_stat_s"] = round(cpu_stat_s, 3)
        fig["cpu_pct_of_core"] = round(100 * cpu_s / window, 2) if window else None
        ev_win = events * window / delivery if delivery > 0 else 0
        fig["events_in_window"] = round(ev_win)
        fig["cpu_us_per_event"] = round(cpu_s * 1e6 / ev_win, 3) if ev_win >= 1 else None
        fig["cpu_stat_us_per_event"] = round(cpu_stat_s * 1e6 / ev_win, 3) if ev_win >= 1 else None
        hb = load.get("heartbeats") or 0
        fig["cpu_us_per_heartbeat"] = round(cpu_s * 1e6 / hb, 3) if hb and not events else None
    if gw != "direct":
        held = load.get("held")
        est = int(num(meta.get("established_in_window")))
        denom = held if held else (est if meta.get("protocol") != "h2" else 0)
        rss_idle, rss_hold = num(meta.get("rss_idle_kb")), num(meta.get("rss_hold_kb"))
        fig["rss_idle_kib"] = rss_idle
        fig["rss_hold_kib"] = rss_hold
        fig["rss_kib_per_client"] = round((rss_hold - rss_idle) / denom, 3) if denom else None
        fig["established_in_window"] = est
    if meta.get("letter") == "f":
        fig.update(storm_figures(meta, load, fig))
    return meta, load, fig


def origin_count(meta, what, a, b):
    """The origin's GET /stats count WHAT between samples A and B (None if either is missing)."""
    x, y = meta.get(f"origin_{what}_{a}"), meta.get(f"origin_{what}_{b}")
    if x in (None, "") or y in (None, ""):
        return None
    return int(num(y) - num(x))


def storm_figures(meta, load, fig):
    """Scenario f: the figures results.json records per run (see the module's docstring)."""
    out = {}
    resumed = load.get("resumed")
    out["resumed"] = resumed
    out["storm_dropped"] = load.get("storm_dropped")
    out["storm_not_streaming"] = load.get("storm_not_streaming")
    out["not_resumed"] = (load["storm_dropped"] - resumed) if load.get("storm_dropped") is not None and resumed is not None else None
    # From 0.5 s before the storm until the clients had gone: every request the storm caused.
    out["origin_requests"] = origin_count(meta, "stream_requests", "storm_a", "end")
    out["origin_requests_in_storm_window"] = origin_count(meta, "stream_requests", "storm_a", "storm_b")
    out["origin_requests_whole_run"] = origin_count(meta, "stream_requests", "before", "end")
    out["origin_resume_requests"] = origin_count(meta, "resume_requests", "storm_a", "end")
    out["origin_replayed_events"] = origin_count(meta, "replayed_events", "storm_a", "end")
    out["gaps"] = load.get("gaps")
    out["dups"] = load.get("duplicates")
    # A full accept queue drops the handshake's last ACK (the client then waits for the SYN-ACK to be
    # sent again: 1 s, then 2 s more, ...); machine-wide, so the origin's listener counts too.
    for k in ("tcp_listen_overflows", "tcp_syncookies_sent"):
        out[k] = int(num(meta[k])) if meta.get(k) not in (None, "") else None
    for name in ("p50", "p99", "max"):
        v = load.get(f"resume_{name}_us")
        out[f"resume_{name}_ms"] = round(v / 1000, 2) if v is not None else None
    first, last = load.get("storm_first_drop_us"), load.get("storm_last_drop_us")
    out["drop_spread_ms"] = round((last - first) / 1000, 1) if first and last else None
    at = num(meta.get("storm_at_us"))
    out["first_drop_after_storm_ms"] = round((first - at) / 1000, 1) if first and at else None
    # The gateway's CPU (direct: the origin's) over the storm window, per resumed subscription; and
    # the same less the steady state: the window just before (as long) is the ordinary fan-out.
    storm_s = cpu_between(meta, "storm_cpu")
    storm_len = (num(meta.get("storm_window_b_us")) - num(meta.get("storm_window_a_us"))) / 1e6
    base_s = fig.get("cpu_s")
    base_len = fig.get("window_s") or 0
    out["storm_window_s"] = round(storm_len, 3)
    out["cpu_storm_s"] = round(storm_s, 6)
    out["cpu_baseline_s"] = base_s
    out["core_pct_in_storm_window"] = round(100 * storm_s / storm_len, 1) if storm_len > 0 else None
    out["cpu_us_per_resume"] = round(storm_s * 1e6 / resumed, 2) if resumed else None
    if resumed and base_s is not None and base_len > 0:
        excess = storm_s - base_s * storm_len / base_len
        out["cpu_excess_us_per_resume"] = round(excess * 1e6 / resumed, 2)
    else:
        out["cpu_excess_us_per_resume"] = None
    return out


def fmt_int(v):
    return "—" if v is None else f"{int(v):,}"


def fmt(v, digits=2):
    return "—" if v is None else f"{v:,.{digits}f}"


def line(run_dir):
    meta, load, fig = run_figures(run_dir)
    who = f" {meta['instance']} ({meta.get('role')})" if meta.get("instance") else ""
    parts = [f"{meta.get('scenario')} {meta.get('gateway')}{who}:",
             f"held {fmt_int(load.get('held'))}/{fmt_int(num(meta.get('clients')))}",
             f"failed {fmt_int(load.get('failed'))}", f"events {fmt_int(load.get('events'))}",
             f"gaps {fmt_int(load.get('gaps'))} dups {fmt_int(load.get('duplicates'))}"]
    if load.get("heartbeats"):
        parts.append(f"heartbeats {fmt_int(load.get('heartbeats'))}")
    if meta.get("gateway") != "direct":
        parts.append(f"CPU {fmt(fig.get('cpu_us_per_event'))} µs/event ({fmt(fig.get('cpu_pct_of_core'), 1)}% of a core)")
        parts.append(f"RSS {fmt(fig.get('rss_kib_per_client'))} KiB/client")
    if load.get("p50_us") is not None:
        parts.append(f"latency p50 {fmt(load['p50_us'] / 1000)} ms p99 {fmt((load.get('p99_us') or 0) / 1000)} ms")
    if meta.get("kills"):
        parts.append(f"kills {meta['kills']}")
    if meta.get("letter") == "f":
        parts.append(f"storm: resumed {fmt_int(fig.get('resumed'))}/{fmt_int(fig.get('storm_dropped'))} "
                     f"resume p50 {fmt(fig.get('resume_p50_ms'))} ms p99 {fmt(fig.get('resume_p99_ms'))} ms, "
                     f"origin requests {fmt_int(fig.get('origin_requests'))}, "
                     f"CPU {fmt(fig.get('cpu_us_per_resume'))} µs/resume (excess {fmt(fig.get('cpu_excess_us_per_resume'))})")
    if load.get("problems"):
        parts.append("PROBLEMS: " + "; ".join(load["problems"]))
    if meta.get("gateway_alive") == "no":
        parts.append("GATEWAY EXITED")
    print("  " + " ".join(parts))


# ------------------------------------------------------------------------------------------------
# The table

def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def with_ratio(v, r, digits=2):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}" + (f" ({r:.2f}×)" if r is not None else "")


def cpu_between(meta, prefix):
    """CPU seconds between two cpu_of samples stored as PREFIX_a_* / PREFIX_b_* (as run_figures does)."""
    sched = (num(meta.get(f"{prefix}_b_ns")) - num(meta.get(f"{prefix}_a_ns"))) / 1e9
    stat = (num(meta.get(f"{prefix}_b_ticks")) - num(meta.get(f"{prefix}_a_ticks"))) / num(meta.get("clk_tck"), 100)
    same = meta.get(f"{prefix}_a_threads") == meta.get(f"{prefix}_b_threads") and meta.get(f"{prefix}_a_threads") not in (None, "", "none")
    return sched if same and sched > 0 else stat


def scale_out(runs):
    """Scenario r: figures that compare each instance with the single one; the table's rows."""
    by_scn = {}
    for r in runs:
        by_scn.setdefault(r["meta"]["scenario"], []).append(r)
    head = ["scenario", "configuration", "instance (role)", "held / failed", "events", "gaps / dups", "CPU µs/event",
            "× single", "core %", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "notes"]
    rows, summary = [], {}
    order = {"single": 0, "owner": 1, "follower": 2}
    for scn, rs in by_scn.items():
        single = next((r for r in rs if r["meta"].get("gateway") == "lifeline-single"), None)
        redis_runs = sorted((r for r in rs if r["meta"].get("gateway") == "lifeline-redis"),
                            key=lambda r: (order.get(r["meta"].get("role"), 3), r["meta"].get("instance", "")))
        s_cpu = single["figures"].get("cpu_us_per_event") if single else None
        s_p50 = single["load"].get("p50_us") if single else None
        s_p99 = single["load"].get("p99_us") if single else None
        out = {"single": None, "owner": None, "followers": [], "redis": None, "three_total": None}
        for r in ([single] if single else []) + redis_runs:
            m, load, f = r["meta"], r["load"], r["figures"]
            role = m.get("role", "?")
            cpu, p50, p99 = f.get("cpu_us_per_event"), load.get("p50_us"), load.get("p99_us")
            f["cpu_vs_single"] = round(cpu / s_cpu, 3) if cpu and s_cpu and r is not single else None
            f["added_p50_us_vs_single"] = round(p50 - s_p50, 1) if p50 is not None and s_p50 is not None and r is not single else None
            f["added_p99_us_vs_single"] = round(p99 - s_p99, 1) if p99 is not None and s_p99 is not None and r is not single else None
            entry = {"instance": m.get("instance"), "role": role, "clients": int(num(m.get("clients"))),
                     "held": load.get("held"), "events": load.get("events"), "cpu_us_per_event": cpu,
                     "cpu_vs_single": f["cpu_vs_single"], "p50_us": p50, "p99_us": p99,
                     "added_p50_us": f["added_p50_us_vs_single"], "added_p99_us": f["added_p99_us_vs_single"],
                     "core_pct": f.get("cpu_pct_of_core")}
            if r is single:
                out["single"] = entry
            elif role == "owner":
                out["owner"] = entry
            else:
                out["followers"].append(entry)
            notes = []
            if role not in ("single", "owner", "follower"):
                notes.append(f"**role {role}**")
            if m.get("gateway") == "lifeline-redis" and m.get("redis_reachable") not in ("True", "true"):
                notes.append(f"redis reachable: {m.get('redis_reachable')}")
            if load.get("missing_events"):
                notes.append(f"{load['missing_events']:,} events missing in the gaps")
            if load.get("failed") and load.get("errors"):
                top = sorted(load["errors"].items(), key=lambda kv: -kv[1])[:2]
                notes.append("errors: " + ", ".join(f"{k} ×{v}" for k, v in top))
            if m.get("gateway_alive") == "no":
                notes.append("**gateway exited**")
            if m.get("load_exit") not in (None, "0"):
                notes.append(f"load exit {m.get('load_exit')}")
            notes += load.get("problems", [])
            rows.append([
                f"{scn}: {m.get('title', '')}",
                "1 instance" if r is single else f"{m.get('instances', '3')} instances + Redis",
                f"{m.get('instance')} ({role})", f"{fmt_int(load.get('held'))} / {fmt_int(load.get('failed'))}",
                fmt_int(load.get("events")), f"{fmt_int(load.get('gaps'))} / {fmt_int(load.get('duplicates'))}",
                fmt(cpu), fmt(f["cpu_vs_single"]) + "×" if f["cpu_vs_single"] is not None else "",
                fmt(f.get("cpu_pct_of_core"), 1),
                fmt(p50 / 1000) if p50 is not None else "—", fmt(p99 / 1000) if p99 is not None else "—",
                fmt(f["added_p50_us_vs_single"] / 1000) if f["added_p50_us_vs_single"] is not None else "",
                fmt(f["added_p99_us_vs_single"] / 1000) if f["added_p99_us_vs_single"] is not None else "",
                "; ".join(notes)])
        if redis_runs:
            m = redis_runs[0]["meta"]
            window = redis_runs[0]["figures"].get("window_s") or 0
            rcpu = cpu_between(m, "redis_cpu")
            stored = num(m.get("redis_seq_b")) - num(m.get("redis_seq_a"))
            xlen = num(m.get("redis_xlen"))
            mem_delta = num(m.get("redis_used_memory_after")) - num(m.get("redis_used_memory_before"))
            key_bytes = num(m.get("redis_events_key_bytes"))
            rd = {"cpu_s": round(rcpu, 6), "core_pct": round(100 * rcpu / window, 2) if window else None,
                  "stored_in_window": stored, "cpu_us_per_stored_event": round(rcpu * 1e6 / stored, 2) if stored > 0 else None,
                  "xlen": xlen, "used_memory_delta": mem_delta, "events_key_bytes": key_bytes,
                  "used_memory_per_event": round(mem_delta / xlen, 1) if xlen else None,
                  "key_bytes_per_event": round(key_bytes / xlen, 1) if xlen else None,
                  "version": m.get("redis_version")}
            out["redis"] = rd
            rows.append([f"{scn}: {m.get('title', '')}", f"{m.get('instances', '3')} instances + Redis",
                         "redis-server", "", f"{fmt_int(stored)} stored", "",
                         f"{fmt(rd['cpu_us_per_stored_event'])} per stored event", "", fmt(rd["core_pct"], 1),
                         "", "", "", "",
                         f"memory per stored event: {fmt(rd['used_memory_per_event'], 0)} B (used_memory Δ "
                         f"{fmt_int(mem_delta)} B ÷ XLEN {fmt_int(xlen)}), {fmt(rd['key_bytes_per_event'], 0)} B "
                         f"(MEMORY USAGE of the events key ÷ XLEN); {fmt_int(num(m.get('event_bytes')))} "
                         f"bytes per encoded event; Redis {m.get('redis_version')}"])
            # The whole gateway side: every instance and Redis, per event delivered to any client.
            total_cpu = sum(r["figures"].get("cpu_s") or 0 for r in redis_runs) + rcpu
            total_ev = sum(r["figures"].get("events_in_window") or 0 for r in redis_runs)
            if total_ev and single and single["figures"].get("cpu_s") and single["figures"].get("events_in_window"):
                t = total_cpu * 1e6 / total_ev
                st = single["figures"]["cpu_s"] * 1e6 / single["figures"]["events_in_window"]
                out["three_total"] = {"cpu_us_per_event": round(t, 3), "vs_single": round(t / st, 3),
                                      "core_pct": round(100 * total_cpu / window, 1) if window else None}
                rows.append([f"{scn}: {m.get('title', '')}", f"{m.get('instances', '3')} instances + Redis",
                             "all 3 + Redis", "", fmt_int(sum(r["load"].get("events") or 0 for r in redis_runs)), "",
                             fmt(t), fmt(t / st) + "×", fmt(out["three_total"]["core_pct"], 1), "", "", "", "",
                             "the whole gateway side's CPU per delivered event"])
        summary[scn] = out
    if not rows:
        return "", summary
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(md) + "\n", summary


def storm_table(runs):
    """Scenario f: one row per gateway; results.json's "storm" block."""
    head = ["scenario", "gateway", "resumed / dropped", "origin requests (storm)", "gaps / dups", "resume p50 ms",
            "resume p99 ms", "+p99 ms vs direct", "CPU µs/resume (× nginx)", "excess CPU µs/resume", "core % (storm window)",
            "held / failed at end", "notes"]
    rows, summary = [], {}
    by_scn = {}
    for r in runs:
        by_scn.setdefault(r["meta"]["scenario"], []).append(r)
    for scn, rs in by_scn.items():
        nginx = next((r for r in rs if r["meta"]["gateway"] == "nginx"), None)
        direct = next((r for r in rs if r["meta"]["gateway"] == "direct"), None)
        ref = nginx["figures"].get("cpu_us_per_resume") if nginx else None
        # Direct is the clients' own floor: the same closes, connects and reads with no gateway.
        floor_p99 = direct["figures"].get("resume_p99_ms") if direct else None
        summary[scn] = {}
        for r in rs:
            m, load, f = r["meta"], r["load"], r["figures"]
            gw = m["gateway"]
            mine = f.get("cpu_us_per_resume")
            f["cpu_us_per_resume_vs_nginx"] = round(mine / ref, 3) if mine and ref else None
            p99 = f.get("resume_p99_ms")
            f["resume_p99_added_ms"] = round(p99 - floor_p99, 2) if p99 is not None and floor_p99 is not None and r is not direct else None
            summary[scn][gw] = {k: f.get(k) for k in (
                "resumed", "origin_requests", "gaps", "dups", "resume_p50_ms", "resume_p99_ms", "cpu_us_per_resume",
                "storm_dropped", "storm_not_streaming", "not_resumed", "resume_max_ms", "origin_requests_whole_run",
                "origin_resume_requests", "origin_replayed_events", "cpu_excess_us_per_resume",
                "core_pct_in_storm_window", "drop_spread_ms", "first_drop_after_storm_ms", "cpu_us_per_resume_vs_nginx",
                "tcp_listen_overflows", "tcp_syncookies_sent", "resume_p99_added_ms")}
            notes = []
            if gw == "direct":
                notes.append("CPU is the origin's")
            elif m.get("note"):
                notes.append(m["note"])
            if f.get("drop_spread_ms") is not None:
                notes.append(f"drops spread over {fmt(f['drop_spread_ms'], 1)} ms")
            if f.get("tcp_listen_overflows"):
                notes.append(f"{f['tcp_listen_overflows']:,} listen-queue overflows (machine-wide)")
            if f.get("storm_not_streaming"):
                notes.append(f"{f['storm_not_streaming']:,} not streaming at the storm")
            if f.get("origin_requests_whole_run") is not None:
                notes.append(f"{f['origin_requests_whole_run']:,} origin requests in the whole run")
            if f.get("origin_replayed_events"):
                notes.append(f"origin replayed {f['origin_replayed_events']:,} events")
            if load.get("missing_events"):
                notes.append(f"{load['missing_events']:,} events missing in the gaps")
            if load.get("dropped"):
                notes.append(f"{load['dropped']:,} streams dropped by the server")
            if load.get("errors"):
                top = sorted(load["errors"].items(), key=lambda kv: -kv[1])[:2]
                notes.append("errors: " + ", ".join(f"{k} ×{v}" for k, v in top))
            if m.get("gateway_alive") == "no":
                notes.append("**gateway exited**")
            if m.get("load_exit") not in (None, "0"):
                notes.append(f"load exit {m.get('load_exit')}")
            notes += load.get("problems", [])
            rows.append([
                f"{scn}: {m.get('title', '')}", gw,
                f"{fmt_int(f.get('resumed'))} / {fmt_int(f.get('storm_dropped'))}",
                fmt_int(f.get("origin_requests")),
                f"{fmt_int(f.get('gaps'))} / {fmt_int(f.get('dups'))}",
                fmt(f.get("resume_p50_ms")), fmt(f.get("resume_p99_ms")),
                fmt(f["resume_p99_added_ms"]) if f.get("resume_p99_added_ms") is not None else "",
                with_ratio(mine, f["cpu_us_per_resume_vs_nginx"]) if gw != "direct" else fmt(mine) + " (origin)" if mine is not None else "—",
                fmt(f.get("cpu_excess_us_per_resume")),
                fmt(f.get("core_pct_in_storm_window"), 1),
                f"{fmt_int(load.get('held'))} / {fmt_int(load.get('failed'))}",
                "; ".join(notes)])
    if not rows:
        return "", summary
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(md) + "\n", summary


def final(work, out):
    machine = read_env(os.path.join(work, "machine.env"))
    runs, so_runs, st_runs = [], [], []
    for run_dir in sorted(glob(os.path.join(work, "runs", "*"))):
        if not os.path.exists(os.path.join(run_dir, "meta.env")):
            continue
        meta, load, fig = run_figures(run_dir)
        kind = {"r": so_runs, "f": st_runs}.get(meta.get("letter"), runs)
        kind.append({"meta": meta, "load": load, "figures": fig})
    so_table, so_summary = scale_out(so_runs)
    st_table, st_summary = storm_table(st_runs)
    floors = []
    for path in sorted(glob(os.path.join(work, "floor-*.json"))):
        try:
            with open(path) as f:
                floors.append(json.load(f))
        except (OSError, ValueError):
            pass
    # floor.c's variants: its C reader or the benchmark's clients, write() or io_uring batches.
    # Older results have neither field: write() with the C reader.
    def floor_kind(f):
        return (f.get("mode", "write"), f.get("clients", "fork"))
    floor_by_n = {int(f["sockets"]): f for f in floors if "sockets" in f and floor_kind(f) == ("write", "fork")}
    other_floors = {}
    for f in floors:
        if "sockets" in f and floor_kind(f) != ("write", "fork"):
            other_floors.setdefault(int(f["sockets"]), {})[floor_kind(f)] = f

    # Per scenario: the direct run's latency and nginx's figures, for differences and ratios.
    by_scn = {}
    for r in runs:
        by_scn.setdefault(r["meta"]["scenario"], []).append(r)
    saturated = {}
    for scn, rs in by_scn.items():
        direct = next((r for r in rs if r["meta"]["gateway"] == "direct"), None)
        nginx = next((r for r in rs if r["meta"]["gateway"] == "nginx"), None)
        # The direct run has no gateway: if it could not hold every client, the origin and the load
        # clients (which share the other core(s)) are the bottleneck, and no figure of the scenario
        # tells anything about the gateways.
        if direct:
            want = int(num(direct["meta"].get("clients")))
            held = direct["load"].get("held") or 0
            if want and held < 0.99 * want:
                saturated[scn] = f"CLIENT-BOUND: even direct held only {held:,} of {want:,}; figures not comparable"
        for r in rs:
            r["figures"]["client_bound"] = scn in saturated
        for r in rs:
            f, load = r["figures"], r["load"]
            if direct and r is not direct:
                for p in ("p50", "p99"):
                    a, b = load.get(f"{p}_us"), direct["load"].get(f"{p}_us")
                    f[f"added_{p}_us"] = round(a - b, 1) if a is not None and b is not None else None
        for r in rs:
            f = r["figures"]
            for name in ("cpu_us_per_event", "rss_kib_per_client", "added_p99_us"):
                ref = nginx["figures"].get(name) if nginx else None
                mine = f.get(name)
                # A ratio of differences that are noise (zero or negative) would mean nothing.
                rr = ratio(mine, ref) if (mine or 0) > 0 and (ref or 0) > 0 else None
                f[f"{name}_vs_nginx"] = round(rr, 3) if rr is not None else None
            fl = floor_by_n.get(int(num(r["meta"].get("clients"))))
            if fl and f.get("cpu_us_per_event") is not None and r["meta"].get("letter") == "b":
                f["cpu_vs_floor"] = round(f["cpu_us_per_event"] / fl["cpu_us_per_write"], 3)
            others = other_floors.get(int(num(r["meta"].get("clients"))), {})
            if f.get("cpu_us_per_event") is not None and r["meta"].get("letter") == "b":
                for kind, key in ((("write", "http"), "cpu_vs_client_floor"), (("uring", "http"), "cpu_vs_client_uring_floor"),
                                  (("uring", "fork"), "cpu_vs_uring_floor")):
                    if kind in others and others[kind].get("cpu_us_per_write"):
                        f[key] = round(f["cpu_us_per_event"] / others[kind]["cpu_us_per_write"], 3)

    head = ["scenario", "gateway", "held / failed", "events", "gaps / dups", "CPU µs/event (× nginx)", "× floor",
            "core %", "RSS KiB/client (× nginx)", "+p50 ms", "+p99 ms (× nginx)", "p99 ms", "notes"]
    rows = []
    for scn, rs in by_scn.items():
        for r in rs:
            m, load, f = r["meta"], r["load"], r["figures"]
            gw = m["gateway"]
            if m.get("protocol") == "h2" and gw != "direct":
                gw += " (h2/TLS)"
            elif m.get("protocol") == "h2":
                gw += " (HTTP/1.1)"
            elif m.get("protocol") == "https" and gw != "direct":
                gw += " (HTTP/1.1 over TLS)"
            notes = []
            if scn in saturated and m["gateway"] == "direct":
                notes.append("**" + saturated[scn] + "**")
            elif scn in saturated:
                notes.append("client-bound scenario")
            if m.get("note"):
                notes.append(m["note"])
            if load.get("tool") == "h2load":
                notes.append("h2load: no latency; events ≈ data bytes ÷ event size")
            if load.get("heartbeats") and load.get("held"):
                notes.append(f"{load['heartbeats'] / load['held']:.1f} heartbeats/client")
            if m.get("kills"):
                notes.append(f"{len(m['kills'].split())} upstream kills ({m.get('kill_mode')})")
            if load.get("missing_events"):
                notes.append(f"{load['missing_events']:,} events missing in the gaps")
            if load.get("dropped"):
                notes.append(f"{load['dropped']:,} streams dropped")
            if load.get("reconnects"):
                notes.append(f"{load['reconnects']:,} reconnects")
            if load.get("failed") and load.get("errors"):
                top = sorted(load["errors"].items(), key=lambda kv: -kv[1])[:2]
                notes.append("errors: " + ", ".join(f"{k} ×{v}" for k, v in top))
            if m.get("gateway_alive") == "no":
                notes.append("**gateway exited**")
            if m.get("load_exit") not in (None, "0"):
                notes.append(f"load exit {m.get('load_exit')}")
            notes += load.get("problems", [])
            if f.get("cpu_vs_client_floor") is not None:
                notes.append(f"× floor with the same clients {fmt(f['cpu_vs_client_floor'])}")
            if f.get("cpu_vs_client_uring_floor") is not None:
                notes.append(f"× their io_uring floor {fmt(f['cpu_vs_client_uring_floor'])}")
            ap50, ap99 = f.get("added_p50_us"), f.get("added_p99_us")
            if not load.get("events"):
                ap50 = ap99 = None
            rows.append([
                f"{scn}: {m.get('title', '')}", gw,
                f"{fmt_int(load.get('held'))} / {fmt_int(load.get('failed'))}",
                fmt_int(load.get("events")),
                f"{fmt_int(load.get('gaps'))} / {fmt_int(load.get('duplicates'))}",
                (fmt(f.get("cpu_us_per_event")) + " (origin)" if f.get("cpu_us_per_event") is not None else "—")
                if m["gateway"] == "direct" else with_ratio(f.get("cpu_us_per_event"), f.get("cpu_us_per_event_vs_nginx")),
                fmt(f.get("cpu_vs_floor")) if f.get("cpu_vs_floor") is not None else "",
                "—" if m["gateway"] == "direct" else fmt(f.get("cpu_pct_of_core"), 1),
                "—" if m["gateway"] == "direct" else with_ratio(f.get("rss_kib_per_client"), f.get("rss_kib_per_client_vs_nginx")),
                fmt(ap50 / 1000) if ap50 is not None else "—",
                with_ratio(ap99 / 1000, f.get("added_p99_us_vs_nginx")) if ap99 is not None else "—",
                fmt(load["p99_us"] / 1000) if load.get("p99_us") is not None and load.get("events") else "—",
                "; ".join(notes),
            ])
        if rs and rs[0]["meta"].get("letter") == "b":
            fl = floor_by_n.get(int(num(rs[0]["meta"].get("clients"))))
            if fl and not any(r[0].endswith(": floor") and f"{fl['sockets']:,} sockets" in r[1] for r in rows):
                rows.append([f"{scn}: floor", f"write() × {fl['sockets']:,} sockets", "", f"{int(fl['writes']):,} writes",
                             "", fmt(fl["cpu_us_per_write"]), "1.00", "", "", "", "", "",
                             f"{fl['bytes']} bytes per event; floor.c on the gateway's core"])
                for (mode, clients), of in sorted(other_floors.get(fl["sockets"], {}).items(), key=lambda kv: (kv[0][1] == "fork", kv[0][0])):
                    what = ("io_uring sends" if mode == "uring" else "write()") + f" × {of['sockets']:,} sockets"
                    who = "the benchmark's clients (lifeline-bench load)" if clients == "http" else "floor.c's C reader"
                    rows.append([f"{scn}: floor", what, "", f"{int(of['writes']):,} writes", "", fmt(of["cpu_us_per_write"]),
                                 fmt(of["cpu_us_per_write"] / fl["cpu_us_per_write"]), "", "", "", "", "",
                                 f"read by {who}"])
    for n, fl in sorted(floor_by_n.items()):
        if not any(r[0].endswith(": floor") and f"{n:,} sockets" in r[1] for r in rows):
            rows.append(["floor", f"write() × {n:,} sockets", "", f"{int(fl['writes']):,} writes", "",
                         fmt(fl["cpu_us_per_write"]), "1.00", "", "", "", "", "", f"{fl['bytes']} bytes per event"])

    facts = (f"{machine.get('date')}, {machine.get('cpu')}, {machine.get('nproc')} cores, kernel {machine.get('kernel')}, "
             f"Debian {machine.get('debian')}; nginx {machine.get('nginx')}, HAProxy {machine.get('haproxy')}, "
             f"Lifeline commit `{machine.get('lifeline_commit')}`; gateway on core {machine.get('gateway_cpu')}, "
             f"origin and clients on core(s) {machine.get('other_cpus')}; ulimit -n {machine.get('ulimit_n')}")
    md = [f"Side-by-side run: {facts}", f"Command: `{machine.get('command', 'Benchmarks/run').strip()}`", ""]
    if rows:
        md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    if so_table:
        if rows:
            md.append("")
        md += ["Scale-out (scenario r): every instance and redis-server on the gateway's core; "
               "× single and +p50/+p99 against the one-instance run of the same scenario.", "", so_table.rstrip("\n")]
    if st_table:
        if len(md) > 3:
            md.append("")
        md += ["Reconnect storm (scenario f): every client drops at one moment and reconnects at once with "
               "Last-Event-ID; resume = drop -> first event on the new connection; origin requests from 0.5 s "
               "before the storm until the clients had gone; CPU over the storm window (0.5 s before to "
               "5.5 s after) ÷ resumed, excess = less the window just before it.", "", st_table.rstrip("\n")]
    table = "\n".join(md) + "\n"

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"machine": machine, "runs": runs + so_runs + st_runs, "floor": floors, "scale_out": so_summary,
                   "storm": st_summary, "table_markdown": table}, f, indent=1)
    print()
    print(table)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "line":
        line(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "final":
        final(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
