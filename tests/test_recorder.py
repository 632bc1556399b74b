"""The recorder's files: format, daily rotation, flushing, crash tolerance."""

from __future__ import annotations

import gzip
from pathlib import Path

from mmdaemon.feed.recorder import FrameWriter
from mmdaemon.feed.recording import read_recording
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
