"""`mmdaemon sim` and `mmdaemon record` as real processes over loopback, with real signals;
then the recording replays and verifies, and on the exchange clock its dry run is the
source's over the same window."""

from __future__ import annotations

import contextlib
import gzip
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues.binance import BinanceCodec
from mmdaemon.verify import BookVerifier
from tests.helpers import first_lines, wait_for, write_config

STREAM = b'{"stream":'  # a combined-stream frame; the recorded REST snapshots are not


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


@contextlib.contextmanager
def sim_serving(source: Path) -> Iterator[int]:
    """`mmdaemon sim` serving ``source`` at 10x on a free loopback port, for the ``with``
    block; stopped (and checked to stop cleanly) after it."""
    port = free_port()
    sim = mmdaemon("sim", str(source), "--port", str(port), "--speed", "10")
    try:
        wait_for_line(sim, b"sim_listening")
        yield port
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


def live_config(tmp_path: Path, port: int) -> Path:
    """The dry-run config pointed at the sim on ``port`` as its live feed."""
    return write_config(tmp_path, {"feed": {"recordings": [], "url": f"ws://127.0.0.1:{port}",
                                            "rest_url": f"http://127.0.0.1:{port}"}})


SNAPSHOT = b'"lastUpdateId"'  # what a REST depth snapshot line holds, and no other line
SYNC_FLUSH = b"\x00\x00\xff\xff"  # the empty stored block a zlib sync flush ends with


def member_lines(out: Path, containing: bytes = b"") -> list[int]:
    """Per gzip member of the recordings in ``out``, the whole lines (holding
    ``containing``) flushed so far (a flush is a sync flush: everything before it
    decompresses, whatever follows). A restart appends a member to the day's file."""
    counts = []
    for path in sorted(out.glob("btcusdt_*.gz")):
        data = path.read_bytes()
        while data:
            d = zlib.decompressobj(wbits=31)
            try:
                text = d.decompress(data)
            except zlib.error:
                break
            if not d.eof:  # the member being written: only what a sync flush ended
                # (compressed output reaches the file between flushes too; a crash loses it)
                mark = data.rfind(SYNC_FLUSH)
                text = zlib.decompressobj(wbits=31).decompress(data[:mark + 4]) \
                    if mark >= 0 else b""
            lines = text.split(b"\n")[:-1]  # the last is cut (or empty)
            counts.append(sum(containing in line for line in lines))
            data = d.unused_data
    return counts


def wait_recorded(out: Path, lines: int, containing: bytes = b"", member: int = 0,
                  timeout: float = 60.0) -> int:
    """Until at least ``lines`` recorded lines (holding ``containing``) are flushed, from
    gzip member ``member`` on; how many there are then."""
    def enough() -> int:
        count = sum(member_lines(out, containing)[member:])
        return count if count >= lines else 0

    return wait_for(enough, timeout, f"{lines} lines recorded")


