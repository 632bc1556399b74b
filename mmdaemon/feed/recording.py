"""Recorded feeds: ``<recv_ns> <frame>`` per line, gzip or plain text, several files in order.

This is the format of the real recordings in ``data/`` and of ``mmdaemon record``: the
frame is byte-for-byte what the venue sent, ``recv_ns`` the receive time in ns since the
epoch (ASCII digits, at most 19: an int64). A line that does not have that shape is
yielded as a :class:`Malformed` event (with its file and line number) so the consumer counts
and logs it; it never stops the replay. So is a line longer than
:data:`~mmdaemon.model.MAX_FRAME_BYTES` (it is skipped without being held whole).

A receive time that cannot be true is malformed too, never taken as time: the replay's
clock never moves backwards, so one line stamped in the far future would hold every later
frame at that time (and size whatever is laid out over the run's time span). The bounds,
all relative to the recording itself, so that a replay does not depend on the wall clock:

- **absolute**: from 2009-01-01 (:data:`MIN_RECV_NS`) to before 2100-01-01 UTC
  (:data:`MAX_RECV_NS`);
- **jumps**: more than :data:`MAX_AHEAD_NS` (60 s) forwards or :data:`MAX_BACK_NS` (5 s)
  backwards from the last good line. A recording whose time really jumps (a recorder down
  for a while, a clock stepped, files of different days) shows it by going on from there:
  :data:`CONFIRM_LINES` consecutive lines that agree with one another (each within the
  bounds of the one before) make the new time good, and those lines are yielded as
  frames, none lost. Lines that jump and are not confirmed so are malformed. Lines in
  doubt are held back until then (at most :data:`CONFIRM_LINES`), so the order of
  everything yielded is the file's;
- **the start**: the first line has nothing to be judged against, so it is held until the
  next one agrees with it (``START_CONFIRM_LINES``); if it does not, the first is
  malformed and the next one takes its place;
- **the end**: lines still in doubt when the recording ends were not confirmed, so they are
  malformed; unless no time was ever good, when nothing contradicts them (a recording of
  a single line is just that line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

from isal import isal_zlib

from mmdaemon.model import MAX_FRAME_BYTES, NS_PER_S, Malformed

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # zlib's code for a gzip header and trailer (CRC, size)
# what the inflate raises on damaged bytes (isal's stubs declare it an instance, not a class)
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
_MEMBER_HEAD = GZIP_MAGIC + b"\x08"  # a gzip member's magic and method (deflate)
_RESERVED_FLAGS = 0xE0  # bits of its flags byte that must be 0

MIN_RECV_NS = 1_230_768_000 * NS_PER_S
"""2009-01-01T00:00:00Z: no venue this reads was streaming before it."""
MAX_RECV_NS = 4_102_444_800 * NS_PER_S
"""2100-01-01T00:00:00Z, excluded: a receive time at or after it is a corrupt stamp."""
MAX_AHEAD_NS = 60 * NS_PER_S
"""How far (ns) a line's receive time may be ahead of the last good line's.

