"""Recordings: reading plain and gzip files in order, and paced replay on an injected clock."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from mmdaemon.clock import ManualClock
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.feed.replay import YIELD_EVERY, ReplaySource
from mmdaemon.model import Malformed
from mmdaemon.pace import parse_speed
from tests.conftest import SPOT_FILES


def test_reads_both_real_files_in_order_with_monotonic_receive_times() -> None:
    count, last = 0, 0
    for item in read_recording(SPOT_FILES):
        assert type(item) is tuple
        recv_ns, frame = item
        assert recv_ns >= last and frame.startswith(b"{") and frame.endswith(b"}")
        last = recv_ns
        count += 1
    assert count == 41249 + 58325


T0 = 1723161253937085768  # ns: the bundled recording's first receive time


def test_plain_and_gzip_files_mix_and_bad_lines_become_malformed(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_bytes(b'%d {"x":1}\r\n\nnot-a-line\n%d {"x":2}\n' % (T0 + 100, T0 + 200))
    gz = tmp_path / "b.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b'%d {"x":3}\n12ab {"x":4}\n400' % (T0 + 300))
    items = list(read_recording([plain, gz]))
    assert items[0] == (T0 + 100, b'{"x":1}')
    assert isinstance(items[1], Malformed) and "a.txt:3" in items[1].reason
    assert items[2] == (T0 + 200, b'{"x":2}') and items[3] == (T0 + 300, b'{"x":3}')
    assert isinstance(items[4], Malformed) and "b.gz:2" in items[4].reason
    assert isinstance(items[5], Malformed) and items[5].recv_ns == T0 + 300
    assert len(items) == 6


def test_missing_file_raises_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"nope\.gz"):
        list(read_recording([tmp_path / "nope.gz"]))


@pytest.mark.parametrize(("text", "speed"), [("max", None), ("1", 1.0), ("10", 10.0), ("0.5", 0.5)])
def test_parse_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", ""])
def test_parse_speed_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="positive number or 'max'"):
        parse_speed(text)


def _write(tmp_path: Path, times_ms: list[int]) -> Path:
    path = tmp_path / "r.txt"
    path.write_text("".join(f"{T0 + t * 1_000_000} {{}}\n" for t in times_ms))
    return path


async def test_replay_paces_by_receive_time_on_the_injected_clock(tmp_path: Path) -> None:
    path = _write(tmp_path, [1000, 1000, 1500, 3000])
    clock = ManualClock(start_ns=5_000_000_000)
    seen = []
    async for item in ReplaySource([path], speed=2.0, clock=clock).frames():
        seen.append((item, clock.monotonic_ns() - 5_000_000_000))
    # at 2x: 0 ms, 0 ms, 250 ms, 1000 ms after start
    assert [offset for _, offset in seen] == [0, 0, 250_000_000, 1_000_000_000]
    assert clock.slept_s == pytest.approx([0.25, 0.75])


async def test_replay_at_max_speed_never_waits_but_yields_to_the_loop(tmp_path: Path) -> None:
    path = _write(tmp_path, list(range(0, 3 * YIELD_EVERY * 1000, 1000)))
    clock = ManualClock()
    n = 0
    async for _ in ReplaySource([path], speed=None, clock=clock).frames():
        n += 1
    assert n == 3 * YIELD_EVERY
    assert clock.slept_s == [0, 0, 0] and clock.monotonic_ns() == 0


def test_lines_across_blocks_and_gzip_members_read_as_the_bytes_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader splits decompressed blocks, not lines one by one: a line cut by a block's
    end, a member's end (a day appended to: a new gzip member, zero padding between) or a
    CR LF cut between blocks reads whole, every line in order with its number."""
    from mmdaemon.feed import recording as recording_module

    monkeypatch.setattr(recording_module, "_BLOCK_BYTES", 7)  # every line spans blocks
    monkeypatch.setattr(recording_module, "_READ_BYTES", 5)
    lines = [b'%d {"n":%d,"pad":"%s"}' % (T0 + n, n, b"x" * (n * 3)) for n in range(40)]
    path = tmp_path / "members.gz"
    path.write_bytes(gzip.compress(b"\r\n".join(lines[:15]) + b"\r\n") + b"\0\0\0"
                     + gzip.compress(b"\n".join(lines[15:]) + b"\nnot a line"))
    items = list(read_recording([path]))
    assert items[:40] == [(T0 + n, line.partition(b" ")[2]) for n, line in enumerate(lines)]
    assert isinstance(items[40], Malformed) and items[40].reason.startswith("members.gz:41:")
    assert len(items) == 41


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.999])
def test_a_cut_gzip_reads_the_frames_zlib_inflates_from_it_then_says_so(
    tmp_path: Path, keep: float,
) -> None:
    """The reader inflates with ISA-L, not zlib: a recording cut short (a recorder killed
    between flushes) still gives every whole line zlib gets out of the same bytes as a
    frame, no fewer, then one Malformed naming the cut."""
    data = SPOT_FILES[1].read_bytes()[: int(SPOT_FILES[1].stat().st_size * keep)]
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data)
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    inflated = tmp_path / "inflated.txt"  # what zlib makes of the cut stream, whole lines
    inflated.write_bytes(text[: text.rindex(b"\n") + 1])  # (the cut one is not a frame)
    from_gzip = list(read_recording([cut]))
    frames = [item for item in from_gzip if type(item) is tuple]
    assert frames == [item for item in read_recording([inflated]) if type(item) is tuple]
    assert len(frames) > 10_000 * keep
    assert isinstance(from_gzip[-1], Malformed) and "cut short" in from_gzip[-1].reason


@pytest.mark.parametrize("tail", [b"\n\n", b"garbage!", b"\x1f\x8b\x07", b"\x00\x00junk",
                                  b"\x1f\x8b\x08\x20\x00\x00\x00\x00\x00\x03"])
def test_bytes_after_the_last_gzip_member_that_start_none_are_damage_not_a_cut(
    tmp_path: Path, tail: bytes,
) -> None:
    """A few bytes appended to a whole recording (an editor's line feeds, a copy gone
    wrong) cannot start a gzip member (magic 1f 8b, method 8, no reserved flag): the file
    is damaged there, as zlib said, not cut short mid-member; even when they are fewer
    than the 10 bytes ISA-L waits for before it judges a header. Every frame before them
    has been yielded."""
    lines = [b"%d {\"n\":%d}" % (T0 + n, n) for n in range(30)]
    damaged = tmp_path / "tail.gz"
    damaged.write_bytes(gzip.compress(b"\n".join(lines) + b"\n") + tail)
    items: list[object] = []
    with pytest.raises(RecordingError, match=r"tail\.gz: unreadable after line 30: "):
        items.extend(read_recording([damaged]))
    assert items == [(T0 + n, line.partition(b" ")[2]) for n, line in enumerate(lines)]


def test_a_member_cut_inside_its_header_is_still_a_cut(tmp_path: Path) -> None:
    """What can start a gzip member and ends there is a cut (the recorder died writing
    the next member's header), read as before."""
    whole = gzip.compress(b"%d {}\n" % T0)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole + whole[:4])
    items = list(read_recording([cut]))
    assert items[0] == (T0, b"{}")
    assert isinstance(items[1], Malformed) and "cut short" in items[1].reason
    assert len(items) == 2
