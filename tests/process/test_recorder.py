"""The recorder's files: format, daily rotation, flushing, crash tolerance."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from mmdaemon.clock import ManualClock
from mmdaemon.feed.recorder import FrameWriter, seal
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.model import Malformed

DAY1 = 1723161599_000_000_000  # 2024-08-08 23:59:59 UTC
DAY2 = 1723161601_000_000_000  # 2024-08-09 00:00:01 UTC


def test_rotates_per_utc_day_and_round_trips(tmp_path: Path) -> None:
    w = FrameWriter(tmp_path, "BTCUSDT")
    w.write(DAY1, b'{"a":1}')
    w.write(DAY1 + 1, b'{"lastUpdateId":5,\n"bids":[],"asks":[]}')  # newline in a body
    w.write(DAY2, b'{"b":2}')
    w.close()
    assert [p.name for p in w.files] == ["btcusdt_20240808.gz", "btcusdt_20240809.gz"]
    items = list(read_recording(w.files))
    assert items == [(DAY1, b'{"a":1}'), (DAY1 + 1, b'{"lastUpdateId":5,"bids":[],"asks":[]}'),
                     (DAY2, b'{"b":2}')]
    # appending to an existing day adds a gzip member; it reads as one stream
    w2 = FrameWriter(tmp_path, "BTCUSDT")
    w2.write(DAY2 + 5, b'{"c":3}')
    w2.close()
    assert list(read_recording([tmp_path / "btcusdt_20240809.gz"]))[-1] == (DAY2 + 5, b'{"c":3}')


def test_a_crash_loses_only_what_was_not_flushed(tmp_path: Path) -> None:
    w = FrameWriter(tmp_path, "BTCUSDT", flush_interval_s=3600)
    for i in range(100):
        w.write(DAY1 + i, b'{"n":%d}' % i)
    w.flush()  # what the periodic flush does
    for i in range(100, 110):
        w.write(DAY1 + i, b'{"n":%d}' % i)
    # crash: the process dies without closing; copy the file as it is on disk
    crashed = tmp_path / "crashed.gz"
    crashed.write_bytes(w.files[0].read_bytes())
    items = list(read_recording([crashed]))
    frames = [i for i in items if not isinstance(i, Malformed)]
    assert frames == [(DAY1 + i, b'{"n":%d}' % i) for i in range(100)]
    assert isinstance(items[-1], Malformed) and "cut short" in items[-1].reason
    w.close()
    with gzip.open(w.files[0], "rb") as f:
        assert len(f.read().splitlines()) == 110


CRASH = f"""
import os, sys
from pathlib import Path
from mmdaemon.feed.recorder import FrameWriter
w = FrameWriter(Path(sys.argv[1]), "BTCUSDT", flush_interval_s=3600)
for i in range(int(sys.argv[2])):
    w.write({DAY1} + i, b'{{"n":%d,"pad":"%s"}}' % (i, b"x" * (i % 50)))
    if i == int(sys.argv[3]):
        w.flush()  # the last flush before the crash
os._exit(0)  # dies: no close, Python's own buffers lost
"""


def crash_writing(out: Path, frames: int, flush_at: int) -> Path:
    """A recorder process that flushes after frame ``flush_at`` and dies at ``frames``."""
    subprocess.run([sys.executable, "-c", CRASH, str(out), str(frames), str(flush_at)],
                   check=True, timeout=60)
    return out / "btcusdt_20240808.gz"


def frames_of(path: Path) -> list[object]:
    return list(read_recording([path]))


def test_a_restart_after_a_crash_keeps_the_day_readable(tmp_path: Path) -> None:
    """The recorder dies mid-day and starts again the same day: everything flushed before
    the crash and everything after the restart read back in order, nothing reported cut."""
    path = crash_writing(tmp_path, 20_000, 14_999)
    reports: list[tuple[str, dict[str, object]]] = []
    w = FrameWriter(tmp_path, "BTCUSDT",
                    report=lambda event, **fields: reports.append((event, fields)))
    w.write(DAY1 + 50_000, b'{"after":"restart"}')
    w.close()
    items = frames_of(path)
    assert not [i for i in items if isinstance(i, Malformed)]
    assert [i[0] for i in items] == [DAY1 + i for i in range(15_000)] + [DAY1 + 50_000]
    assert items[-1] == (DAY1 + 50_000, b'{"after":"restart"}')
    [(event, fields)] = reports
    assert event == "recording_sealed" and fields["path"] == str(path)
    assert isinstance(fields["bytes_cut"], int) and fields["bytes_cut"] > 0  # torn tail gone
    with gzip.open(path, "rb") as f:  # every member whole: lengths and CRCs check out
        assert len(f.read().splitlines()) == 15_001


def test_a_torn_write_after_the_last_flush_is_cut(tmp_path: Path) -> None:
    path = crash_writing(tmp_path, 300, 299)  # the crash came right after a flush
    with path.open("ab") as f:
        f.write(bytes(range(256)) * 3)  # half-written bytes of the next block
    cut = seal(path)
    assert cut is not None and cut >= 768
    assert [i[0] for i in frames_of(path)] == [DAY1 + i for i in range(300)]


def test_a_crash_before_the_first_flush_loses_only_that_member(tmp_path: Path) -> None:
    w = FrameWriter(tmp_path, "BTCUSDT")
    w.write(DAY1, b'{"kept":1}')
    w.close()
    path = tmp_path / "btcusdt_20240808.gz"
    size = path.stat().st_size
    with path.open("ab") as f:  # a second run's member: its header, and no flush
        f.write(gzip.compress(b"x" * 10)[:14])
    assert seal(path) == 14 and path.stat().st_size == size
    assert frames_of(path) == [(DAY1, b'{"kept":1}')]


def test_a_whole_file_is_left_alone_and_a_damaged_one_refused(tmp_path: Path) -> None:
    w = FrameWriter(tmp_path, "BTCUSDT")
    for i in range(1000):
        w.write(DAY1 + i, b'{"n":%d}' % i)
    w.close()
    path = w.files[0]
    whole = path.read_bytes()
    assert seal(path) is None and path.read_bytes() == whole
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged) + whole)  # damaged inside, more members after it
    with pytest.raises(RecordingError, match="move it aside"):
        FrameWriter(tmp_path, "BTCUSDT").write(DAY1 + 5000, b"{}")


def test_the_flush_interval_runs_on_the_writers_clock(tmp_path: Path) -> None:
    """Frames become readable from the file once ``flush_interval_s`` has passed on the
    injected clock, at the next write, and not a nanosecond sooner."""
    clock = ManualClock()
    w = FrameWriter(tmp_path, "BTCUSDT", flush_interval_s=2.0, clock=clock)

    def on_disk() -> list[int]:
        copy = tmp_path / "copy.gz"
        copy.write_bytes(w.files[0].read_bytes())
        return [i[0] for i in read_recording([copy]) if not isinstance(i, Malformed)]

    w.write(DAY1, b'{"n":0}')
    clock.now_ns += 1_999_999_999
    w.write(DAY1 + 1, b'{"n":1}')
    assert on_disk() == []
    clock.now_ns += 1
    w.write(DAY1 + 2, b'{"n":2}')
    assert on_disk() == [DAY1, DAY1 + 1, DAY1 + 2]
    clock.now_ns += 1_999_999_999  # the interval counts from that flush
    w.write(DAY1 + 3, b'{"n":3}')
    assert on_disk() == [DAY1, DAY1 + 1, DAY1 + 2]
    w.close()
