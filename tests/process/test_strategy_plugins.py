"""User strategies in real processes: the worked example (examples/ofi.py) named in a config
and replayed on the bundled recording; a strategy that raises inside a daemon trading
against the sim pulls every quote at the venue, the daemon keeps running, and quoting
resumes when the strategy answers again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, gz_lines, wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import open_orders, sim_config


def replay(config: Path, *args: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    done = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", "--config", str(config),
                           "--json", *args], capture_output=True, timeout=300, check=True)
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    return json.loads(done.stdout), events


@contextmanager
def daemon_quoting_at_the_sim(config: Path, port: int, speed: str = "5") -> Iterator[Daemon]:
    """``mmdaemon sim`` on the bundled recording (at ``speed``; the sim's venue times run at
    that speed, so only at 1 are they on the daemon's clock) and ``mmdaemon run --config
    config`` against it, yielded once the venue is ready and our quotes rest there; both
    processes stopped after (the sim must exit 0)."""
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", speed)
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("venue_status", ready=True, timeout=30)
            wait_for(lambda: open_orders(port), 30, "the strategy's quotes rest at the venue")
            yield d
        finally:
            if d.proc.poll() is None:
                d.kill()
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


def test_the_example_strategy_named_in_its_config_quotes_the_bundled_recording(
        tmp_path: Path) -> None:
    summary, events = replay(REPO / "examples" / "ofi.toml", "--state-dir", str(tmp_path))
    loaded = [e for e in events if e["event"] == "strategy_loaded"]
    assert loaded and loaded[0]["strategy"] == "ofi:OrderFlowImbalance"
    assert loaded[0]["file"] == str(REPO / "examples" / "ofi.py")
    assert summary["orders"] > 100 and summary["fills"] > 0  # type: ignore[operator]
    assert summary["state"] == "ACTIVE"
    assert not [e for e in events if e["event"].startswith("strategy_error")]
    # the example quotes what it computes, not the built-in: 3 ticks from its fair value
    builtin, _ = replay(REPO / "config" / "dryrun.toml", "--state-dir", str(tmp_path / "b"))
    assert summary["orders"] != builtin["orders"] and summary["fills"] != builtin["fills"]


# SystemExit is not an Exception: let through, it stopped the daemon with a quote resting
@pytest.mark.parametrize("exc", ["RuntimeError", "SystemExit"])
def test_a_strategy_that_raises_pulls_the_quotes_and_the_daemon_keeps_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: str) -> None:
    port = free_port()
    trigger = tmp_path / "raise-now"
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch, f'''
[strategy]
class = "flaky:Flaky"
path = ["{REPO / "tests" / "strategies"}"]
error_hold_ms = 300

[strategy.params]
trigger = "{trigger}"
exc = "{exc}"
''')
    with daemon_quoting_at_the_sim(config, port) as d:
        d.wait_event("strategy_loaded", strategy="flaky:Flaky")
        trigger.touch()
        i, error = d.wait_event("strategy_error", timeout=30)
        assert error["error"].startswith(exc) and "exists" in error["error"]
        assert "exception" in error  # with its traceback
        d.wait_event("state_changed", start=i, new="HALTED", reason="strategy_error")
        d.wait_event("orders_cancelled", start=i)
        wait_for(lambda: open_orders(port) == [], 10, "our orders gone from the venue")
        assert d.proc.poll() is None  # still running
        trigger.unlink()
        d.wait_event("state_changed", start=i, reason="strategy_error_cleared")
        wait_for(lambda: open_orders(port), 30, "quoting again after the strategy recovered")
        assert len([e for e in d.events if e.get("event") == "strategy_error"]) == 1
        assert d.stop() == 0


def test_check_config_refuses_a_strategy_that_would_not_load(tmp_path: Path) -> None:
    text = (REPO / "examples" / "ofi.toml").read_text()
    bad = tmp_path / "ofi.toml"
    bad.write_text(text.replace('path = ["."]', f'path = ["{REPO / "examples"}"]')
                   .replace("\nwindow_ms = 1000", "\nwindow_ms = -5")
                   .replace("../data/", f"{REPO}/data/"))
    done = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", str(bad)],
                          capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"strategy.params: ofi:OrderFlowImbalance refused its parameters: ValueError: " \
           b"window_ms: expected a number > 0, got -5" in done.stderr
    good = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config",
                           str(REPO / "examples" / "ofi.toml")], capture_output=True, timeout=60)
    assert good.returncode == 0, good.stderr


def test_a_reload_whose_strategy_exits_while_building_keeps_the_daemon_and_its_quotes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGHUP with parameters the class answers with SystemExit: the reload fails, the
    running strategy keeps quoting (it used to escape the signal handler and stop the
    daemon with an order left at the venue)."""
    port = free_port()
    strategy = f'''
[strategy]
class = "hostile:Hostile"
path = ["{REPO / "tests" / "strategies"}"]

[strategy.params]
'''
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch, strategy)
    with daemon_quoting_at_the_sim(config, port) as d:
        config.write_text(config.read_text() + 'init_raise = "SystemExit"\n')
        d.signal(signal.SIGHUP)
        _, failed = d.wait_event("reload_failed", timeout=30)
        assert "hostile:Hostile refused its parameters: SystemExit" in failed["error"]
        assert d.proc.poll() is None
        wait_for(lambda: open_orders(port), 10, "still quoting after the failed reload")
        assert d.stop() == 0
        wait_for(lambda: open_orders(port) == [], 10, "our orders gone at the stop")


