"""The decoded-event cache's file, in process: a chunk gives back exactly the events written
into it (types too: a Trade's Side, a snapshot's bool, the levels as (price, size) tuples),
bad lines in their places; a cache is valid for a decompressed copy of its recording and
for one whose mtime alone changed, and for nothing else."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from mmdaemon.feed.event_cache import MAGIC, CacheUnusable, EventCache, build, cache_key
from mmdaemon.feed.event_chunk import ChunkWriter, decode
from mmdaemon.feed.recording import read_recording
from mmdaemon.market import Decoded
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Gap, Malformed, Side, TopOfBook, Trade
from mmdaemon.venues.binance import BinanceCodec
from tests.conftest import SPOT_FILES
from tests.helpers import first_lines

T = 1_723_161_254_000_000_000


def test_a_chunk_gives_back_every_event_kind_exactly_with_bad_lines_in_place() -> None:
    frames = [
        (T, [BookUpdate(True, [(100, 5), (99, 7)], [(101, 3)], 10, 10, T - 5, T)]),
        (T + 1, [Trade(100, 2, Side.SELL, 77, T - 4, T + 1),
                 TopOfBook(11, 100, 3, 101, 3, T - 4, T + 1)]),
        (T + 2, []),  # a frame that decoded to nothing (a stale diff)
        (T + 3, [Gap("update id gap", 12, 15, T + 3)]),
        (T + 4, [Malformed("depth: bad price", T + 4)]),
        (T + 5, [BookUpdate(False, [], [(101, 0)], 16, 17, T, T + 5)]),
    ]
    chunk = ChunkWriter()
    expected: list[Decoded | Malformed] = []
    for i, (ns, events) in enumerate(frames):
        if i in (0, 3):
            chunk.line(f"x.gz:{i}: not '<recv_ns> <frame>'", ns - 1)
            expected.append(Malformed(f"x.gz:{i}: not '<recv_ns> <frame>'", ns - 1))
        chunk.frame(ns, events)
        expected.append(Decoded(ns, events))
    got = decode(chunk.encode())
    assert got == expected
    assert [type(item) for item in got] == [type(item) for item in expected]
    for item, want in zip(got, expected, strict=True):
        if isinstance(item, Decoded):
            assert [type(e) for e in item.events] == [type(e) for e in want.events]  # type: ignore[union-attr]
    trade = got[2].events[0]  # type: ignore[union-attr]
    assert type(trade.aggressor) is Side and trade.aggressor is Side.SELL
    snapshot = got[1].events[0]  # type: ignore[union-attr]
    assert snapshot.snapshot is True and type(snapshot.bids) is list
    assert type(snapshot.bids[0]) is tuple


def test_a_chunk_holds_the_compiled_decoders_levels_as_equal_lists() -> None:
    codec = BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot")
    chunk, decoded = ChunkWriter(), []
    for i, item in enumerate(read_recording([SPOT_FILES[0]])):
        assert isinstance(item, tuple)
        events = codec.decode(*item)
        chunk.frame(item[0], events)
        decoded.append(Decoded(item[0], events))
        if i == 2000:
            break
    assert decode(chunk.encode()) == decoded


def test_a_value_beyond_int64_cannot_be_stored() -> None:
    with pytest.raises(OverflowError):
        ChunkWriter().frame(T, [TopOfBook(1, 1 << 63, 1, 2, 1, T, T)])


def built(tmp_path: Path) -> tuple[Path, Path, dict[str, object]]:
    rec = first_lines(tmp_path / "rec.gz", 3000)
    key = cache_key(BINANCE_SPOT_BTCUSDT, "spot", "receive")
    path = build([rec], BINANCE_SPOT_BTCUSDT, "spot", "receive", None)
    return rec, path, key


def test_a_cache_is_valid_for_a_decompressed_copy_and_a_touched_file(tmp_path: Path) -> None:
    rec, path, key = built(tmp_path)
    plain = tmp_path / "plain" / rec.name
    plain.parent.mkdir()
    plain.write_bytes(gzip.decompress(rec.read_bytes()))  # a sweep worker's copy
    EventCache(path, [plain], key).close()
    os.utime(rec, ns=(1, 1))  # same bytes, another mtime: the hash decides
    cache = EventCache(path, [rec], key)
    assert cache.items_count == 3000
    cache.close()


def test_a_cache_is_stale_for_other_bytes_and_another_clock(tmp_path: Path) -> None:
    rec, path, key = built(tmp_path)
    other = first_lines(tmp_path / "other" / "rec.gz", 2999)
    with pytest.raises(CacheUnusable, match="is not the recording it was built from") as exc:
        EventCache(path, [other], key)
    assert not exc.value.corrupt
    with pytest.raises(CacheUnusable, match="built for clock 'receive', not 'exchange'"):
        EventCache(path, [rec], {**key, "clock": "exchange"})
    with pytest.raises(CacheUnusable, match="built for 1 recordings, not 2"):
        EventCache(path, [rec, rec], key)
    with pytest.raises(CacheUnusable, match="no cache at") as missing:
        EventCache(tmp_path / "none.mmevents", [rec], key)
    assert not missing.value.corrupt


def test_a_header_without_its_fields_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    rec, path, key = built(tmp_path)
    data = path.read_bytes()
    start = len(MAGIC) + 4
    length = int.from_bytes(data[len(MAGIC):start], "little")
    header = json.loads(data[start:start + length])
    del header["recordings"][0]["size"]
    head = json.dumps(header).encode()
    path.write_bytes(MAGIC + len(head).to_bytes(4, "little") + head + data[start + length:])
    with pytest.raises(CacheUnusable, match="damaged header") as exc:
        EventCache(path, [rec], key)
    assert exc.value.corrupt
