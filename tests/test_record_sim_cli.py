"""`mmdaemon sim` and `mmdaemon record` as real processes over loopback, with real signals;
then the recording replays and verifies."""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues.binance import BinanceCodec
from mmdaemon.verify import BookVerifier
from tests.conftest import SPOT_FILES
from tests.helpers import write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mmdaemon(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mmdaemon", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_line(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not seen; stderr: {proc.stderr.read()[-2000:]!r}")


def test_record_from_the_sim_then_replay_and_verify(tmp_path: Path) -> None:
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:6000]
    source = tmp_path / "source.gz"
    with gzip.open(source, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    port = free_port()
    sim = mmdaemon("sim", str(source), "--port", str(port), "--speed", "10")
    try:
        wait_for_line(sim, b"sim_listening")
        config = write_config(tmp_path, {"feed": {"recordings": [],
                                                  "url": f"ws://127.0.0.1:{port}",
                                                  "rest_url": f"http://127.0.0.1:{port}"}})
        out = tmp_path / "recorded"
        rec = mmdaemon("record", "--config", str(config), str(out))
        time.sleep(3.0)  # ~30 s of market at speed 10
        rec.send_signal(signal.SIGTERM)
        assert rec.wait(20) == 0
        stderr = rec.stderr.read().decode() if rec.stderr else ""
        assert '"event":"record_stopped"' in stderr
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0

    files = sorted(out.glob("btcusdt_*.gz"))
    # named by the UTC day of the recorder's clock: one file, two across a midnight
    assert 1 <= len(files) <= 2 and all(p.name.startswith("btcusdt_2") for p in files)
    verify = subprocess.run([sys.executable, "-m", "mmdaemon", "verify-book", *map(str, files),
                             "--json"], capture_output=True, text=True, timeout=60)
    v = orjson.loads(verify.stdout)
    assert verify.returncode == 0 and v["gaps"] == 0 and v["mismatches"] == 0
    assert v["snapshots"] >= 1 and v["compared"] > 20 and v["synced_at_end"]

    # the recorded book equals the source's book at the same update id
    source_v = BookVerifier(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    for item in read_recording([source]):
        assert type(item) is tuple
        source_v.on_frame(*item)
        if source_v.market.book.last_id == v["last_update_id"]:
            break
    assert source_v.market.book.last_id == v["last_update_id"]
    assert (source_v.market.book.best_bid(), source_v.market.book.best_ask()) == (
        v["best_bid"], v["best_ask"])

    replay = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", *map(str, files),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr[-2000:]
    s = orjson.loads(replay.stdout)
    assert s["frames"] == v["frames"] and s["gaps"] == 0 and s["quotes"] > 0
