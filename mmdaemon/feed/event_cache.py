"""The decoded-event cache: parse a recording once, replay it many times.

Most of a replay at ``--speed max`` is reading the gzip lines and decoding the JSON frames
(:mod:`mmdaemon.feed.recording`, the venue codec). A sweep replays the same recordings
hundreds of times, so the events the codec produced from them can be kept in a file beside
the first recording and read back instead: the exact :class:`~mmdaemon.model.BookUpdate`,
:class:`~mmdaemon.model.Trade`, :class:`~mmdaemon.model.TopOfBook`,
:class:`~mmdaemon.model.Gap` and codec :class:`~mmdaemon.model.Malformed` events of every
frame (integers: ticks, lots, ids, ns), and the recording's own bad lines, in file order, on
the replay's clock. They enter the engine as :class:`~mmdaemon.market.Decoded` items (the
LOBSTER path), which apply to the book exactly as :meth:`MarketState.on_frame` applies a
codec's output: the replay's results are the same, bit for bit.

What a cache is valid for, all in its header and checked before it is used:

- the format (:data:`FORMAT_VERSION`) and the code that shaped its events
  (:func:`codec_fingerprint`: a sha256 over the codec's, the recording reader's and the
  replay clock's sources and the compiled decoder): a new mmdaemon rebuilds;
- the venue market (spot, usdm), symbol, tick and lot size the codec scaled by, and the
  replay clock (receive or exchange): each gives other integers or other times;
- the recordings, in order: each by size and modification time (the fast path), else by
  the sha256 of its bytes, which may be the file's as built or its decompressed content's
  (a sweep's worker replays a decompressed copy).

A cache that fails any check is stale (``event_cache_unused``; rebuilt by ``--cache
build``). The body is length-prefixed chunks, each with its crc32, and a trailer counting
them: a cache cut short or damaged is never trusted (``event_cache_corrupt``), the replay
parses the recordings instead. Every chunk is checked before the first event is used, so a
bad cache is found before the run, never half-way through it.

The cache covers the traded feed of a Binance replay: a reference feed merged in, or a
LOBSTER replay (its rows come decoded already), replays without it (said in the log).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from mmdaemon import __version__ as VERSION
from mmdaemon import book as book_module
from mmdaemon import market as market_module
from mmdaemon import model as model_module
from mmdaemon.config import Config
from mmdaemon.feed import event_chunk
from mmdaemon.feed import recording as recording_module
from mmdaemon.feed import replay as replay_module
from mmdaemon.feed.event_chunk import CHUNK_ITEMS, ChunkWriter, decode
from mmdaemon.feed.recording import GZIP_MAGIC, RecordedFrame, RecordingError, read_recording
from mmdaemon.feed.replay import EventTime, exchange_timed
from mmdaemon.market import Decoded, MarketState
from mmdaemon.model import Instrument, Malformed, MarketEvent
from mmdaemon.venues import binance as binance_module
from mmdaemon.venues.binance import BinanceCodec, Market, frame_event_ns

FORMAT_VERSION = 1
"""The layout of a cache file; a cache of another version is stale."""
MAGIC = b"MMEVENTS"
TRAILER_MAGIC = b"MMEVEND\n"
SUFFIX = ".mmevents"
_U32 = struct.Struct("<I")
_CHUNK_HEAD = struct.Struct("<II")  # body length, crc32 of the body
_TRAILER = struct.Struct("<8sQQ")  # magic, items, chunks

CacheMode = Literal["use", "off", "build"]
"""``use`` a valid cache when there is one; ``off`` parse the recordings; ``build`` (re)build
the cache when it is missing or stale, then use it."""

_HASH_BLOCK = 1 << 20


class CacheUnusable(Exception):
    """A cache that cannot be used: ``corrupt`` (damaged, cut short: never trusted) or not
    (stale: made for other recordings, code, instrument or clock)."""

    def __init__(self, reason: str, corrupt: bool = False, missing: bool = False) -> None:
        super().__init__(reason)
        self.corrupt = corrupt
        self.missing = missing  # no file at all: the usual case of a replay


@cache
def codec_fingerprint() -> str:
    """sha256 (hex) of what shapes the cached events: mmdaemon's version, the sources of the
    Binance codec, the recording reader and the replay clocks, the event types, the market
    state and book (a crossed book resets the codec), the chunk layout, and the compiled
    decoder (its built file) when there is one. Any change to them makes every
    cache stale, so a cache never outlives the code that made it."""
    digest = hashlib.sha256(VERSION.encode())
    for module in (binance_module, recording_module, replay_module, model_module,
                   market_module, book_module, event_chunk):
        digest.update(Path(module.__file__ or "").read_bytes())
    try:
        from mmdaemon import _speedups
    except ImportError:  # pure Python: the reference decoders, already in the sources
        pass
    else:
        digest.update(Path(_speedups.__file__ or "").read_bytes())
    return digest.hexdigest()


def cache_key(instrument: Instrument, market: Market, clock: str) -> dict[str, Any]:
    """What the cached integers and times depend on besides the recordings and the code."""
    return {"format": FORMAT_VERSION, "codec": codec_fingerprint(), "market": market,
            "symbol": instrument.symbol, "tick_size": str(instrument.tick_size),
            "lot_size": str(instrument.lot_size), "clock": clock}


def cache_path(recordings: Sequence[str | Path], key: dict[str, Any]) -> Path:
    """Where the cache of ``recordings`` for ``key`` lives: beside the first recording,
    named after it, the clock and the instrument's grid (``<first>.<clock>-<grid>.mmevents``)
    so that caches for two instruments or clocks do not replace each other. When that
    directory is not writable or is read-only by its mode (a shared data set: even to
    root, who could write it), in the user's cache directory
    (``$XDG_CACHE_HOME/mmdaemon/events``, default ``~/.cache``) under a name made unique by
    the recording's full path."""
    first = Path(recordings[0]).resolve()
    grid = hashlib.sha256(repr((key["market"], key["symbol"], key["tick_size"],
                                key["lot_size"])).encode()).hexdigest()[:8]
    name = f"{first.name}.{key['clock']}-{grid}{SUFFIX}"
    if _writable(first.parent):
        return first.parent / name
    where = hashlib.sha256(str(first).encode()).hexdigest()[:12]
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home) / "mmdaemon" / "events" / f"{where}-{name}"


