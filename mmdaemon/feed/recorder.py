"""``mmdaemon record``: write the live feed in the recording format of DESIGN.md.

One line per frame, ``<recv_ns> <frame>``, the frame byte-for-byte as received (REST
snapshots included, so a replay can sync), gzip-compressed, one file per UTC day named
``<symbol>_<YYYYMMDD>.gz`` like the bundled recordings. The compressor is flushed (a full
sync flush, readable up to that point) at least every ``flush_interval_s``: a crash loses at
most about that much, and the reader reports the cut-off tail instead of failing. Writing
to a day's file that exists appends a new gzip member, which readers treat as one stream.
"""

from __future__ import annotations

import gzip
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO


class FrameWriter:
    """Append frames to per-UTC-day gzip files in ``out_dir``."""

    def __init__(self, out_dir: Path, symbol: str, flush_interval_s: float = 1.0) -> None:
        self.out_dir = out_dir
        self.symbol = symbol.lower()
        self.flush_interval_s = flush_interval_s
        self.frames = 0
        self.files: list[Path] = []
        self._day = ""
        self._raw: BinaryIO | None = None
        self._gz: gzip.GzipFile | None = None
        self._last_flush = time.monotonic()

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
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far readable from the file."""
        if self._gz is not None and self._raw is not None:
            self._gz.flush(zlib.Z_SYNC_FLUSH)
            self._raw.flush()
        self._last_flush = time.monotonic()

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
        self._raw = path.open("ab")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb")
        self._day = day
        self.files.append(path)
