"""The feed's timestamping websocket reader (:mod:`mmdaemon.feed.stamped_ws`) against real
websockets servers on 127.0.0.1: it delivers exactly the messages websockets' own client
does (text, binary, fragmented, with pings in between, permessage-deflate on or off), ends
as it does (the close code and reason, a message too large), stamps each message with the
kernel's receive time, and the feed keeps websockets' client, stamped in user space, where
the kernel's stamp is not the frame's (wss://, a test's clock)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, PayloadTooBig
from websockets.sync.server import ServerConnection as SyncServerConnection
from websockets.sync.server import serve as sync_serve

from mmdaemon.clock import SystemClock
from mmdaemon.feed.stamped_ws import SO_TIMESTAMPNS, StampedConnection, kernel_stamps_possible
from mmdaemon.feed.websocket import FeedSettings, Reconnected, WebsocketFeed
from tests.helpers import until

# what every server below sends: text, binary, a message in fragments (text and binary),
# an empty one and a large one (many TCP segments), with a ping of the server's between
SCRIPT: list[str | bytes | list[str] | list[bytes]] = [
    '{"stream":"btcusdt@trade","data":{"p":"61000.01"}}',
    b"\x00\x01binary\xff",
    ['{"frag', 'mented":', '"text"}'],
    [b"bin", b"ary ", b"parts"],
    "",
    "x" * 300_000,
    "after the ping",
]
Handler = Callable[[ServerConnection], Awaitable[None]]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for a raw server's accept key


async def scripted(ws: ServerConnection) -> None:
    """Send :data:`SCRIPT`, ping in the middle (waiting for the client's pong), close
    with 4001 "bye"."""
    for i, message in enumerate(SCRIPT):
        if i == len(SCRIPT) - 1:
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)  # the client answered: the pong came back
        if isinstance(message, list):
            await ws.send(iter(message))  # type: ignore[arg-type]  # one fragment each
        else:
            await ws.send(message)
    await ws.close(4001, "bye")


@asynccontextmanager
async def server(handler: Handler, compression: str | None = None
                 ) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=compression,
                     max_size=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/stream"


async def read_all_websockets(url: str, compression: str | None
                              ) -> tuple[list[bytes], ConnectionClosed]:
    """Every message websockets' own client reads (as the feed reads: bytes), and how it
    ended."""
    got: list[bytes] = []
    async with connect(url, compression=compression, max_size=1 << 20, proxy=None) as ws:
        try:
            while True:
                got.append(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            return got, exc
    raise AssertionError("not closed")


async def read_all_stamped(url: str, compression: str | None
                           ) -> tuple[list[bytes], ConnectionClosed, list[int], bool]:
    """The same with :class:`StampedConnection`, and its stamps and whether
    permessage-deflate was negotiated."""
    got: list[bytes] = []
    stamps: list[int] = []
    async with await StampedConnection.open(url, open_timeout=10, max_size=1 << 20,
                                            compression=compression) as conn:
        try:
            while True:
                stamp, message = await conn.recv_stamped()
                stamps.append(stamp)
                got.append(message)
        except ConnectionClosed as exc:
            return got, exc, stamps, conn.compressed
    raise AssertionError("not closed")


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_stamped_reader_delivers_what_websockets_delivers(
        compression: str | None) -> None:
    async with server(scripted, compression) as url:
        expected, expected_end = await read_all_websockets(url, compression)
        before = time.time_ns()
        got, end, stamps, compressed = await read_all_stamped(url, compression)
        after = time.time_ns()
    assert compressed is (compression is not None)
    assert len(expected) == len(SCRIPT)  # the reference read the whole script
    assert got == expected
    assert type(end) is type(expected_end)
    assert end.rcvd is not None and expected_end.rcvd is not None
    assert (end.rcvd.code, end.rcvd.reason) == (expected_end.rcvd.code,
                                                 expected_end.rcvd.reason) == (4001, "bye")
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after


async def test_a_message_too_large_closes_with_1009_and_says_so() -> None:
    async def too_large(ws: ServerConnection) -> None:
        await ws.send("small")
        await ws.send(iter(["y" * 700, "y" * 700]))  # fragments that add up past 1000
        await ws.wait_closed()

    async with server(too_large) as url:
        conn = await StampedConnection.open(url, open_timeout=10, max_size=1000)
        async with conn:
            assert (await conn.recv_stamped())[1] == b"small"
            with pytest.raises(ConnectionClosed) as raised:
                await conn.recv_stamped()
    exc = raised.value
    assert exc.sent is not None and exc.sent.code == 1009
    assert isinstance(exc.__cause__, PayloadTooBig)
    assert (exc.__cause__.size or 0) + (exc.__cause__.current_size or 0) > 1000


def kernel_stamps_a_probe(receiver: socket.socket, sender: socket.socket) -> bool:
    """Whether a byte sent over loopback now comes with a kernel stamp (Linux turns
    stamping on for all sockets a moment after the first asks for it)."""
    sender.send(b"?")
    select.select([receiver], [], [], 10)
    _, ancillary, _, _ = receiver.recvmsg(16, socket.CMSG_SPACE(16))
    return any(kind == SO_TIMESTAMPNS for _, kind, _ in ancillary)


async def stamping_on() -> None:
    """Until the kernel stamps what it receives (a probe on a loopback pair says so)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
        with sender, receiver:
            receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            await until(lambda: kernel_stamps_a_probe(receiver, sender))


async def test_a_message_is_stamped_when_the_kernel_received_it() -> None:
    """The server (a thread of its own) sends while this event loop is held: the kernel
    receives and stamps the message during the hold; a stamp taken when the reader runs
    (user space) would be after it."""
    go, sent = threading.Event(), threading.Event()

    def one(ws: SyncServerConnection) -> None:
        go.wait(10)
        ws.send("tick")
        sent.set()
        with contextlib.suppress(ConnectionClosed):
            ws.recv()  # until the client closes

    with sync_serve(one, "127.0.0.1", 0, compression=None) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/stream"
        conn = await StampedConnection.open(url, open_timeout=10, max_size=None)
        await stamping_on()
        async with conn:
            unstamped = conn.userspace_stamps  # reads the kernel had no stamp for so far
            held_from = time.time_ns()
            go.set()
            # hold this loop (and so the reader) until the kernel has the message
            assert sent.wait(10)
            assert select.select([conn.fileno()], [], [], 10)[0]
            # and on: the kernel's stamp can trail "readable" by some us (its clock
            # conversion); one taken by the reader would be after all of the hold
            time.sleep(0.02)
            held_until = time.time_ns()
            stamp, message = await conn.recv_stamped()
        srv.shutdown()
    thread.join(10)
    assert message == b"tick"
    assert held_from <= stamp < held_until
    assert conn.userspace_stamps == unstamped


async def test_a_refused_handshake_raises_what_the_feed_counts_as_a_failed_connect() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(InvalidHandshake) as raised:
            await StampedConnection.open(f"ws://127.0.0.1:{port}/stream", open_timeout=10,
                                         max_size=None)
    assert "403" in str(raised.value)


def test_only_plain_ws_without_a_proxy_is_read_with_kernel_stamps() -> None:
    assert kernel_stamps_possible("ws://127.0.0.1:9443/stream", None)
    assert not kernel_stamps_possible("wss://stream.binance.com:9443/stream", None)
    assert not kernel_stamps_possible("ws://127.0.0.1:9443/stream", "http://proxy:3128")


async def feed_items(settings: FeedSettings, clock: Any, count: int
                     ) -> tuple[WebsocketFeed, list[Any]]:
    feed = WebsocketFeed(settings, structlog.get_logger(), clock=clock)
    items: list[Any] = []
    async for item in feed.frames():
        items.append(item)
        if len(items) >= count:
            break
    return feed, items


def frames_server_handler(frames: list[str]) -> Handler:
    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()
    return handler


FRAMES = [f'{{"stream":"btcusdt@trade","data":{{"t":{i}}}}}' for i in range(5)]


async def test_the_feed_stamps_plain_ws_frames_with_the_kernel_time() -> None:
    async with server(frames_server_handler(FRAMES)) as url:
        settings = FeedSettings(url.removesuffix("/stream"), "http://127.0.0.1:1", "btcusdt",
                                snapshot_timeout_s=0.1, backoff_max_s=0.1)
        before = time.time_ns()
        feed, items = await feed_items(settings, SystemClock(), 1 + len(FRAMES))
    assert isinstance(items[0], Reconnected)
    assert [frame for _, frame in items[1:]] == [f.encode() for f in FRAMES]
    stamps = [stamp for stamp, _ in items[1:]]
    assert feed.stamp_source == "kernel" and stamps == sorted(stamps) and stamps[0] >= before


class LateClock:
    """A test's clock: the system's, its wall time a day behind."""

    monotonic_ns = staticmethod(time.monotonic_ns)
    sleep = staticmethod(asyncio.sleep)

    @staticmethod
    def wall_ns() -> int:
        return time.time_ns() - DAY_NS


DAY_NS = 86_400 * 10**9


async def test_a_feed_on_a_test_clock_stamps_with_that_clock() -> None:
    async with server(frames_server_handler(FRAMES)) as url:
        settings = FeedSettings(url.removesuffix("/stream"), "http://127.0.0.1:1", "btcusdt",
                                snapshot_timeout_s=0.1, backoff_max_s=0.1)
        feed, items = await feed_items(settings, LateClock(), 1 + len(FRAMES))
    assert feed.stamp_source == "userspace"
    assert [frame for _, frame in items[1:]] == [f.encode() for f in FRAMES]
    assert all(stamp < time.time_ns() - DAY_NS // 2 for stamp, _ in items[1:])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_a_wss_feed_keeps_websockets_client_stamped_in_user_space(
        tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tls_files
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's default context trusts it
    async with serve(frames_server_handler(FRAMES), "127.0.0.1", 0, ssl=server_tls) as srv:
        port = srv.sockets[0].getsockname()[1]
        settings = FeedSettings(f"wss://127.0.0.1:{port}", "http://127.0.0.1:1", "btcusdt",
                                snapshot_timeout_s=0.1, backoff_max_s=0.1)
        feed, items = await feed_items(settings, SystemClock(), 1 + len(FRAMES))
    assert [frame for _, frame in items[1:]] == [f.encode() for f in FRAMES]
    assert feed.stamp_source == "userspace"


async def test_closing_an_unread_connection_returns_within_the_close_timeout() -> None:
    async def flood(ws: ServerConnection) -> None:
        while True:
            await ws.send("z" * 10_000)

    async with server(flood) as url:
        conn = await StampedConnection.open(url, open_timeout=10, max_size=None,
                                            close_timeout=1.0)
        await until(lambda: len(conn._messages) >= 16)  # paused: the venue is held back
        started = time.monotonic()
        await conn.close()
        assert time.monotonic() - started < 5
        assert conn._sock.fileno() < 0


async def test_a_venue_that_floods_pings_without_reading_the_pongs_is_held_back() -> None:
    """A venue that pings and never reads the pongs: the reader stops reading once the
    pongs it owes pass its write limit (TCP holds the venue back), instead of holding them
    all (tens of MB a second on loopback); the memory held is the limit plus one read's."""
    ping = b"\x89\x7d" + b"p" * 125  # an unmasked ping of 125 bytes
    flood = ping * 160_000  # 20 MB of pings: about 22 MB of pongs owed

    async def flooder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        writer.write(flood)  # never read: the pongs pile up on the client's side
        with contextlib.suppress(ConnectionError):
            await asyncio.Event().wait()

    server = await asyncio.start_server(flooder, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, await StampedConnection.open(
            f"ws://127.0.0.1:{port}/", open_timeout=5, max_size=1 << 20,
            close_timeout=0.2) as conn:
        reader = asyncio.create_task(conn.recv_stamped())
        owed = conn._out  # the bytes the venue has not taken (pongs)
        # either the reader holds back (stops reading) or the pongs pile past 4 MB
        await until(lambda: not conn._reading or len(owed) > 4 << 20)
        assert len(owed) <= 1 << 20, f"{len(owed):,} bytes of pongs held"
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        server.close()


async def test_a_read_pending_while_another_task_closes_ends_with_connection_closed() -> None:
    """A task waiting in recv_stamped() while another closes the connection gets
    ConnectionClosed, as with websockets' client, instead of waiting forever."""
    async with server(frames_server_handler([])) as url:
        conn = await StampedConnection.open(url, open_timeout=5, max_size=1 << 20,
                                            close_timeout=2)
        reader = asyncio.create_task(conn.recv_stamped())
        await asyncio.sleep(0)  # a yield, no wait: the reader runs to its await
        await conn.close()
        done, _ = await asyncio.wait([reader], timeout=5)
        assert done, "recv_stamped() still waiting after close()"
        with pytest.raises(ConnectionClosed):
            reader.result()