def _writable(folder: Path) -> bool:
    """We may write in ``folder``: it grants writing to someone (a data set made read-only
    stays so to root too) and to us."""
    try:
        return bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


# per process: (path, size, mtime_ns) -> sha256 of the file; a sweep's worker hashes its
# copies once, not once per run
_HASHED: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path, stat: os.stat_result) -> str:
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    done = _HASHED.get(key)
    if done is None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(_HASH_BLOCK), b""):
                digest.update(block)
        done = _HASHED[key] = digest.hexdigest()
    return done


def _content_sha256(path: Path, file_sha: str) -> str:
    """sha256 of a recording's content: decompressed if it is gzip (a decompressed copy
    of it then has the same), else the file's (``file_sha``). A gzip file that does not
    decompress whole has no content digest but its file's."""
    with path.open("rb") as f:
        if f.read(2) != GZIP_MAGIC:
            return file_sha
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(_HASH_BLOCK), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error):
        return file_sha
    return digest.hexdigest()


def _identity(path: Path) -> dict[str, Any]:
    """A recording as the header names it (see the module docstring)."""
    stat = path.stat()
    file_sha = _file_sha256(path, stat)
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": file_sha, "content_sha256": _content_sha256(path, file_sha)}


def _same_recording(path: Path, named: dict[str, Any]) -> bool:
    """``path`` is the recording ``named``: same size and mtime (the fast path), else the
    sha256 of its bytes is the file's or the content's the cache was built from."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size == named["size"] and stat.st_mtime_ns == named["mtime_ns"]:
        return True
    return _file_sha256(path, stat) in (named["sha256"], named["content_sha256"])


class _Recorder:
    """A codec that hands on another's output and writes it into the chunk under way at
    once (before the book has seen it)."""

    def __init__(self, inner: BinanceCodec) -> None:
        self.inner = inner
        self.chunk = ChunkWriter()

    def decode(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]:
        events = self.inner.decode(recv_ns, frame)
        self.chunk.frame(recv_ns, events)
        return events

    def reset(self) -> None:
        self.inner.reset()


def _chunks(recordings: Sequence[Path], instrument: Instrument, market: Market,
            event_ns: EventTime | None) -> Iterator[ChunkWriter]:
    """Every replay item of ``recordings``, in chunks: the codec runs with a book behind
    it, as in a replay, since a crossed book resets the codec and so shapes what it
    decodes next."""
    recorder = _Recorder(BinanceCodec(instrument, market))
    state = MarketState(recorder)
    lines: Iterable[RecordedFrame | Malformed] = read_recording(recordings)
    if event_ns is not None:  # the exchange clock, as ReplaySource.lines() times them
        lines = exchange_timed(lines, event_ns)
    for item in lines:
        if type(item) is Malformed:
            recorder.chunk.line(item.reason, item.recv_ns)
        else:
            state.on_frame(*item)
        if recorder.chunk.items == CHUNK_ITEMS:
            yield recorder.chunk
            recorder.chunk = ChunkWriter()
    if recorder.chunk.items:
        yield recorder.chunk


def build(recordings: Sequence[str | Path], instrument: Instrument, market: Market,
          clock: str, event_ns: EventTime | None, path: Path | None = None) -> Path:
    """Write the cache of ``recordings`` (see :func:`cache_key` and :func:`cache_path`,
    or at ``path``) and return where. Written beside and renamed into place, so a reader
    never sees half a file. Raises :class:`RecordingError` when a recording cannot be read
    and :class:`OSError` when the cache cannot be written."""
    paths = [Path(p) for p in recordings]
    key = cache_key(instrument, market, clock)
    target = path or cache_path(paths, key)
    header = {**key, "recordings": [_identity(p) for p in paths]}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    items = chunks = 0
    try:
        with partial.open("wb") as out:
            head = json.dumps(header, sort_keys=True).encode()
            out.write(MAGIC + _U32.pack(len(head)) + head)
            for chunk in _chunks(paths, instrument, market, event_ns):
                body = chunk.encode()
                out.write(_CHUNK_HEAD.pack(len(body), zlib.crc32(body)) + body)
                items += chunk.items
                chunks += 1
            out.write(_TRAILER.pack(TRAILER_MAGIC, items, chunks))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


class EventCache:
    """An open, checked cache: :meth:`items` yields the replay's items from it."""

    def __init__(self, path: Path, recordings: Sequence[str | Path], key: dict[str, Any]
                 ) -> None:
        """Open the cache at ``path`` for replaying ``recordings`` with ``key``. Raises
        :class:`CacheUnusable` when it is missing, stale or corrupt (every chunk's crc is
        checked here)."""
        self.path = path
        try:
            with path.open("rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise CacheUnusable(f"no cache at {path}", missing=True) from None
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise CacheUnusable(f"{path}: unreadable: {exc}", corrupt=True) from None
        try:
            self.header = self._check_layout()
        except CacheUnusable:
            self._map.close()
            raise
        try:
            stale = self._stale(recordings, key)
        except (KeyError, TypeError, AttributeError):  # a header without its fields
            self._map.close()
            raise CacheUnusable(f"{path}: damaged header (fields missing)",
                                corrupt=True) from None
        if stale:
            self._map.close()
            raise CacheUnusable(f"{path}: {stale}")

    def _check_layout(self) -> dict[str, Any]:
        """The header, once every chunk's length and crc and the trailer's counts agree."""
        data, size = self._map, len(self._map)
        start = len(MAGIC) + _U32.size
        if size < start + _TRAILER.size or data[:len(MAGIC)] != MAGIC:
            raise CacheUnusable(f"{self.path}: not an event cache (bad magic or too short)",
                                corrupt=True)
        (head_len,) = _U32.unpack_from(data, len(MAGIC))
        try:
            header = json.loads(bytes(data[start:start + head_len]))
        except ValueError:
            raise CacheUnusable(f"{self.path}: damaged header", corrupt=True) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
            found = header.get("format") if isinstance(header, dict) else None
            raise CacheUnusable(f"{self.path}: format {found!r}, this mmdaemon reads "
                                f"{FORMAT_VERSION}")
        offset, end = start + head_len, size - _TRAILER.size
        self._chunks: list[tuple[int, int]] = []
        while offset < end:
            if offset + _CHUNK_HEAD.size > end:
                raise CacheUnusable(f"{self.path}: cut short in a chunk's head", corrupt=True)
            length, crc = _CHUNK_HEAD.unpack_from(data, offset)
            offset += _CHUNK_HEAD.size
            if offset + length > end or zlib.crc32(data[offset:offset + length]) != crc:
                raise CacheUnusable(f"{self.path}: chunk {len(self._chunks)} cut short or "
                                    "damaged (crc32)", corrupt=True)
            self._chunks.append((offset, length))
            offset += length
        magic, self.items_count, chunks = _TRAILER.unpack_from(data, end)
        if magic != TRAILER_MAGIC or chunks != len(self._chunks):
            raise CacheUnusable(f"{self.path}: cut short (trailer missing or counts "
                                f"{chunks} chunks, found {len(self._chunks)})", corrupt=True)
        return header

    def _stale(self, recordings: Sequence[str | Path], key: dict[str, Any]) -> str:
        """Why the cache is not for ``recordings`` and ``key`` ("" if it is)."""
        for name, want in key.items():
            if self.header.get(name) != want:
                if name == "codec":
                    return "built by another version of the decoding code"
                return f"built for {name} {self.header.get(name)!r}, not {want!r}"
        named = self.header.get("recordings") or []
        if len(named) != len(recordings):
            return f"built for {len(named)} recordings, not {len(recordings)}"
        for path, entry in zip(recordings, named, strict=True):
            if not _same_recording(Path(path), entry):
                return f"{path} is not the recording it was built from ({entry['name']})"
        return ""

    def chunks(self) -> Iterator[list[Decoded | Malformed]]:
        """The replay's items in order, a chunk's list at a time: a frame's events as
        :class:`Decoded`, a bad line as :class:`Malformed`."""
        data = self._map
        for offset, length in self._chunks:
            yield decode(data[offset:offset + length])

    def items(self) -> Iterator[Decoded | Malformed]:
        """The items of :meth:`chunks` one by one (no Python frame per item)."""
        return chain.from_iterable(self.chunks())

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()


def open_for_replay(recordings: Sequence[str | Path], instrument: Instrument, market: Market,
                    clock: str, event_ns: EventTime | None, mode: CacheMode, log: Any,
                    path: Path | None = None) -> EventCache | None:
    """The cache a replay of ``recordings`` reads, or None to parse them; every outcome
    logged: ``event_cache_used``, ``event_cache_unused`` (stale, with why; missing: at
    debug level unless ``mode`` is ``build``),
    ``event_cache_corrupt`` (a warning: damaged or cut short, not trusted),
    ``event_cache_built``. ``mode`` ``build`` (re)builds a missing or stale one first.
    ``path``: the cache to read (a sweep's, built before its runs), else
    :func:`cache_path`. A cache that cannot be built is logged (``event_cache_unbuilt``)
    and the replay parses."""
    if mode == "off":
        return None
    key = cache_key(instrument, market, clock)
    target = path or cache_path(recordings, key)
    try:
        cache = EventCache(target, recordings, key)
    except CacheUnusable as exc:
        if exc.corrupt:
            log.warning("event_cache_corrupt", path=str(target), reason=str(exc),
                        note="not trusted: the recordings are parsed")
        else:  # none at all is every uncached replay: said only when asked to build
            (log.debug if exc.missing and mode == "use" else log.info)(
                "event_cache_unused", path=str(target), reason=str(exc))
        if mode != "build":
            return None
        try:
            target = build(recordings, instrument, market, clock, event_ns, target)
            cache = EventCache(target, recordings, key)
        except (OSError, OverflowError, RecordingError, CacheUnusable) as error:
            log.warning("event_cache_unbuilt", path=str(target), reason=str(error))
            return None
        log.info("event_cache_built", path=str(target), items=cache.items_count)
    log.info("event_cache_used", path=str(target), items=cache.items_count)
    return cache


def _replay_of(config: Config, reference: Sequence[str], event_clock: str | None
               ) -> tuple[Instrument, Market, str] | str:
    """The instrument, market and clock a replay of ``config`` decodes by, or why the cache
    does not cover it."""
    venue = config.instrument.venue
    if venue == "lobster":
        return "a LOBSTER replay reads its rows decoded already"
    if reference:
        return "a reference feed is merged in: the cache holds the traded feed only"
    try:
        instrument = config.instrument.build()
    except ValueError as exc:  # the service says so too, at its start
        return str(exc)
    market: Market = "usdm" if venue == "binance-usdm" else "spot"
    return instrument, market, event_clock or config.feed.clock


def for_config(config: Config, recordings: Sequence[str], reference: Sequence[str],
               event_clock: str | None, mode: CacheMode, log: Any, path: Path | None = None
               ) -> EventCache | None:
    """:func:`open_for_replay` for a dry run of ``config`` on ``recordings`` (the clock
    ``event_clock``, None: the config's): None without asking when the replay is not one
    the cache covers (a LOBSTER pair, a reference feed merged in: logged)."""
    if mode == "off" or not recordings:
        return None
    replay = _replay_of(config, reference, event_clock)
    if isinstance(replay, str):  # not a replay it covers: said when asked to build
        (log.info if mode == "build" else log.debug)("event_cache_unused", reason=replay)
        return None
    instrument, market, clock = replay
    return open_for_replay(recordings, instrument, market, clock,
                           frame_event_ns if clock == "exchange" else None, mode, log, path)


def ensure(config: Config, recordings: Sequence[Path], reference: Sequence[Path] = ()
           ) -> tuple[Path | None, str]:
    """A valid cache for replays of ``config`` on ``recordings`` (a sweep's, before its
    runs), built if it is missing or stale: ``(path, "valid" or "built")``, or ``(None,
    why not)`` (the runs parse)."""
    replay = _replay_of(config, [str(p) for p in reference], None)
    if isinstance(replay, str):
        return None, replay
    instrument, market, clock = replay
    key = cache_key(instrument, market, clock)
    target = cache_path(recordings, key)
    try:
        EventCache(target, recordings, key).close()
        return target, "valid"
    except CacheUnusable:
        pass
    try:
        build(recordings, instrument, market, clock,
              frame_event_ns if clock == "exchange" else None, target)
        EventCache(target, recordings, key).close()
    except (OSError, OverflowError, RecordingError, CacheUnusable) as exc:
        return None, f"cannot build {target}: {exc}"
    return target, "built"


def _closing(cache: EventCache) -> Iterator[list[Decoded | Malformed]]:
    try:
        yield from cache.chunks()
    finally:
        cache.close()


def replay_items(cache: EventCache) -> Iterator[Decoded | Malformed]:
    """The cache's items, the mapping closed once they are all read (or the replay has
    stopped reading them)."""
    return chain.from_iterable(_closing(cache))
