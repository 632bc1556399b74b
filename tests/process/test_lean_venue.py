"""`mmdaemon run` against bench/lean_venue.py, the lean venue stand-in of bench/wire.py's
loopback (real processes on 127.0.0.1): the daemon gets ready and quotes both sides
without a reject or a reconcile, and the stand-in's market frames are the recording's,
byte for byte. The figures themselves are bench/wire.py's."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.process.test_metrics_daemon import scrape, value
from tests.process.test_record_sim_cli import free_port
from tests.process.test_sim_processes import sim_config

LINES = 1_200  # of the bundled recording: about 10 s of market at its pace
STREAMS = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"  # what the daemon asks for
LEAN = REPO / "bench" / "lean_venue.py"
# what the daemon may be told at its stop: its cancel-all finds nothing left (it cancelled
# each order first), as Binance answers then
EXPECTED_REFUSALS = {"openOrders.cancelAll -2011"}


class Venue:
    """bench/lean_venue.py as a process; its stdout JSON lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(LEAN), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def line(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """Its next stdout line of ``event``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.proc.stdout.readline()
            if not raw:
                break
            message = orjson.loads(raw)
            if message.get("event") == event:
                return dict(message)
        stderr = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
        raise AssertionError(f"no {event} from the lean venue; stderr: {stderr}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.line("lean_stopped")
        return self.proc.wait(20)


class Listener(threading.Thread):
    """A market-data client of its own: every message of ``url`` as bytes, until
    ``count`` have come."""

    def __init__(self, url: str, count: int) -> None:
        super().__init__(daemon=True)
        self.ws: ClientConnection = connect(url, compression=None, max_size=None)
        self.count = count
        self.messages: list[bytes] = []

    def run(self) -> None:
        with self.ws:
            while len(self.messages) < self.count:
                message = self.ws.recv(timeout=30, decode=False)
                assert isinstance(message, bytes)
                self.messages.append(message)


def stream_frames(count: int) -> list[bytes]:
    """The stream frames among the first ``count`` lines of the bundled recording (the
    REST snapshot line is not a stream frame), exactly as recorded."""
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:count]
    return [frame for line in lines
            if (frame := line.split(b" ", 1)[1]).startswith(b'{"stream":"')]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run: a listener of ours subscribes first (so the tape starts and it sees every
    frame), then the daemon trades against the stand-in to the end of the tape and stops."""
    if not SPOT_FILES[0].exists():
        pytest.skip(f"{SPOT_FILES[0]} not present: the bundled recording is needed")
    tmp = tmp_path_factory.mktemp("lean")
    stats_path = tmp / "stats.json"
    expected = stream_frames(LINES)
    venue = Venue(str(SPOT_FILES[0]), "--lines", str(LINES), "--stats", str(stats_path))
    try:
        port = venue.line("lean_listening")["port"]
        listener = Listener(f"ws://127.0.0.1:{port}/stream?streams={STREAMS}", len(expected))
        listener.start()
        metrics_port = free_port()
        with pytest.MonkeyPatch.context() as monkeypatch:
            config = sim_config(tmp, port, tmp / "state", monkeypatch,
                                f'\n[logging]\nlevel = "info"\n\n[metrics]\n'
                                f'port = {metrics_port}\n')
            daemon = Daemon(config)
            try:
                daemon.wait_event("ready", timeout=30)
                venue.line("lean_finished", timeout=60)
                counted = value(scrape(metrics_port), "mmdaemon_wire_to_wire_seconds_count")
                exit_code = daemon.stop()
            finally:
                if daemon.proc.poll() is None:
                    daemon.kill()
        listener.join(30)
        venue_exit = venue.stop()
    finally:
        if venue.proc.poll() is None:
            venue.proc.kill()
            venue.proc.wait(10)
    yield {"stats": orjson.loads(stats_path.read_bytes()), "events": daemon.events,
           "exit": exit_code, "venue_exit": venue_exit, "counted": counted,
           "expected": expected, "received": listener.messages}


def test_the_lean_venue_sends_the_recordings_frames_byte_for_byte(run: dict[str, Any]
                                                                  ) -> None:
    assert len(run["expected"]) > 1_000
    assert run["received"] == run["expected"]
    assert run["stats"]["finished"] and run["stats"]["protocol_errors"] == 0
    assert run["venue_exit"] == 0


def test_the_daemon_quotes_both_sides_against_the_lean_venue(run: dict[str, Any]) -> None:
    stats = run["stats"]
    assert stats["places_by_side"]["BUY"] > 0 and stats["places_by_side"]["SELL"] > 0
    assert stats["requests_by_method"].get("order.cancelReplace", 0) > 0  # it requoted
    assert stats["depth_requests"]["ok"] >= 1  # it synced its book from the REST snapshot
    assert len(stats["requests_ns"]) > 0 and len(stats["depth_sent_ns"]) > 0
    _, line = next((i, e) for i, e in enumerate(run["events"])
                   if e.get("event") == "wire_to_wire")
    assert line["orders"] > 0 and line["orders"] >= run["counted"] > 0
    assert run["exit"] == 0


def test_the_daemon_sees_no_reject_and_no_reconcile_against_the_lean_venue(
        run: dict[str, Any]) -> None:
    events = run["events"]
    bad = [e for e in events
           if e.get("level") == "error" or e.get("event") == "order_rejected"
           or (e.get("level") == "warning" and str(e.get("event", "")).startswith("gateway_"))]
    assert bad == []
    assert set(run["stats"]["refused"]) <= EXPECTED_REFUSALS
    assert run["stats"]["open_orders"] == 0  # the daemon's stop cancelled all it had
    stopped = next(e for e in events if e.get("event") == "stopped")
    assert stopped["open_orders"] == 0 and stopped["exit_code"] == 0


def test_the_lean_venue_answers_pings_joins_fragments_and_closes_cleanly() -> None:
    if not SPOT_FILES[0].exists():
        pytest.skip(f"{SPOT_FILES[0]} not present: the bundled recording is needed")
    venue = Venue(str(SPOT_FILES[0]), "--lines", "20")
    try:
        port = venue.line("lean_listening")["port"]
        with connect(f"ws://127.0.0.1:{port}/ws-api/v3", compression=None) as ws:
            assert ws.ping(b"lean").wait(10)
            ws.send(iter(['{"id":7,"method":', '"time","params":{}}']))  # in fragments
            answer = orjson.loads(ws.recv(timeout=10))
            assert answer["id"] == 7 and answer["status"] == 200
            assert answer["result"]["serverTime"] > 0
            ws.send('{"id":8,"method":"order.cancel","params":{"origClientOrderId":"x-1"}}')
            refused = orjson.loads(ws.recv(timeout=10))
            assert refused["status"] == 400 and refused["error"]["code"] == -2011
        assert ws.close_code == 1000  # the venue answered the close handshake
        assert venue.stop() == 0
    finally:
        if venue.proc.poll() is None:
            venue.proc.kill()
            venue.proc.wait(10)
