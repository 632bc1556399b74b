"""A websocket client connection that knows when the kernel received each message.

The market-data feed's wire-to-wire latency (#23) starts at the kernel's receive time of
the TCP segment that completed a message. asyncio's transports read with ``recv`` and drop
the ancillary data that carries it, so this connection reads its socket itself: the socket
has ``SO_TIMESTAMPNS`` on, every read is a ``recvmsg`` (into one buffer the connection
keeps) whose ancillary data holds the kernel's stamp (``CLOCK_REALTIME`` ns since the
epoch: the system clock's wall time) of the last segment that read returned, and the bytes
go into websockets' sans-I/O
:class:`~websockets.client.ClientProtocol`, which does the handshake, the framing, the
limits, permessage-deflate when negotiated, answers pings and the close handshake. A
message is stamped with the stamp of the read that completed it; a fragmented message by
its last fragment's read.

Only plain ``ws://`` without a proxy is read this way (:func:`kernel_stamps_possible`):
over TLS the kernel would stamp encrypted bytes, and a proxy's tunnel is websockets' own;
the feed keeps websockets' asyncio client for those and stamps messages in user space as
they are handed over (``stamp_source`` ``"userspace"``). A read whose ancillary data holds
no stamp is stamped with the wall time of the read, and counted in
:attr:`StampedConnection.userspace_stamps`: a kernel that does not give one, or the first
reads after the first socket of the system asked for stamps (Linux turns receive
stamping on for all a moment later, from a work queue).

Two ways to take the messages: :meth:`StampedConnection.recv_stamped` (a task awaits
each), or :meth:`StampedConnection.hand_off`, the feed's (#23): each message goes to a
sink in the callback of the read that completed it, so no task's turn stands between the
kernel and the consumer; a sink with no room refuses a message, which the connection keeps
(with the rest of that read) while it stops reading, until :meth:`~StampedConnection.release`.

Behaviour kept from websockets' asyncio client, as the feed uses it: a message larger than
``max_size`` (one frame or fragments adding up) fails the connection with code 1009 and
the :class:`~websockets.exceptions.ConnectionClosed` raised has the
:class:`~websockets.exceptions.PayloadTooBig` as its ``__cause__``; at most ``max_queue``
messages are held unread (reading the socket pauses, TCP holds the venue back); leaving
closes the connection, waiting ``close_timeout`` seconds at most for the venue's side of
the close. Added: reading also pauses while more than :data:`_WRITE_LIMIT` bytes wait to be
sent (the pongs of a venue that pings without reading). Not kept: websockets' own
keep-alive pings (the feed's silence watch closes a connection that says nothing for
``stale_after_ms``, which a dead peer does).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import OK_CLOSE_CODES, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

# Linux's asm-generic value (x86, arm): Python's socket module does not name it; the
# control message it yields has the same number (SCM_TIMESTAMPNS == SO_TIMESTAMPNS)
SO_TIMESTAMPNS: Final = 35
_TIMESPEC = struct.Struct("qq")  # struct timespec on a 64-bit kernel: tv_sec, tv_nsec
_ANCILLARY: Final = socket.CMSG_SPACE(_TIMESPEC.size)
_READ_BYTES: Final = 1 << 18  # one read: larger than a depth frame burst of a busy second
_WRITE_LIMIT: Final = 1 << 16
"""Bytes unsent (pongs, mostly) beyond which reading pauses until the venue has taken
them: a venue that pings and does not read the answers (a flood) is held back by TCP, as a
full queue holds it back, instead of growing the daemon's memory by the pongs it owes
(about 25 MB a second on loopback without this); the silence watch then ends the
connection."""


def kernel_stamps_possible(url: str, proxy: str | None) -> bool:
    """Whether :class:`StampedConnection` can read ``url``: plain ``ws://`` on Linux, no
    proxy (``wss://`` and proxies stay with websockets' client, stamped in user space)."""
    return sys.platform == "linux" and url.startswith("ws://") and proxy is None


class StampedConnection:
    """One client websocket read from its socket with the kernel's receive stamps.

    Open with :meth:`open` (an async context manager: leaving closes it); read with
    :meth:`recv_stamped`. Stamps are ns since the epoch (``CLOCK_REALTIME``).
    """

    stamp_source: Final = "kernel"

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, *, max_queue: int,
                 close_timeout: float) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._proto = protocol
        self._loop = asyncio.get_running_loop()
        self._max_queue = max_queue
        self._close_timeout = close_timeout
        self._messages: deque[tuple[int, bytes]] = deque()
        self._fragments: list[bytes] = []  # a fragmented message's parts so far
        # every task waiting for the socket (a reader, close()): each is woken, so a
        # recv_stamped() pending while another task closes ends too, as websockets' does
        self._waiters: set[asyncio.Future[None]] = set()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._out = bytearray()  # bytes the socket did not take yet
        # every read lands here, and only what it read is copied out: a recvmsg() of
        # _READ_BYTES allocates that much per read (12 us more a read than this, #23)
        self._read_view = memoryview(bytearray(_READ_BYTES))
        self._into = (self._read_view,)
        self._writing = False  # a writer callback waits for room
        self._eof_pending = False  # the protocol asked to half-close once _out is written
        self._reading = False
        self._ended = False  # the peer's side is over (EOF, a reset): nothing more comes
        # hand-off (:meth:`hand_off`): each message goes to the sink in the read's callback
        self._sink: Callable[[int, bytes], bool] | None = None
        self._held = False  # the sink had no room: reading waits for release()
        self._stopped: str | None = None  # why the hand-off was stopped (stop_hand_off)
        #: reads whose ancillary data had no kernel stamp (stamped with the read's wall time)
        self.userspace_stamps = 0

    @classmethod
    async def open(cls, url: str, *, open_timeout: float, max_size: int | None,
                   close_timeout: float = 10.0, compression: str | None = None,
                   max_queue: int = 16) -> StampedConnection:
        """Connect to ``url`` (``ws://`` only) and complete the opening handshake within
        ``open_timeout`` seconds. ``compression``: None or ``"deflate"`` (permessage-deflate
        offered, as websockets' ``connect``). Raises OSError, TimeoutError and websockets'
        InvalidURI / InvalidHandshake as websockets' ``connect`` does."""
        uri = parse_uri(url)
        if uri.secure:
            raise ValueError(f"StampedConnection reads plain ws:// only, got {url!r}")
        if compression not in (None, "deflate"):
            raise ValueError(f"compression: expected None or 'deflate', got {compression!r}")
        extensions = enable_client_permessage_deflate(None) if compression else None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(open_timeout):
            sock = await _connected_socket(loop, uri.host, uri.port)
            try:
                protocol = ClientProtocol(uri, extensions=extensions, max_size=max_size)
                conn = cls(sock, protocol, max_queue=max_queue, close_timeout=close_timeout)
                protocol.send_request(protocol.connect())
                conn._flush()
                conn._resume()
                await conn._opened
            except BaseException:
                if "conn" in locals():
                    conn._abort()
                else:
                    sock.close()
                raise
        return conn

    def fileno(self) -> int:
        """The socket's file descriptor (-1 once closed)."""
        return self._sock.fileno()

    @property
    def compressed(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return bool(self._proto.extensions)

    async def __aenter__(self) -> StampedConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def recv_stamped(self) -> tuple[int, bytes]:
        """The next message: ``(kernel receive stamp ns, payload bytes)``. Raises
        :class:`~websockets.exceptions.ConnectionClosed` once the connection is closing
        and every message before that was read."""
        messages = self._messages
        while not messages:
            if self._proto.state is not OPEN or self._ended:
                raise self._closed_exc()
            await self._wait()
        message = messages.popleft()
        self._resume_if_room()
        return message

    def hand_off(self, sink: Callable[[int, bytes], bool]) -> None:
        """From now on, hand each message to ``sink(stamp_ns, payload)`` in the callback of
        the read that completed it, instead of queueing it for :meth:`recv_stamped`: no
        task stands between the socket and the consumer. ``sink`` returns False when it
        has no room and did not take the message: that message and the rest of its read
        are kept here, and reading pauses (TCP holds the venue back) until
        :meth:`release`, which offers them again first. Messages read before are offered
        now."""
        self._sink = sink
        self._offer()
        if self._held:
            self._pause()
        else:
            self._resume_if_room()

    def release(self) -> None:
        """The sink has room again: what was kept is offered again, then reading goes on."""
        self._held = False
        self._offer()
        self._resume_if_room()
        self._wake()  # handed_off() ends once what was kept before an end is taken

    def stop_hand_off(self, why: str) -> None:
        """No more messages to the sink (they queue for :meth:`recv_stamped` again);
        :meth:`handed_off` returns ``why``."""
        if self._sink is not None:
            self._sink = None
            self._stopped = why
            self._held = False
            self._resume_if_room()
            self._wake()

    async def handed_off(self) -> str:
        """While :meth:`hand_off` is on: until :meth:`stop_hand_off` (its ``why``), or
        the connection ends and the sink has taken every message, which raises what
        :meth:`recv_stamped` would raise."""
        while self._stopped is None:
            if (self._proto.state is not OPEN or self._ended) and not self._messages:
                raise self._closed_exc()
            await self._wait()
        return self._stopped

    async def close(self) -> None:
        """Close: a close frame (1000) if still open, then wait for the venue to end the
        TCP connection, ``close_timeout`` seconds at most; the socket is closed after."""
        if self._sock.fileno() < 0:
            return
        proto = self._proto
        self.stop_hand_off("closed")  # what is read while closing is dropped, not handed on
        try:
            if proto.state is OPEN:
                proto.send_close(1000)
                self._flush()
            if not self._ended:
                self._messages.clear()  # unread messages are dropped; reads go on to EOF
                self._resume()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._close_timeout):
                        while not self._ended:
                            await self._wait()
        finally:  # cancelled while waiting too: the socket is never left open
            self._abort()

    # -- the socket's callbacks ---------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            size, ancillary, _, _ = self._sock.recvmsg_into(self._into, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size, ancillary = 0, []  # a reset is the end of the peer's side, as EOF
        data = bytes(self._read_view[:size])
        stamp = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                stamp = sec * 1_000_000_000 + nsec
        if not stamp:
            stamp = time.time_ns()
            if data:  # the end of the stream carries no stamp and needs none
                self.userspace_stamps += 1
        proto = self._proto
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
            self._ended = True
            self._pause()
        for event in proto.events_received():
            if type(event) is Frame:
                self._on_frame(event, stamp)
            elif isinstance(event, Response) and not self._opened.done():
                if proto.handshake_exc is not None:  # refused (a status other than 101)
                    self._opened.set_exception(proto.handshake_exc)
                else:
                    self._opened.set_result(None)
        self._flush()
        if self._ended and not self._opened.done():
            self._opened.set_exception(proto.handshake_exc or ConnectionResetError(
                "the venue closed the connection during the opening handshake"))
        if (len(self._messages) >= self._max_queue or len(self._out) > _WRITE_LIMIT
                or self._held):
            self._pause()
        if self._sink is None or self._ended or proto.state is not OPEN:
            self._wake()  # handing off, a waiting task has news only when it ends

    def _on_frame(self, frame: Frame, stamp: int) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(stamp, bytes(frame.data))
            else:
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                self._message(stamp, b"".join(self._fragments))
                self._fragments = []
        # ping, pong, close: the protocol answered them already (their bytes are queued)

    def _message(self, stamp: int, payload: bytes) -> None:
        sink = self._sink
        if sink is not None and not self._held:
            if sink(stamp, payload):
                return
            self._held = True  # kept, with the rest of the read; paused after it
        self._messages.append((stamp, payload))

    def _offer(self) -> None:
        """Hand the messages kept to the sink, in order, while it takes them."""
        messages = self._messages
        while messages and self._sink is not None:
            if not self._sink(*messages[0]):
                self._held = True
                return
            messages.popleft()

    def _flush(self) -> None:
        """Write what the protocol has to send (pongs, the close frame, the handshake)."""
        for chunk in self._proto.data_to_send():
            if chunk:
                self._out += chunk
            else:
                self._eof_pending = True
        self._write_out()

    def _write_out(self) -> None:
        if self._sock.fileno() < 0:
            return
        if self._out:
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._out.clear()  # the peer is gone: the read side sees it too
                sent = 0
            del self._out[:sent]
        if self._out:
            if not self._writing:
                self._loop.add_writer(self._fd, self._write_out)
                self._writing = True
            return
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
            self._resume_if_room()  # a read paused for the unsent bytes goes on
        if self._eof_pending:
            self._eof_pending = False
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    # -- helpers --------------------------------------------------------------------------

    def _resume(self) -> None:
        if not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _resume_if_room(self) -> None:
        """Read again when nothing holds reading back: room in the message queue and the
        unsent bytes under :data:`_WRITE_LIMIT`, the venue's side not over."""
        if (not self._reading and len(self._messages) < self._max_queue
                and len(self._out) <= _WRITE_LIMIT and not self._ended and not self._held):
            self._resume()

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    async def _wait(self) -> None:
        """Until the socket's callbacks (or the close) have news for the waiting tasks."""
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _abort(self) -> None:
        self._pause()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._ended = True
        self._sock.close()
        self._wake()  # a reader still waiting raises ConnectionClosed: nothing more comes

    def _closed_exc(self) -> ConnectionClosed:
        """What websockets' client raises here: OK when both close frames had OK codes,
        an error otherwise; chained to the parser's error (a message too large)."""
        proto = self._proto
        rcvd, sent = proto.close_rcvd, proto.close_sent
        ok = (rcvd is not None and sent is not None and rcvd.code in OK_CLOSE_CODES
              and sent.code in OK_CLOSE_CODES)
        exc: ConnectionClosed = (ConnectionClosedOK if ok else ConnectionClosedError)(
            rcvd, sent, proto.close_rcvd_then_sent)
        exc.__cause__ = proto.parser_exc
        return exc


async def _connected_socket(loop: asyncio.AbstractEventLoop, host: str,
                            port: int) -> socket.socket:
    """A non-blocking TCP socket connected to ``host:port`` (each address in turn), with
    kernel receive stamps on and Nagle off."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}:{port}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error
