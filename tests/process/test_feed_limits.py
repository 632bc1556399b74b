"""Hostile sizes on the live feed, against a real `mmdaemon run` process: a websocket message
far over `feed.max_message_bytes` (one frame, or 300 MB of fragments) and REST snapshot bodies
over `feed.max_snapshot_bytes` (declared in Content-Length, chunked, with no length, a lying
length, gzip-compressed) are refused before they are parsed, with a specific log event; the
book drops (HALTED), the feed reconnects or retries with backoff and quotes again; and the
daemon's peak memory grows by no more than a few times the limit. The order gateway refuses
a message over `exchange.max_message_bytes` likewise and reconnects.

The venue is the sim (a real websockets server on 127.0.0.1, in this process); the snapshot
faults come from a raw HTTP server written here, since a real one cannot lie about lengths.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mmdaemon.clock import SystemClock
from mmdaemon.exchange.base import VenueStatus
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.server import SimVenue
from tests.daemon_process import Daemon, Event
from tests.helpers import first_lines, until, write_config
from tests.integration.test_gateway import CaptureLog, entry_of, running, venue

MIB = 1 << 20
LIMIT = 4 * MIB  # the limits in these tests
HOSTILE = 300 * MIB  # what the broken venue sends: the 300 MB frame


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match[1]) * 1024


async def event(d: Daemon, pred: Callable[[Event], bool], start: int = 0,
                timeout: float = 30.0) -> int:
    """Index of the first event from ``start`` on that satisfies ``pred`` (waits for it)."""
    found: list[int] = []

    def seen() -> bool:
        assert d.proc.poll() is None, d.events[-10:]
        found.extend(i for i in range(start, len(d.events)) if pred(d.events[i]))
        return bool(found)

    await until(seen, timeout)
    return found[0]


def named(name: str, **fields: Any) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())


def active(e: Event) -> bool:
    return e.get("event") == "state_changed" and e.get("new") == "ACTIVE"


def live_config(tmp_path: Path, ws_url: str, rest_url: str) -> Path:
    return write_config(tmp_path, {
        "feed": {"recordings": [], "url": ws_url, "rest_url": rest_url,
                 "backoff_initial_ms": 50, "backoff_max_ms": 400,
                 "max_message_bytes": LIMIT, "max_snapshot_bytes": LIMIT},
        "logging": {"level": "debug"},  # order_sent events
    })


async def test_an_oversized_websocket_message_is_refused_unread_and_the_feed_reconnects(
    tmp_path: Path,
) -> None:
    recording = first_lines(tmp_path / "short.gz", 20_000)  # ~3 min of market, 45 s at 4x
    async with SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=4.0,
                        clock=SystemClock()) as sim:
        d = Daemon(live_config(tmp_path, sim.ws_url, sim.rest_url))
        try:
            await event(d, active)
            before = peak_rss(d.proc.pid)
            connects = 1
            # one frame over the limit, then a message of 300 MB in 1 MiB fragments: each
            # is refused as its header comes, without its payload being taken in
            for size, fragment in ((2 * LIMIT, 0), (HOSTILE, MIB)):
                mark = len(d.events)
                await sim.tape.send_oversized(size, fragment)
                i = await event(d, named("feed_frame_too_large"), mark)
                refused = d.events[i]
                assert refused["limit"] == LIMIT and LIMIT < refused["size"] <= size
                # a frame was lost: the book goes at once, then a new connection resyncs it
                halted = await event(d, lambda e: e.get("event") == "state_changed"
                                     and e.get("new") == "HALTED", mark)
                assert d.events[halted]["reason"] == "book_out_of_sync"
                connects += 1
                again = await event(d, named("feed_connected", connects=connects), mark)
                reconnecting = [e for e in d.events[mark:again]
                                if e.get("event") == "feed_reconnecting"]
                assert [e["reason"] for e in reconnecting] == ["frame_too_large"]
                assert reconnecting[0]["delay_s"] > 0  # with backoff
                await event(d, active, again)
            growth = peak_rss(d.proc.pid) - before
            assert growth < 3 * LIMIT, f"peak RSS grew by {growth / MIB:.1f} MiB"
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()


# -- a REST endpoint that lies ----------------------------------------------------------------

BODY = 200 * MIB  # the 200 MB snapshot


async def _stream(writer: asyncio.StreamWriter, pieces: AsyncIterator[bytes]) -> None:
    async for piece in pieces:
        writer.write(piece)
        await writer.drain()


async def _filler(total: int, chunk: int = MIB) -> AsyncIterator[bytes]:
    """``total`` bytes of a JSON-looking snapshot, made as they are sent."""
    head = b'{"lastUpdateId":1,"bids":[["1.00","'
    yield head
    left = total - len(head)
    while left > 0:
        n = min(chunk, left)
        left -= n
        yield b"9" * n


def _gzip_bomb(total: int) -> bytes:
    """A gzip body of a few hundred KB that inflates to ``total`` bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b'{"lastUpdateId":1,"bids":[["1.00","')]
    block = b"9" * MIB
    parts += [packer.compress(block) for _ in range(total // MIB)]
    parts.append(packer.flush())
    return b"".join(parts)


class LyingDepth:
    """``GET /api/v3/depth`` on a raw socket: each request takes the next fault of
    ``faults``, then the sim's real snapshot; everything else is a 404."""

    def __init__(self, sim: SimVenue, bomb: bytes) -> None:
        self.sim = sim
        self.bomb = bomb
        self.faults: list[str] = []
        self.served: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> LyingDepth:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if request.startswith(b"GET /api/v3/exchangeInfo"):  # the rules, as the sim's
                url = self.sim.rest_url + request.split(b" ", 2)[1].decode()

                def fetch() -> bytes:  # in a thread: the sim answers on this loop
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        body: bytes = answer.read()
                    return body

                info = await asyncio.to_thread(fetch)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(info)
                             + info)
                return
            if not request.startswith(b"GET /api/v3/depth"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            fault = self.faults.pop(0) if self.faults else "good"
            self.served.append(fault)
            ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            if fault == "declared":  # says how big it is: refused before a byte is read
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % BODY)
                await _stream(writer, _filler(BODY))
            elif fault == "chunked":
                writer.write(ok + b"Transfer-Encoding: chunked\r\n\r\n")
                async for piece in _filler(BODY):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif fault == "unsized":  # no length: the body ends when the connection does
                writer.write(ok + b"\r\n")
                await _stream(writer, _filler(BODY))
            elif fault == "understated":  # a length far below what follows
                writer.write(ok + b"Content-Length: 1000\r\n\r\n")
                await _stream(writer, _filler(BODY))
            elif fault == "gzip":  # small on the wire, 200 MB once inflated
                writer.write(ok + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                             % len(self.bomb) + self.bomb)
            else:
                body = self.sim.tape.depth_snapshot(1000)
                assert body is not None
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up on us: what it should do
        finally:
            writer.close()


async def test_oversized_snapshot_bodies_are_refused_while_they_stream_and_retried(
    tmp_path: Path,
) -> None:
    recording = first_lines(tmp_path / "short.gz", 20_000)
    bomb = await asyncio.to_thread(_gzip_bomb, BODY)
    async with SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=4.0,
                        clock=SystemClock()) as sim, LyingDepth(sim, bomb) as depth:
        d = Daemon(live_config(tmp_path, sim.ws_url, depth.url))
        try:
            await event(d, active)
            before = peak_rss(d.proc.pid)
            faults = ["declared", "chunked", "unsized", "understated", "gzip"]
            depth.faults = list(faults)
            mark, served = len(d.events), len(depth.served)
            sim.tape.skip_depth_updates(1)  # a gap: the daemon asks for a new snapshot
            halted = await event(d, lambda e: e.get("event") == "state_changed"
                                 and e.get("new") == "HALTED", mark)
            back = await event(d, active, halted, timeout=60)
            assert depth.served[served:served + len(faults) + 1] == [*faults, "good"]
            failed = [e for e in d.events[mark:back] if e.get("event") == "feed_snapshot_failed"]
            assert len(failed) == len(faults), failed
            declared, chunked, unsized, understated, inflated = failed
            for refused in (declared, chunked, unsized, inflated):
                assert refused["reason"] == "too_large" and refused["limit"] == LIMIT, refused
            # refused by its Content-Length, before reading any of it
            assert declared["declared_bytes"] == BODY and declared["read_bytes"] == 0
            for streamed in (chunked, unsized, inflated):  # counted as they came in
                assert LIMIT < streamed["read_bytes"] <= LIMIT + 64 * 1024
            # past its declared length nothing is read: aiohttp's parser refuses the bytes
            # after it (a network error); were they cut off instead, 1000 bytes of no JSON
            assert understated["reason"] in ("network", "malformed"), understated
            assert all(e["retry_in_s"] > 0 for e in failed)  # backoff between them
            placed = [e for e in d.events[halted:back]
                      if e.get("event") == "order_sent" and e["kind"] != "cancel"]
            assert placed == []  # halted without a book: the quotes were pulled, none placed
            growth = peak_rss(d.proc.pid) - before
            assert growth < 3 * LIMIT, f"peak RSS grew by {growth / MIB:.1f} MiB"
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()


async def test_the_order_gateway_refuses_an_oversized_message_and_reconnects(
    tmp_path: Path,
) -> None:
    log = CaptureLog()
    limit = 256 * 1024
    recording = first_lines(tmp_path / "short.gz", 6000)
    async with venue(recording) as sim, running(sim, log, max_message_bytes=limit) as (gw, rec):
        assert await entry_of(sim).send_oversized(4 * limit) == 1
        await until(lambda: "gateway_frame_too_large" in log.events())
        [(level, _, refused)] = [r for r in log.records if r[1] == "gateway_frame_too_large"]
        assert level == "error" and refused == {"size": 4 * limit, "limit": limit}
        lost = [values for _, event, values in log.records if event == "gateway_disconnected"]
        assert lost[0]["reason"] == "frame_too_large"
        # order entry stops until the connection is back and reconciled, then goes on
        assert VenueStatus(False, "disconnected") in rec.statuses
        await until(lambda: rec.statuses[-1] == VenueStatus(True, "ready"))
        assert gw.connects == 2
