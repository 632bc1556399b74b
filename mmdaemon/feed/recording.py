"""Recorded feeds: ``<recv_ns> <frame>`` per line, gzip or plain text, several files in order.

This is the format of the real recordings in ``data/`` and of ``mmdaemon record``: the
frame is byte-for-byte what the venue sent, ``recv_ns`` the receive time in ns since the
epoch (ASCII digits, at most 19: an int64). A line that does not have that shape is
yielded as a :class:`Malformed` event (with its file and line number) so the consumer counts
and logs it; it never stops the replay.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mmdaemon.model import Malformed

GZIP_MAGIC = b"\x1f\x8b"

RecordedFrame = tuple[int, bytes]


class RecordingError(Exception):
    """A recording that cannot be read at all (missing, unreadable compression)."""


def open_recording(path: Path) -> BinaryIO:
    """Open a recording for binary line reading, gzip detected by its magic bytes."""
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == GZIP_MAGIC:
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from exc


def read_recording(paths: Iterable[str | Path]) -> Iterator[RecordedFrame | Malformed]:
    """Yield ``(recv_ns, frame)`` for every line of every file, in order.

    Raises :class:`RecordingError` when a file is missing or its compression is corrupt:
    the frames before the damage have been yielded. A gzip stream that merely ends early (a
    recorder that crashed between flushes) yields what it holds, then one
    :class:`Malformed` naming the cut, and reading goes on with the next file.
    """
    last_ns = 0
    for raw_path in paths:
        path = Path(raw_path)
        with open_recording(path) as stream:
            lineno = 0
            try:
                for line in stream:
                    lineno += 1
                    ns_text, sep, frame = line.partition(b" ")
                    frame = frame.rstrip(b"\r\n")
                    if sep and ns_text.isdigit() and len(ns_text) <= 19 and frame:
                        last_ns = int(ns_text)
                        yield last_ns, frame
                    elif line.strip():
                        yield Malformed(f"{path.name}:{lineno}: not '<recv_ns> <frame>'", last_ns)
            except EOFError:
                yield Malformed(f"{path.name}: ends early after line {lineno} (cut short)", last_ns)
            except (OSError, zlib.error) as exc:
                raise RecordingError(f"{path}: unreadable after line {lineno}: {exc}") from exc
