"""The Grafana dashboard (deploy/grafana/mmdaemon.json), read as data: its shape, its
variables, and every metric its queries name exists (a family the daemon serves, or a series
deploy/prometheus/mmdaemon.rules.yml records). That each query parses and returns data is
tested against a real Prometheus: tests/process/test_prometheus_cockpit.py."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "mmdaemon.json"
RULES = REPO / "deploy" / "prometheus" / "mmdaemon.rules.yml"
METRICS_SOURCE = REPO / "mmdaemon" / "metrics.py"
# the classic JSON model of Grafana 12/13 (an older Grafana refuses a newer schema; a
# newer one migrates this one on import)
SCHEMA_VERSION = 42
GRAFANA_SERIES = ("up",)  # Prometheus' own, per target
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_info")
# an identifier not followed by "(" (a function) nor inside {} or "" (a label or value)
_IDENT = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")  # not the e of 1e-9
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}
RATE_INTERVAL = "1m"  # what the tests put for Grafana's $__rate_interval


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query (rows excluded), nested rows' panels included."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL as written) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p["targets"]]


def substitute(expr: str, instance: str) -> str:
    """``expr`` as Grafana sends it with ``$instance`` = the regex ``instance`` and the
    built-in ``$__rate_interval`` = :data:`RATE_INTERVAL`."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", instance)


def series_named(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or label values (good enough for the expressions of this dashboard)."""
    text = re.sub(r'"[^"]*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range durations
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def served_families() -> set[str]:
    """The family names mmdaemon/metrics.py declares (as quoted strings)."""
    return set(re.findall(r'"(mmdaemon_[a-z0-9_]+)"', METRICS_SOURCE.read_text()))


def recorded_series() -> set[str]:
    return set(re.findall(r"^\s*- record: (\S+)$", RULES.read_text(), flags=re.MULTILINE))


def is_known(name: str, families: set[str], recorded: set[str]) -> bool:
    if name in recorded or name in GRAFANA_SERIES:
        return True
    candidates = {name} | {name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)}
    return bool(candidates & families) or f"{name}_total" in families


def test_the_dashboard_is_grafanas_classic_model_with_a_datasource_variable() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["uid"] == "mmdaemon" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]
    assert instance["datasource"]["uid"] == "${datasource}"
    assert "label_values(mmdaemon_instrument_info, instance)" in json.dumps(instance["query"])


def test_every_panel_queries_the_datasource_variable() -> None:
    dashboard = load()
    found = panels(dashboard)
    assert len(found) >= 20
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in found:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} says nothing of itself"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()


def test_every_variable_is_used() -> None:
    dashboard = load()
    text = json.dumps(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        assert f"${variable['name']}" in text or "${" + variable["name"] + "}" in text, \
            variable["name"]


def test_every_instance_panel_filters_on_the_instance_variable() -> None:
    """Every query but the firm-wide sums (which are over every instance on purpose)."""
    for title, expr in exprs(load()):
        if expr.startswith("firm"):
            continue
        assert 'instance=~"$instance"' in expr, (title, expr)


def test_every_metric_the_dashboard_names_is_served_or_recorded() -> None:
    families, recorded = served_families(), recorded_series()
    assert len(families) >= 50 and len(recorded) >= 10, (len(families), len(recorded))
    named: set[str] = set()
    for title, expr in exprs(load()):
        names = series_named(expr)
        assert names, (title, expr)
        unknown = sorted(n for n in names if not is_known(n, families, recorded))
        assert not unknown, f"panel {title!r} queries {unknown}, which nothing serves"
        named |= names
    # the families the issue names are on the board
    for family in ("mmdaemon_trading_state", "mmdaemon_risk_condition",
                   "mmdaemon_position_lots", "mmdaemon_fees_quote", "mmdaemon_funding_quote",
                   "mmdaemon_markout_bps", "mmdaemon_feed_delay_seconds",
                   "mmdaemon_book_gaps_total", "mmdaemon_book_resyncs_total",
                   "mmdaemon_feed_reconnects_total", "mmdaemon_kill_switch_latched",
                   "mmdaemon_risk_inventory_soft_limit_lots",
                   "mmdaemon_risk_inventory_hard_limit_lots", "mmdaemon_risk_max_loss_quote",
                   "mmdaemon_risk_max_drawdown_quote", "mmdaemon_pnl_peak_quote"):
        assert family in named, family


def test_the_metric_name_reader_sees_what_it_must() -> None:
    """The reader above is a regex: pin what it takes and what it leaves."""
    expr = ('sum by (job, le) (rate(mmdaemon_tick_to_quote_seconds_bucket{instance=~"$x",'
            'le="+Inf"}[1m])) / on (job) group_left (symbol) firm:x:sum > bool 1e-9')
    assert series_named(expr) == {"mmdaemon_tick_to_quote_seconds_bucket", "firm:x:sum"}
    assert not is_known("mmdaemon_no_such_thing", served_families(), recorded_series())
    assert is_known("mmdaemon_order_requests_total", served_families(), recorded_series())