A live recorder writes a line every few seconds at least (a silent stream is reconnected
after ``feed.stale_after_ms`` and a snapshot recorded): the bundled recordings never go
more than 0.21 s between lines. Anything further is a corrupt stamp or a real break (a
recorder restart, a reconnect that took long, the next day's file), which
:data:`CONFIRM_LINES` tells apart: a real break is confirmed by the lines after it, so no
frame of it is lost. A bound of an hour let one line stamped +59 min through, and the
replay's clock, which never moves back, then held every later line at that time."""
MAX_BACK_NS = 5 * NS_PER_S
"""How far (ns) a line's receive time may be behind the last good line's.

A recorder stamps lines in the order it reads them, so the times never go back but by a
wall clock stepped back (NTP slews small errors; a step is rare and of seconds at most):
the bundled recordings never go back at all. A line further back is in doubt, as above."""
_MAX_LINE = MAX_FRAME_BYTES + 22  # with the time (19 digits at most), the space and CR LF
CONFIRM_LINES = 8
"""Consecutive lines agreeing with one another that make a jump of time real."""
START_CONFIRM_LINES = 2
"""Lines agreeing with one another that make the first time of a recording good."""

RecordedFrame = tuple[int, bytes]
_Held = RecordedFrame | Malformed
_NO_TIME = -(1 << 80)  # no good line yet: every time is a jump from it


class RecordingError(Exception):
    """A recording that cannot be read at all (missing, unreadable compression)."""


_READ_BYTES = 1 << 17
"""Bytes read from a file at a time."""
_BLOCK_BYTES = 1 << 18
"""Decompressed bytes at most per block: the lines are split a block at a time, in C, not
a line at a time through :class:`gzip.GzipFile`'s Python-level ``readline`` (a third of
the reading's time on the bundled recording); a block bounds what is held besides a line."""


def _check_member_start(data: bytes) -> None:
    """Raise :data:`_INFLATE_ERROR` unless ``data``, the bytes where a gzip member should
    start, start one as far as they go: the magic, the deflate method, no reserved flag
    (RFC 1952). ISA-L judges a header only once it holds all 10 of its bytes, so fewer
    that cannot start one (line feeds appended to a recording) would pass for a member cut
    short rather than the damage zlib reported, and it ignores the reserved flags."""
    head = data[:3]
    if head != _MEMBER_HEAD[: len(head)] or (len(data) > 3 and data[3] & _RESERVED_FLAGS):
        raise _INFLATE_ERROR(f"no gzip member starts with bytes {data[:4].hex(' ')}")


def _blocks(stream: BinaryIO, gzipped: bool) -> Iterator[bytes]:
    """The file's bytes, decompressed when ``gzipped``, a block at a time.

    Several gzip members one after another (a day appended to) read as one stream, as
    :mod:`gzip` reads them, zero padding between them skipped. Raises :class:`EOFError`
    when a gzip stream is cut short (the blocks before the cut have been yielded) and
    :data:`_INFLATE_ERROR` when its bytes are damaged (a bad header, data or CRC).

    The inflate is ISA-L's (:mod:`isal.isal_zlib`, zlib's interface): the same bytes as
    zlib's, up to a cut too, in a third of its time (13 against 36 ms for the bundled
    recording's 27 MB), the largest part of reading a recording after the lines' own."""
    read = stream.read
    if not gzipped:
        yield from iter(partial(read, _BLOCK_BYTES), b"")
        return
    inflater = isal_zlib.decompressobj(_GZIP_WBITS)
    fed = False  # bytes of the current member went in
    data = b""
    while True:
        if not data:
            data = read(_READ_BYTES)
            if not data:
                if fed and not inflater.eof:
                    raise EOFError("the gzip stream ends before its end-of-stream marker")
                return
        if inflater.eof:  # a member ended: another may follow
            data = data.lstrip(b"\0")
            if not data:
                continue
            inflater, fed = isal_zlib.decompressobj(_GZIP_WBITS), False
        if not fed:
            _check_member_start(data)
        fed = True
        block = inflater.decompress(data, _BLOCK_BYTES)
        data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        if block:
            yield block


def _line_lists(blocks: Iterable[bytes], longest: int) -> Iterator[list[bytes]]:
    """The lines of ``blocks`` without their line feeds, a list per block.

    A line of ``longest`` bytes or more is given as one of that length or more (the
    consumer tells it so by its length): a line spanning blocks is held in pieces only
    until it is that long, then the rest of it is dropped as it comes, never held whole."""
    pieces: list[bytes] = []  # the line in progress, when it spans blocks
    size = 0  # bytes in pieces
    skipping = False  # the line in progress was already given as overlong
    for block in blocks:
        lines = block.split(b"\n")
        last = lines.pop()  # the start of the next line: b"" when the block ends one
        if lines:
            if skipping:
                del lines[0]  # the end of the overlong line
                skipping = False
            elif pieces:
                pieces.append(lines[0])
                lines[0] = b"".join(pieces)
            pieces.clear()
            size = 0
            yield lines
        if last and not skipping:
            pieces.append(last)
            size += len(last)
            if size >= longest:
                yield [b"".join(pieces)]
                pieces.clear()
                skipping = True
    if pieces:
        yield [b"".join(pieces)]  # the last line, without a line feed


class _Doubts:
    """Lines held back while the recording's time is in doubt (see the module docstring).

    ``held`` keeps every line since the first doubtful one in file order: the timed ones
    (``(recv_ns, frame)``, with where they came from in ``where``) and any Malformed that
    came between them.
    """

    def __init__(self) -> None:
        self.held: list[_Held] = []
        self.where: list[str] = []  # "file:line" of each timed held line
        self.timed = 0  # timed lines in held: they agree with one another
        self.last = 0  # the newest timed held line's time

    def judge(self, good_ns: int, ns: int, frame: bytes, where: str
              ) -> tuple[int, list[_Held]]:
        """A line whose time ``ns`` is beyond the bounds (:data:`MAX_AHEAD_NS`,
        :data:`MAX_BACK_NS`) of the last good time
        ``good_ns`` (or anything while lines are held): the new good time and what can be
        yielded now."""
        out: list[_Held] = []
        if -MAX_BACK_NS <= ns - good_ns <= MAX_AHEAD_NS:  # the held lines were the odd ones
            out = self.release(good_ns)
            out.append((ns, frame))
            return ns, out
        if self.timed and not -MAX_BACK_NS <= ns - self.last <= MAX_AHEAD_NS:
            # it agrees with neither: the run held so far is broken off
            out = self.release(good_ns)
        self.held.append((ns, frame))
        self.where.append(where)
        self.timed += 1
        self.last = ns
        if self.timed >= (CONFIRM_LINES if good_ns != _NO_TIME else START_CONFIRM_LINES):
            out.extend(self.held)  # the time really moved: these lines are the proof
            self._clear()
            return ns, out
        return good_ns, out

    def release(self, good_ns: int) -> list[_Held]:
        """The held lines as Malformed (their times were not confirmed), in order."""
        out: list[_Held] = []
        reported = max(good_ns, 0)
        places = iter(self.where)
        limits = f"more than {MAX_AHEAD_NS // NS_PER_S} s ahead or {MAX_BACK_NS // NS_PER_S} s back"
        for item in self.held:
            if isinstance(item, Malformed):
                out.append(item)
                continue
            ns = item[0]
            if good_ns == _NO_TIME:
                why = f"is {limits} of the next line's"
            else:
                why = (f"is {(ns - good_ns) / NS_PER_S:+.3f} s from the last good line's "
                       f"({limits}, and not followed by "
                       f"{CONFIRM_LINES} lines agreeing with it)")
            out.append(Malformed(f"{next(places)}: receive time {ns} {why}", reported))
        self._clear()
        return out

    def _clear(self) -> None:
        self.held.clear()  # in place: the reader keeps a reference to it
        self.where.clear()
        self.timed = 0


def read_recording(paths: Iterable[str | Path]) -> Iterator[RecordedFrame | Malformed]:
    """Yield ``(recv_ns, frame)`` for every line of every file, in order.

    A line without the ``<recv_ns> <frame>`` shape, or whose time is impossible (see the
    module docstring), is yielded as a :class:`Malformed` whose ``recv_ns`` is the last
    good line's time. Raises :class:`RecordingError` when a file is missing or its
    compression is corrupt: the frames before the damage have been yielded. A gzip stream
    that merely ends early (a recorder that crashed between flushes) yields what it holds,
    then one :class:`Malformed` naming the cut, and reading goes on with the next file.
    """
    good_ns = _NO_TIME  # the last good line's time
    doubts = _Doubts()
    held = doubts.held  # lines in doubt: while any are, every line queues behind them
    lo, hi, jump, longest = MIN_RECV_NS, MAX_RECV_NS, MAX_AHEAD_NS, _MAX_LINE
    for raw_path in paths:
        path = Path(raw_path)
        try:
            with path.open("rb") as probe:
                gzipped = probe.read(2) == GZIP_MAGIC
            stream = path.open("rb")
        except OSError as exc:
            raise RecordingError(f"{path}: {exc.strerror or exc}") from exc
        with stream:
            lineno = 0
            try:
                for lines in _line_lists(_blocks(stream, gzipped), longest):
                    for line in lines:
                        lineno += 1
                        if len(line) >= longest:
                            reason = f"longer than {MAX_FRAME_BYTES} bytes (skipped)"
                        else:
                            ns_text, sep, frame = line.partition(b" ")
                            frame = frame.rstrip(b"\r")
                            if sep and ns_text.isdigit() and len(ns_text) <= 19 and frame:
                                ns = int(ns_text)
                                # the common case, without a call: forwards within the
                                # bound from a good time (so after 2009) and before 2100
                                if 0 <= ns - good_ns <= jump and ns < hi and not held:
                                    good_ns = ns
                                    yield ns, frame
                                    continue
                                if lo <= ns < hi:
                                    good_ns, out = doubts.judge(good_ns, ns, frame,
                                                                f"{path.name}:{lineno}")
                                    yield from out
                                    continue
                                reason = f"receive time {ns} is not between 2009 and 2100"
                            elif line.strip():
                                reason = "not '<recv_ns> <frame>'"
                            else:
                                continue
                        bad = Malformed(f"{path.name}:{lineno}: {reason}", max(good_ns, 0))
                        if held:
                            held.append(bad)
                        else:
                            yield bad
            except EOFError:
                bad = Malformed(f"{path.name}: ends early after line {lineno} (cut short)",
                                max(good_ns, 0))
                if held:
                    held.append(bad)
                else:
                    yield bad
            except (OSError, _INFLATE_ERROR) as exc:
                raise RecordingError(f"{path}: unreadable after line {lineno}: {exc}") from exc
    if good_ns == _NO_TIME:
        yield from doubts.held  # nothing contradicts them: the recording's only times
    else:
        yield from doubts.release(good_ns)
