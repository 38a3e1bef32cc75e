"""deploy/grafana/lifeline.json: every query of the dashboard names only metrics, labels and
label values of the contract that test_prometheus.py holds /metrics to (METRICS_CONTRACT), and
is PromQL that Prometheus accepts (`promtool check rules` on the queries as recording rules).

A panel on a metric that was renamed or never existed shows "No data" forever; this fails first.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_prometheus import METRICS_CONTRACT

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "lifeline.json"

# Labels Prometheus adds to every scraped series, on top of the contract's own.
TARGET_LABELS = {"instance", "job"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "inf", "nan"}
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"\s*")


def _queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' nested panels included."""
    found = []

    def visit(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel.get("title", "?"), target["expr"]))
            visit(panel.get("panels", []))

    visit(dashboard["panels"])
    return found


def problems_of(expr: str) -> list[str]:
    """What in `expr` is not in the contract: unknown metrics, labels or label values."""
    problems = []
    metrics_used = set()
    # Labels in matchers, checked against the metric they follow.
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}", expr):
        metric = m.group(1)
        for matcher in filter(str.strip, m.group(2).split(",")):
            parsed = MATCHER.fullmatch(matcher)
            if parsed is None:
                problems.append(f"cannot read matcher {matcher!r}")
                continue
            label, op, value = parsed.groups()
            if label in TARGET_LABELS or metric not in METRICS_CONTRACT:
                continue
            allowed = METRICS_CONTRACT[metric][1]
            if label not in allowed:
                problems.append(f"{metric} has no label {label}")
            elif op == "=" and allowed[label] and value not in allowed[label]:
                problems.append(f'{metric}{{{label}="{value}"}}: not one of {sorted(allowed[label])}')
    # Labels in by (...) / without (...) must belong to some metric of the expression.
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    grouping_labels = set()
    for m in GROUPING.finditer(stripped):
        grouping_labels |= {label.strip() for label in m.group(2).split(",") if label.strip()}
    stripped = GROUPING.sub(" ", stripped)
    stripped = MATCHERS.sub(" ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors, [5m] or [$__rate_interval]
    for m in IDENTIFIER.finditer(stripped):
        name = m.group(0)
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        if m.start() > 0 and stripped[m.start() - 1] == "$":
            continue  # a Grafana variable
        metrics_used.add(name)
        if name not in METRICS_CONTRACT:
            problems.append(f"{name} is not a metric of the contract")
    known_labels = TARGET_LABELS.union(*(METRICS_CONTRACT[n][1].keys() for n in metrics_used if n in METRICS_CONTRACT))
    for label in grouping_labels - known_labels:
        problems.append(f"grouping by {label}, which none of {sorted(metrics_used)} has")
    if not metrics_used:
        problems.append("names no metric")
    return problems


def test_the_checker_catches_what_it_is_for():
    assert problems_of('sum by (reason) (rate(lifeline_requests_refused_total{instance=~"$instance"}[$__rate_interval]))') == []
    assert problems_of("rate(lifeline_events_sent_total[5m]) / clamp_min(lifeline_streams, 1)") == []
    assert problems_of("lifeline_clients_total") == ["lifeline_clients_total is not a metric of the contract"]
    assert problems_of('lifeline_requests_refused_total{reason="teapot"}')[0].startswith(
        'lifeline_requests_refused_total{reason="teapot"}: not one of')
    assert problems_of('lifeline_streams{route="/x"}') == ["lifeline_streams has no label route"]
    assert problems_of("sum by (route) (lifeline_streams)") == ["grouping by route, which none of ['lifeline_streams'] has"]


def test_dashboard_is_valid_json_with_unique_ids_and_a_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "lifeline" and dashboard["title"] == "Lifeline"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        assert panel.get("description"), f"{panel['title']} says nothing about what it shows"
    # No panel overlaps another on the 24-column grid.
    cells = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]


def test_every_query_names_only_metrics_of_the_contract():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    queries.append(("variable instance", dashboard["templating"]["list"][1]["definition"].replace(
        "label_values(lifeline_build_info, instance)", "lifeline_build_info")))
    assert len(queries) > 10
    failures = [f"{title}: {expr}: {problem}" for title, expr in queries for problem in problems_of(expr)]
    assert not failures, "\n".join(failures)
    # Every metric of the contract is on some panel (process_start_time_seconds aside: an
    # uptime, not worth a panel).
    used = {name for _, expr in queries for name in IDENTIFIER.findall(expr) if name in METRICS_CONTRACT}
    assert set(METRICS_CONTRACT) - used == {"process_start_time_seconds"}, set(METRICS_CONTRACT) - used


def test_every_query_is_promql_that_prometheus_accepts(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/setup (Debian package prometheus)", pytrace=False)
    queries = _queries(json.loads(DASHBOARD.read_text()))
    # Grafana's variables as Prometheus would get them.
    rules = [{"record": f"lifeline:dashboard_query_{i}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*")}
             for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