@pytest.fixture(scope="module")
def sim_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A slice of the bundled recording served by `mmdaemon sim`, and what `mmdaemon record`
    wrote of it: (source, recorded files)."""
    tmp_path = tmp_path_factory.mktemp("record_sim")
    source = first_lines(tmp_path / "source.gz", 6000)
    out = tmp_path / "recorded"
    with sim_serving(source) as port:
        rec = mmdaemon("record", "--config", str(live_config(tmp_path, port)), str(out))
        wait_recorded(out, 3000)  # half the source: snapshots, diffs and tickers to compare
        rec.send_signal(signal.SIGTERM)
        assert rec.wait(20) == 0
        stderr = rec.stderr.read().decode() if rec.stderr else ""
        assert '"event":"record_stopped"' in stderr
    return source, sorted(out.glob("btcusdt_*.gz"))


def test_record_from_the_sim_then_replay_and_verify(
        sim_recording: tuple[Path, list[Path]]) -> None:
    source, files = sim_recording
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
    assert s["clock"] == "receive"  # the default


def source_window(source: Path, files: list[Path], dest: Path) -> Path:
    """The source over the window the recorder saw, synced from the snapshot it fetched.

    Why the comparison is fair: the recorder joined a market already running and synced from
    a REST snapshot the sim built from its book, so the comparable input is the source from
    the first recorded stream frame to the last, with that snapshot at the same place. Every
    stream frame of the recording is asserted byte-identical to a contiguous run of the
    source's, in order, nothing missing, once the source's venue times (``E``, ``T``) are put
    on the sim's clock by one whole-ms offset (the sim serves the recorded bytes with its
    times shifted so; the recorder writes what it got); the one frame the source never had,
    the sim's snapshot, is taken from the recording. So the two inputs differ only in their
    receive times: the source's stay as recorded in 2024, the recording has the recorder's
    own, 10x compressed (sim at speed 10) and jittered. That difference is all a record ->
    replay round trip adds.
    """
    recorded = list(read_recording(files))
    assert all(type(item) is tuple for item in recorded)
    snapshots = [i for i, (_, frame) in enumerate(recorded) if not frame.startswith(STREAM)]
    assert len(snapshots) == 1 and recorded[snapshots[0]][1].startswith(b'{"lastUpdateId":')
    at = snapshots[0]
    recorded_stream = [frame for i, (_, frame) in enumerate(recorded) if i != at]
    # the source's stream frames (its own snapshot was never served: not in the window)
    stream = [item for item in read_recording([source])
              if type(item) is tuple and item[1].startswith(STREAM)]
    timeless = [VENUE_TIME.sub(b"", frame) for _, frame in stream]
    first = timeless.index(VENUE_TIME.sub(b"", recorded_stream[0]))
    # the offset from the first frame that carries a venue time (spot bookTicker has none,
    # and which stream's frame the recorder got first is a race)
    timed = next(i for i, frame in enumerate(recorded_stream) if VENUE_TIME.search(frame))
    offset_ms = venue_times(recorded_stream[timed])[0] - venue_times(stream[first + timed][1])[0]
    assert offset_ms > 0  # the sim's clock is today's, the source's 2024's
    stream = [(recv_ns, shifted(frame, offset_ms)) for recv_ns, frame in stream]
    window = stream[first:first + len(recorded_stream)]
    assert [frame for _, frame in window] == recorded_stream, "not a contiguous run of the source"
    # the snapshot where the recorder got it, stamped with the receive time of the source
    # frame before it (after the first one, if it came first)
    snapshot = (window[max(at - 1, 0)][0], recorded[at][1])
    lines = [*window[:at], snapshot, *window[at:]]
    with gzip.open(dest, "wb") as f:
        f.writelines(b"%d %s\n" % line for line in lines)
    return dest


VENUE_TIME = re.compile(rb'"[ET]":[0-9]+')


def venue_times(frame: bytes) -> list[int]:
    return [int(m[0].split(b":")[1]) for m in VENUE_TIME.finditer(frame)]


def shifted(frame: bytes, offset_ms: int) -> bytes:
    """``frame`` with its venue times ``offset_ms`` later."""
    return VENUE_TIME.sub(lambda m: m[0][:4] + b"%d" % (int(m[0][4:]) + offset_ms), frame)


def replay_json(files: list[Path], config: Path, clock: str) -> subprocess.Popen[bytes]:
    return mmdaemon("replay", *map(str, files), "--config", str(config), "--json",
                    "--clock", clock)


def summary_of(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    summary: dict[str, Any] = orjson.loads(out)
    del summary["wall_s"], summary["frames_per_s"]  # how fast this machine ran it
    del summary["feed"]  # which files it read: the recorded and the source recordings
    return summary


def test_record_replay_round_trip_on_the_exchange_clock(
        sim_recording: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Recorded from the sim, replayed on the exchange clock: the very dry run (counts,
    position, PnL, fees, the report's metrics) of replaying the source over the same window."""
    source, files = sim_recording
    window = [source_window(source, files, tmp_path / "window.gz")]
    # quoting tighter than the shipped dry run, so the ~30 s window has some 20 fills to
    # compare, and a maker rebate, so the fees are not 0 either
    config = write_config(tmp_path, {"strategy.spread": {"base_bps": 0.0, "vol_mult": 0.5},
                                     "exchange": {"maker_fee_bps": "-0.1"}})
    runs = {(name, clock): replay_json(paths, config, clock)
            for name, paths in (("recorded", files), ("source", window))
            for clock in ("exchange", "receive")}
    s = {key: summary_of(proc) for key, proc in runs.items()}
    recorded, from_source = s["recorded", "exchange"], s["source", "exchange"]
    assert recorded["clock"] == "exchange" and recorded["gaps"] == 0
    assert recorded["fills"] >= 5 and recorded["amends"] > 0 and recorded["fees"] < 0
    assert recorded == from_source
    # the same frames on their receive times do not agree: the equality above is the
    # exchange clock's doing, and this test fails without it
    assert s["recorded", "receive"] != s["source", "receive"]


