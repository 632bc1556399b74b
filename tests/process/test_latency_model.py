"""Latency models: constants or measured distributions, seeded, written by `run --latency-out`
and read back by a dry run."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import orjson
import pytest

from mmdaemon.exchange.latency import (
    MAX_SAMPLES,
    Constant,
    Empirical,
    LatencyFileError,
    LatencyRecorder,
)
from mmdaemon.exchange.latency_file import build_model, read_latency_file
from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES
from tests.process.test_daemon_replay import replay
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import assert_quoting_at, sim_config

CONSTANTS = {"feed": 1, "entry": 2, "response": 3}


def write_file(path: Path, **kinds: list[int]) -> Path:
    body: dict[str, object] = {"format": "mmdaemon-latency", "version": 1, "source": "test"}
    body.update(kinds)  # feed_ns=[...], entry_ns=[...], response_ns=[...]
    path.write_bytes(orjson.dumps(body))
    return path


def test_empirical_draws_are_seeded_and_come_from_the_samples() -> None:
    samples = [5, 7, 11, 13, 1_000]
    a, b, c = Empirical(samples, 4), Empirical(samples, 4), Empirical(samples, 5)
    draws_a = [a.draw() for _ in range(200)]
    assert draws_a == [b.draw() for _ in range(200)]  # same seed, same delays
    assert draws_a != [c.draw() for _ in range(200)]  # another seed, others
    assert set(draws_a) == set(samples)  # every sample can come, nothing else does


def test_a_file_replaces_only_the_kinds_it_has_samples_for(tmp_path: Path) -> None:
    path = write_file(tmp_path / "l.json", entry_ns=[40, 50], response_ns=[])
    model = build_model(CONSTANTS, path, seed=1)
    assert isinstance(model.entry, Empirical) and model.entry.samples == [40, 50]
    assert isinstance(model.feed, Constant) and model.feed.draw() == 1
    assert isinstance(model.response, Constant) and model.response.draw() == 3
    # one kind's draws do not depend on whether another kind has samples
    more = write_file(tmp_path / "m.json", entry_ns=[40, 50], feed_ns=[9, 10, 11])
    other = build_model(CONSTANTS, more, seed=1)
    assert [model.entry.draw() for _ in range(50)] == [other.entry.draw() for _ in range(50)]


@pytest.mark.parametrize(("content", "message"), [
    (b"not json", "not JSON"),
    (b'{"format": "other", "version": 1}', 'expected a JSON object with "format"'),
    (b'{"format": "mmdaemon-latency", "version": 2, "entry_ns": [1]}', "version 2"),
    (b'{"format": "mmdaemon-latency", "version": 1, "entry_ns": [1, -2]}',
     "entry_ns: expected a list of integers from 0 to"),
    (b'{"format": "mmdaemon-latency", "version": 1, "feed_ns": [1.5]}',
     "feed_ns: expected a list of integers from 0 to"),
    (b'{"format": "mmdaemon-latency", "version": 1, "entry_ns": []}', "no samples"),
    (b'{"format": "mmdaemon-latency", "version": 1, "feed_ns": [9223372036854775807]}',
     "feed_ns: expected a list of integers from 0 to 60000000000"),
    (b'{"format": "mmdaemon-latency", "version": 1, "entry_ns": [60000000001]}',
     "entry_ns: expected a list of integers from 0 to 60000000000"),
])
def test_a_bad_latency_file_is_refused_naming_the_file_and_the_fault(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(LatencyFileError, match=message) as info:
        read_latency_file(path)
    assert str(path) in str(info.value)


def test_a_device_or_huge_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(LatencyFileError, match="larger than 16777216 bytes"):
        read_latency_file(link)


def test_run_refuses_a_latency_out_it_could_not_write_before_it_starts(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import write_config

    config = write_config(tmp_path, {})
    for target, said in ((tmp_path / "nodir" / "x.json", "no directory"),
                         (tmp_path, "is a directory")):
        proc = subprocess.run(
            [sys.executable, "-m", "mmdaemon", "run", "--config", str(config),
             "--latency-out", str(target)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "--latency-out" in proc.stderr and said in proc.stderr
        assert not (tmp_path / "state").exists()  # refused before anything started


def test_a_dry_run_refuses_a_bad_latency_file_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import write_config

    config = write_config(tmp_path, {"exchange": {"latency_file": "missing.json"}})
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES[:1]),
         "--config", str(config), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "exchange.latency_file" in proc.stderr and "missing.json" in proc.stderr


def test_the_recorder_keeps_a_bounded_uniform_sample() -> None:
    rec = LatencyRecorder("test", seed=2)
    for ns in range(MAX_SAMPLES + 5_000):
        rec.add("entry", ns)
    rec.add("feed", -3)  # two clocks apart: not a delay
    assert len(rec.samples["entry"]) == MAX_SAMPLES
    assert rec.seen["entry"] == MAX_SAMPLES + 5_000
    assert max(rec.samples["entry"]) >= MAX_SAMPLES  # late samples got in
    assert rec.samples["feed"] == []


def test_a_drawn_latency_dry_run_is_deterministic_and_depends_on_its_seed(tmp_path: Path) -> None:
    path = write_file(tmp_path / "lat.json", entry_ns=[1_000_000, 3_000_000, 20_000_000],
                      response_ns=[2_000_000, 9_000_000], feed_ns=[500_000, 4_000_000])

    def fills(name: str, seed: int) -> list[tuple[int, ...]]:
        _, _, state = replay(tmp_path / name, {"exchange": {"latency_file": str(path),
                                                            "latency_seed": seed}},
                             files=SPOT_FILES[:1])
        db = sqlite3.connect(state / "journal.sqlite")
        try:
            return db.execute("SELECT side, price, size, ts_ns FROM fills ORDER BY seq").fetchall()
        finally:
            db.close()

    first = fills("a", 1)
    assert first and first == fills("b", 1)
    assert first != fills("c", 2)


def test_run_writes_the_latencies_it_measured_against_the_sim_and_a_dry_run_uses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Order entry round trips against the sim (over real loopback WebSockets) become entry
    and response samples; the sim's replay clock runs 5x (speed 5), so its event times run
    away from our clock, no feed latency is measured from them, and the log says so."""
    port = free_port()
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch)
    out = tmp_path / "measured.json"
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config, "--latency-out", str(out))
        try:
            d.wait_event("venue_status", ready=True, timeout=30)
            assert_quoting_at(port, 15, "our quotes rest at the venue")
            d.wait_event("latency_feed_clocks_apart", timeout=30)
            d.signal(signal.SIGTERM)
            assert d.stop() == 0
        finally:
            d.kill()
    finally:
        sim.kill()
        sim.wait()
    written = [e for e in d.events if e.get("event") == "latency_file_written"]
    assert written and written[0]["entry_samples"] > 0
    samples = read_latency_file(out)
    assert samples["feed"] == []
    assert len(samples["entry"]) == len(samples["response"]) == written[0]["entry_samples"]
    # loopback round trips: positive, and far below a second
    assert all(0 < ns < 1_000_000_000 for ns in samples["entry"] + samples["response"])
    s, _, _ = replay(tmp_path / "dry", {"exchange": {"latency_file": str(out)}},
                     files=SPOT_FILES[:1])
    assert s["state"] == "ACTIVE" and s["orders"] > 0
