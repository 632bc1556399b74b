"""The operator's cockpit on Prometheus' own tools and on a real Prometheus server.

- deploy/prometheus/mmdaemon.rules.yml passes ``promtool check rules``, and its unit tests
  (mmdaemon.rules.test.yml) pass ``promtool test rules`` and cover every alert both ways
  (fires, and a near miss that does not) and every recorded series;
- the scrape-config example passes ``promtool check config``;
- every query of the Grafana dashboard parses (``promtool check rules`` on the queries as
  recording rules: promtool has no other PromQL checker);
- a real Prometheus (``/usr/bin/prometheus``, Debian package ``prometheus``) on loopback,
  loading the real rule file, scrapes a real daemon trading against ``mmdaemon sim``: every
  dashboard query returns data, every rule evaluates without error, and the kill switch,
  tripped by SIGUSR1, fires MmdaemonKillSwitchLatched.

Without promtool or prometheus the tests skip with the reason. Run with ``-s`` to see the
queries, their results and promtool's output (the issue's "Must show").
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import sim_config
from tests.unit.test_grafana_dashboard import exprs, load, substitute

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "mmdaemon.rules.yml"
RULES_TEST = PROMETHEUS_DIR / "mmdaemon.rules.test.yml"
SCRAPE_EXAMPLE = PROMETHEUS_DIR / "prometheus.yml"
INSTALLED_RULES = "/etc/prometheus/mmdaemon.rules.yml"  # where the example names the rules
KILL_ALERT = "MmdaemonKillSwitchLatched"


def _tool(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        pytest.skip(f"{name} not installed (Debian/Ubuntu package 'prometheus')")
    return tool


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=120)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\S+)$", RULES.read_text(), flags=re.MULTILINE)


def recorded_names() -> list[str]:
    return re.findall(r"^\s*- record: (\S+)$", RULES.read_text(), flags=re.MULTILINE)


# -- promtool ----------------------------------------------------------------------------


def test_the_rule_file_passes_promtool_check_rules() -> None:
    proc = _promtool("check", "rules", str(RULES))
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(alert_names()) + len(recorded_names())
    assert f"SUCCESS: {total} rules found" in proc.stdout, proc.stdout


def test_every_alert_and_recorded_series_has_a_passing_promtool_unit_test() -> None:
    names = alert_names()
    assert len(names) >= 9, names
    text = RULES_TEST.read_text()
    # an alert_rule_test case: alertname, then exp_alerts empty (a near miss) or a list
    quiet = set(re.findall(r"alertname: (\S+)\n\s+exp_alerts: \[\]", text))
    firing = set(re.findall(r"alertname: (\S+)\n\s+exp_alerts:\n\s+- exp_labels:", text))
    assert not sorted(set(names) - firing), "alerts never tested firing"
    assert not sorted(set(names) - quiet), "alerts never tested staying quiet"
    tested_exprs = set(re.findall(r"^\s+- expr: (\S+)$", text, flags=re.MULTILINE))
    assert not sorted(set(recorded_names()) - tested_exprs), "recorded series never tested"
    proc = _promtool("test", "rules", str(RULES_TEST))
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_the_scrape_config_example_passes_promtool_check_config(tmp_path: Path) -> None:
    text = SCRAPE_EXAMPLE.read_text()
    assert INSTALLED_RULES in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(INSTALLED_RULES, str(RULES)))
    proc = _promtool("check", "config", str(config))
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout, proc.stdout


def _queries_as_rules(path: Path, queries: list[str]) -> Path:
    """``queries`` as recording rules (JSON strings are YAML double-quoted scalars)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(queries):
        lines += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(expr)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = [substitute(expr, "127.0.0.1:9101") for _, expr in exprs(load())]
    proc = _promtool("check", "rules", str(_queries_as_rules(tmp_path / "q.yml", queries)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and the check does catch a bad one
    bad = _queries_as_rules(tmp_path / "bad.yml", ["sum by (instance (mmdaemon_fills_total)"])
    assert _promtool("check", "rules", str(bad)).returncode != 0


# -- a real Prometheus -------------------------------------------------------------------


class Prometheus:
    """A Prometheus server on a free loopback port, storing in a temp dir."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        # 1 s scrapes and evaluations: rates need two scrapes; the rules are the real file
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {json.dumps(str(RULES))}\n"
            "scrape_configs:\n  - job_name: mmdaemon\n    static_configs:\n"
            f"      - targets: [{json.dumps(target)}]\n"
            '        labels: {unit: "mmdaemon@test"}\n')
        self.log = tmp_path / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [_tool("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def prometheus_scraping(tmp_path: Path, target: str) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, target)
    try:
        wait_for(server.ready, 30, "Prometheus ready")
        yield server
    finally:
        server.stop()


def _shown(result: list[dict[str, Any]]) -> str:
    """A query's result, one series a line: its labels (the target's left out) and value."""
    out = []
    for row in result:
        labels = {k: v for k, v in row["metric"].items()
                  if k not in {"instance", "job", "unit"}}
        out.append(f"      {labels} = {row['value'][1]}")
    return "\n".join(out)


def test_a_real_prometheus_answers_every_dashboard_query_and_fires_the_kill_alert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool("prometheus")
    sim_port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{metrics_port}"
    config = sim_config(tmp_path, sim_port, tmp_path / "state", monkeypatch,
                        f"\n[metrics]\nport = {metrics_port}\n")
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(sim_port),
                   "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        daemon = Daemon(config)
        try:
            with prometheus_scraping(tmp_path, target) as prom:
                daemon.wait_event("venue_status", ready=True, timeout=30)
                # a fill and its 1 s markout, so the PnL and markout panels show figures,
                # not NaN (at speed 5 the first fill comes within seconds)
                wait_for(lambda: prom.query(
                    f'mmdaemon_markout_resolved_fills_total{{instance="{target}",'
                    'horizon_seconds="1"} > 0'), 45, "a fill with its 1 s markout resolved")
                _every_query_returns_data(prom, target)
                _rules_evaluate_cleanly(prom)
                _the_kill_switch_fires_its_alert(prom, daemon, target)
            assert daemon.stop() == 0
        finally:
            if daemon.proc.poll() is None:
                daemon.kill()
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


def _every_query_returns_data(prom: Prometheus, target: str) -> None:
    queries = [(title, substitute(expr, target)) for title, expr in exprs(load())]
    answers: dict[str, list[dict[str, Any]]] = {}

    def all_answered() -> bool:
        for _, expr in queries:
            if not answers.get(expr):
                answers[expr] = prom.query(expr)
        return all(answers.values())

    try:
        # rates need two scrapes of the daemon after its journal opened: polled, 1 s apart
        wait_for(all_answered, 45, "every dashboard query answered")
    finally:
        print(f"\n-- {len(queries)} dashboard queries against Prometheus "
              f"(127.0.0.1:{prom.port}), instance {target}:")
        for title, expr in queries:
            print(f"  [{title}] {expr}\n{_shown(answers.get(expr, [])) or '      (no data)'}")
    # the board shows this daemon: quoting, its position read, its state ACTIVE
    state = prom.query(f'mmdaemon_trading_state{{instance="{target}"}} == 1')
    assert [r["metric"]["state"] for r in state] == ["ACTIVE"], state
    markout = prom.query(f'mmdaemon_markout_bps{{instance="{target}",horizon_seconds="1"}}')
    assert [r["value"][1] != "NaN" for r in markout] == [True], markout
    assert prom.alerts(KILL_ALERT) == [], "the kill alert fired before any kill"


def _rules_evaluate_cleanly(prom: Prometheus) -> None:
    groups = prom.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(alert_names()) + len(recorded_names())
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken


def _the_kill_switch_fires_its_alert(prom: Prometheus, daemon: Daemon, target: str) -> None:
    started = time.monotonic()
    daemon.signal(signal.SIGUSR1)
    daemon.wait_event("kill_switch_tripped", timeout=10)

    def firing() -> list[dict[str, Any]]:
        return [a for a in prom.alerts(KILL_ALERT)
                if a["state"] == "firing" and a["labels"]["instance"] == target]

    # the rule has no `for:`: it fires at the first evaluation after the first scrape
    # that saw the latch (1 s + 1 s here)
    alerts = wait_for(firing, 15, f"{KILL_ALERT} firing")
    took = time.monotonic() - started
    print(f"\n-- SIGUSR1 -> {KILL_ALERT} firing in {took:.1f} s:\n  {json.dumps(alerts)}")
    (alert,) = alerts
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["unit"] == "mmdaemon@test"
    assert target in alert["annotations"]["summary"]
    assert "Kill switch and re-arm" in alert["annotations"]["description"]
    killed = prom.query(f'mmdaemon_trading_state{{instance="{target}",state="KILLED"}}')
    assert [r["value"][1] for r in killed] == ["1"], killed