def test_a_recorder_killed_and_restarted_the_same_day_leaves_one_readable_file(
        tmp_path: Path) -> None:
    """SIGKILL mid-recording, then `mmdaemon record` again into the same directory: the day's
    file is sealed at its last flush and appended to; it replays and verifies whole, the
    restart showing as one gap that the restarted recorder's snapshot recovered."""
    source = first_lines(tmp_path / "source.gz", 20_000)  # a tape that outlasts both
    out = tmp_path / "recorded"
    with sim_serving(source) as port:
        config = live_config(tmp_path, port)
        first = mmdaemon("record", "--config", str(config), str(out))
        wait_recorded(out, 100)  # frames flushed to disk before the kill
        first.send_signal(signal.SIGKILL)
        first.wait(20)
        second = mmdaemon("record", "--config", str(config), str(out))
        # the restart seals the torn member and appends its own: its snapshot and frames
        wait_recorded(out, 1, SNAPSHOT, member=1)
        wait_recorded(out, 100, member=1)
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
        stderr = second.stderr.read().decode() if second.stderr else ""
    files = sorted(out.glob("btcusdt_*.gz"))
    if len(files) != 1:
        pytest.skip("the recorder's clock crossed a UTC midnight: two day files, no restart "
                    "into one")
    assert '"event":"recording_sealed"' in stderr
    with gzip.open(files[0], "rb") as f:
        assert len(f.read().splitlines()) > 100  # every member whole (lengths, CRCs)
    verify = subprocess.run([sys.executable, "-m", "mmdaemon", "verify-book", str(files[0]),
                             "--json"], capture_output=True, text=True, timeout=60)
    v = orjson.loads(verify.stdout)
    assert verify.returncode == 0, verify.stdout
    assert v["malformed"] == 0 and v["snapshots"] >= 2 and v["synced_at_end"]
    replay = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", str(files[0]),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert orjson.loads(replay.stdout)["malformed"] == 0


def test_a_day_file_damaged_inside_stops_the_recorder_with_exit_2(tmp_path: Path) -> None:
    """Appending to a file damaged before its end would hide the damage: the recorder
    refuses, says which file, and exits 2 (not 0 as if it had recorded)."""
    from datetime import UTC, datetime

    out = tmp_path / "recorded"
    out.mkdir()
    whole = gzip.compress(b"1 {}\n" * 50_000)
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    day = datetime.now(UTC).strftime("%Y%m%d")
    target = out / f"btcusdt_{day}.gz"
    target.write_bytes(bytes(damaged) + whole)
    with sim_serving(first_lines(tmp_path / "source.gz", 3000)) as port:
        rec = subprocess.run([sys.executable, "-m", "mmdaemon", "record", "--config",
                              str(live_config(tmp_path, port)), str(out)],
                             capture_output=True, text=True, timeout=60)
    if datetime.now(UTC).strftime("%Y%m%d") != day:
        pytest.skip("a UTC midnight passed during the test: the recorder wrote a new day")
    assert rec.returncode == 2
    [message] = [line for line in rec.stderr.splitlines() if not line.startswith("{")]
    assert message.startswith(f"mmdaemon record: {target}: damaged")
    assert target.read_bytes() == bytes(damaged) + whole  # not touched