def hostile_replay(tmp_path: Path, params: str) -> tuple[subprocess.CompletedProcess[bytes],
                                                         list[dict[str, Any]]]:
    """The dry run on the bundled recording with ``tests/strategies/hostile.py`` given
    ``params`` (TOML lines): the finished process and its log events."""
    rest = (REPO / "examples" / "ofi.toml").read_text().partition("[instrument]")[2]
    config = tmp_path / "hostile.toml"
    config.write_text(f'''[strategy]
class = "hostile:Hostile"
path = ["{REPO / "tests" / "strategies"}"]

[strategy.params]
{params}

[instrument]{rest.replace("../data/", f"{REPO}/data/")}'''.replace(
        'dir = "../state/ofi"', f'dir = "{tmp_path / "state"}"'))
    done = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", "--config", str(config),
                           "--json"], capture_output=True, timeout=300)
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    return done, events


@pytest.mark.parametrize("kind, problem", [
    ("huge_size", "price and size must be at most 9223372036854775807"),  # crashed (journal)
    ("huge_price", "price and size must be at most 9223372036854775807"),
    ("fair_zero", "fair: expected > 0 ticks with levels"),  # bypassed the price band
])
def test_a_ladder_that_cannot_be_sent_safely_halts_the_replay_without_an_order(
        tmp_path: Path, kind: str, problem: str) -> None:
    done, events = hostile_replay(tmp_path, f'kind = "{kind}"')
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["orders"] == 0 and summary["state"] == "HALTED"
    errors = [e for e in events if e["event"] == "strategy_error"]
    assert len(errors) == 1 and problem in errors[0]["error"]


@pytest.mark.parametrize("exc", ["CancelledError", "KeyboardInterrupt", "GeneratorExit"])
def test_a_strategy_raising_a_base_exception_halts_but_the_replay_runs_to_its_end(
        tmp_path: Path, exc: str) -> None:
    """CancelledError used to end the replay early with exit 0 and a summary of part of
    it; the others stopped it with a traceback."""
    done, events = hostile_replay(tmp_path, f'kind = "raise"\nexc = "{exc}"\ngood_calls = 500')
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["frames"] == sum(len(gz_lines(p)) for p in SPOT_FILES)  # every frame
    assert summary["state"] == "HALTED" and summary["orders"] > 0  # quoted, then pulled
    errors = [e for e in events if e["event"] == "strategy_error"]
    assert len(errors) == 1 and errors[0]["error"].startswith(exc)
