"""``mmdaemon record``: write the live feed in the recording format of DESIGN.md.

One line per frame, ``<recv_ns> <frame>``, the frame byte-for-byte as received (REST
snapshots included, so a replay can sync), gzip-compressed, one file per UTC day named
``<symbol>_<YYYYMMDD>.gz`` like the bundled recordings. A reference venue's feed
(``[reference]``) is recorded the same way into a directory of its own inside OUT,
``<venue>-<symbol>/`` (:func:`reference_dir`), as the shared data is laid out
(``binance-usdm-btcusdt/btcusdt_20240808.gz``): the traded and the reference symbol are
often the same (spot and the perpetual are both BTCUSDT), and each file stays one feed,
readable by ``replay --reference`` and ``verify-book --venue`` as it is.

The compressor is flushed (a full sync flush, readable up to that point) at least every
``flush_interval_s`` on the injected clock's monotonic time: a crash loses at most about
that much, and the reader reports the cut-off tail instead of failing. Writing to a day's
file that exists appends a new gzip member, which readers treat as one stream.

A recorder restarted on the day of its crash finds that day's last member without an end:
appending after it would make the whole file unreadable (the reader would take the new
member's header for more of the old one's data). :func:`seal` ends it first, at its last
complete flush, so the day reads whole: everything flushed before the crash, then the rest.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from mmdaemon.clock import Clock, SystemClock
from mmdaemon.feed.recording import RecordingError

SYNC_MARK = b"\x00\x00\xff\xff"
"""The empty stored block a sync flush ends with, at a byte boundary."""
END_BLOCK = b"\x03\x00"
"""An empty final deflate block: ends a deflate stream that stands at a byte boundary."""
GZIP_HEADER = b"\x1f\x8b\x08"  # magic and deflate: where a member starts
_CHUNK = 1 << 20


def seal(path: Path) -> int | None:
    """End the last gzip member of ``path`` if its writer died without closing it.

    The member is cut after its last complete sync flush (a write torn by the crash goes)
    and given an empty final block and the gzip trailer (CRC-32 and size of what it holds),
    so the frames flushed before the crash read as they were. Returns the bytes cut from
    the end, or None when the file ended properly (or is empty). Raises
    :class:`RecordingError` for a file damaged elsewhere than at its end (a whole member
    follows the damage): cutting there would lose that member, and appending would hide the
    damage, so the operator must move the file aside.
    """
    with path.open("r+b") as f:
        start = _unfinished_member(f)
        if start is None:
            return None
        end = f.seek(0, 2)
        found = _last_flush(f, start)
        cut_at, trailer = (start, b"") if found is None else found
        if _member_after(f, cut_at):
            raise RecordingError(f"{path}: damaged after byte {cut_at}, with data after the "
                                 f"damage: move it aside before recording to this day")
        f.truncate(cut_at)
        f.seek(cut_at)
        f.write(trailer)
        return end - cut_at


def _unfinished_member(f: BinaryIO) -> int | None:
    """Offset of the member that has no end (or does not decode), else None."""
    d = zlib.decompressobj(31)
    member, offset = 0, 0
    while chunk := f.read(_CHUNK):
        while chunk:
            try:
                d.decompress(chunk)
            except zlib.error:
                return member
            if not d.eof:
                offset += len(chunk)
                break
            offset += len(chunk) - len(d.unused_data)
            chunk, member = d.unused_data, offset
            d = zlib.decompressobj(31)
    return None if member == offset else member


def _member_after(f: BinaryIO, offset: int) -> bool:
    """Whether a gzip member that decodes starts anywhere after ``offset``."""
    f.seek(offset)
    rest = f.read()
    at = rest.find(GZIP_HEADER, 1)
    while at >= 0:
        d = zlib.decompressobj(31)
        try:
            if d.decompress(rest[at:at + _CHUNK]):
                return True
        except zlib.error:
            pass
        at = rest.find(GZIP_HEADER, at + 1)
    return False


def _last_flush(f: BinaryIO, start: int) -> tuple[int, bytes] | None:
    """The member at ``start``: the offset just after its last sync flush at which it can
    end, and the bytes that end it there; None if it has no such flush."""
    f.seek(start)
    d = zlib.decompressobj(31)
    crc = size = 0
    best: tuple[int, bytes] | None = None
    pending, pos = b"", start  # bytes read and not yet fed; the offset of pending[0]
    while True:
        chunk = f.read(_CHUNK)
        pending += chunk
        while (i := pending.find(SYNC_MARK)) >= 0 or (not chunk and pending):
            # up to and with the next mark; at the end, the rest (a torn write)
            piece = pending[: i + len(SYNC_MARK)] if i >= 0 else pending
            try:
                out = d.decompress(piece)
            except zlib.error:
                return best
            crc, size = zlib.crc32(out, crc), size + len(out)
            pos, pending = pos + len(piece), pending[len(piece):]
            ending = END_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF)
            probe = d.copy()
            try:
                probe.decompress(ending)
            except zlib.error:
                continue  # a mark inside a block, not a flush
            if probe.eof:
                best = (pos, ending)
        if not chunk:
            return best
        keep = len(SYNC_MARK) - 1  # a mark may straddle the chunks' edge
        if len(pending) > keep:
            try:
                out = d.decompress(pending[:-keep])
            except zlib.error:
                return best
            crc, size = zlib.crc32(out, crc), size + len(out)
            pos, pending = pos + len(pending) - keep, pending[-keep:]


def reference_dir(out: Path, venue: str, symbol: str) -> Path:
    """Where ``record`` writes a reference venue's feed inside ``out``:
    ``out/binance-usdm-btcusdt`` for the BTCUSDT perpetual."""
    return out / f"{venue}-{symbol.lower()}"


def _ignore(event: str, **fields: Any) -> None:
    """Default reporter: drop reports."""


class FrameWriter:
    """Append frames to per-UTC-day gzip files in ``out_dir``; ``report(event, **fields)``
    hears of a day file sealed after a crash (``recording_sealed``). ``clock``'s monotonic
    time paces the flushes (the system's by default); the frames carry their own stamps."""

    def __init__(self, out_dir: Path, symbol: str, flush_interval_s: float = 1.0,
                 report: Callable[..., None] = _ignore, clock: Clock | None = None) -> None:
        self.report = report
        self.clock: Clock = clock or SystemClock()
        self.out_dir = out_dir
        self.symbol = symbol.lower()
        self.flush_interval_s = flush_interval_s
        self.frames = 0
        self.files: list[Path] = []
        self._day = ""
        self._raw: BinaryIO | None = None
        self._gz: gzip.GzipFile | None = None
        self._last_flush_ns = self.clock.monotonic_ns()

    def write(self, recv_ns: int, frame: bytes) -> None:
        """Record one frame received at ``recv_ns`` (ns since the epoch, UTC)."""
        day = datetime.fromtimestamp(recv_ns / 1e9, UTC).strftime("%Y%m%d")
        if day != self._day:
            self._open(day)
        assert self._gz is not None
        if b"\n" in frame:  # one frame per line, whatever the venue sends
            frame = frame.replace(b"\r", b"").replace(b"\n", b"")
        self._gz.write(b"%d %s\n" % (recv_ns, frame))
        self.frames += 1
        if self.clock.monotonic_ns() - self._last_flush_ns >= self.flush_interval_s * 1e9:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far readable from the file."""
        if self._gz is not None and self._raw is not None:
            self._gz.flush(zlib.Z_SYNC_FLUSH)
            self._raw.flush()
        self._last_flush_ns = self.clock.monotonic_ns()

    def close(self) -> None:
        if self._gz is not None and self._raw is not None:
            self._gz.close()
            self._raw.close()
        self._gz = self._raw = None
        self._day = ""

    def _open(self, day: str) -> None:
        self.close()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.symbol}_{day}.gz"
        if path.exists():
            cut = seal(path)
            if cut is not None:
                self.report("recording_sealed", path=str(path), bytes_cut=cut)
        self._raw = path.open("ab")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb")
        self._day = day
        self.files.append(path)
