"""The asyncio side of order-entry requests: frames out, answers back, procedures driven.

:class:`RequestChannel` writes the frames the sans-I/O
:class:`~mmdaemon.venues.binance_orders.OrderEntryProtocol` builds on the gateway's current
websocket, waits for each answer (a future per request id, completed by the gateway's
reader, in wire order) with the request timeout, and drives the protocol's procedures:
every request a procedure yields is sent and its answer sent back in, or
:class:`~mmdaemon.venues.binance_order_io.RequestFailed` thrown in when none came.

The daemon's requests return as soon as the frame is on the wire: the venue's answer comes
back as an update through the listener, and the daemon's feed loop must not wait a round
trip per order (it would delay every frame behind it), nor on a socket the venue stopped
reading. A place or an amend writes its frame in the caller's own step when the order
socket is far from its high-water mark (the send then cannot wait), and only the wait for
the answer runs as a task (:meth:`RequestChannel.start`): a task of its own would first
wait for the event loop to parse whatever else arrived on the feed meanwhile (up to 1.4 ms
at p99, #9). Such a frame is framed by websockets' protocol and handed to the transport
directly, as ``ws.send`` would on an open connection with room, without its async
context (#23). Otherwise, and for a cancel (which may wait for a place's answer first), the
whole request runs as a task. uvloop's transport writes a frame at once (one ``send``)
when nothing waits in its buffer (seen with strace, uvloop 0.23); what does wait goes out
when the event loop next runs its writes: the gateway's ``flush`` yields once after a
frame's requests, so that they do not wait for the rest of the caller's batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, NamedTuple, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from mmdaemon.clock import Clock
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_order_io import Answered, Done, Procedure, Request, RequestFailed
from mmdaemon.venues.binance_orders import OrderEntryProtocol

T = TypeVar("T")
_REQUEST_ROOM: Final = 4096  # bytes: more than any order request frame


class Sent(NamedTuple):
    """A request on the wire: its id and the future its answer will complete."""

    request_id: int
    future: asyncio.Future[api.Response]


class _Waiting(NamedTuple):
    future: asyncio.Future[api.Response]
    sent_ns: int  # monotonic, when its frame was ready to write: the round trip's start


class RequestChannel:
    """Requests of ``proto`` on the websocket ``ws()`` returns (None: not connected).

    ``wall_ns()`` is now on the venue's clock (ns since the epoch, whole ms: the stamp of
    signed requests); ``pump()`` hands the protocol's outputs on after each step (the
    gateway's); an answer not read within ``timeout_s`` seconds fails its request with
    ``"timeout"``.
    """

    def __init__(self, proto: OrderEntryProtocol, ws: Callable[[], ClientConnection | None],
                 clock: Clock, wall_ns: Callable[[], int], pump: Callable[[], None],
                 timeout_s: float) -> None:
        self._proto = proto
        self._ws = ws
        self._clock = clock
        self._wall_ns = wall_ns
        self._pump = pump
        self._timeout_s = timeout_s
        self.pending: dict[int, _Waiting] = {}  # by request id
        self.tasks: set[asyncio.Task[None]] = set()  # the daemon's requests in flight
        # told as each request frame has been written (wire-to-wire's end, #23)
        self.on_written: Callable[[], None] | None = None

    async def start(self, make: Callable[[], Procedure[None]]) -> None:
        """Run the daemon's request ``make()``: its first frame written in the caller's
        step when the socket has room, the rest (the wait for its answer) as a task."""
        if not self.writes_now():
            self.spawn(self._whole(make))
            await asyncio.sleep(0)  # lets the task send its frame
            return
        proc = make()
        step = self.step(proc, None)
        while isinstance(step, Request):
            try:
                sent = await self.send(step)
            except RequestFailed as exc:
                step = self.step(proc, exc)
                continue
            self.spawn(self.drive(proc, sent))
            return

    async def _whole(self, make: Callable[[], Procedure[None]]) -> None:
        # make() in the task: what it reads (is order entry blocked?) is read when it runs
        await self.drive(make())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run one of the daemon's requests as a task (:meth:`settled` waits for it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settled(self) -> None:
        """Until every request in flight has its answer (or has failed)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def writes_now(self) -> bool:
        """A request frame written now cannot take the order socket's buffer to the
        high-water mark at which a send waits for the venue to read."""
        transport = getattr(self._ws(), "transport", None)
        if transport is None:
            return False
        _, high = transport.get_write_buffer_limits()
        return bool(transport.get_write_buffer_size() + _REQUEST_ROOM < high)

    def step(self, proc: Procedure[T], answer: api.Response | RequestFailed | None
             ) -> Request | Done[T]:
        """Advance ``proc`` with ``answer`` (see the protocol's ``step``), then pump."""
        step = self._proto.step(proc, answer, self._wall_ns())
        self._pump()
        return step

    async def drive(self, proc: Procedure[T], sent: Sent | None = None) -> T:
        """Run ``proc`` to its end, answering each request it yields (``sent``: its first,
        already written); its value. Cancelled, ``proc`` is closed at once (its clean-up
        of the requests it had in flight runs then, not when it is collected)."""
        try:
            answer: api.Response | RequestFailed | None = None
            if sent is not None:
                try:
                    answer = await self.answer(sent)
                except RequestFailed as exc:
                    answer = exc
            step = self.step(proc, answer)
            while isinstance(step, Request):
                try:
                    answer = await self.call(step)
                except RequestFailed as exc:
                    answer = exc
                step = self.step(proc, answer)
            return step.value
        except BaseException:
            proc.close()
            raise

    async def call(self, request: Request) -> api.Response:
        """Send ``request``; its response. Raises :class:`RequestFailed` ("disconnected",
        "timeout", a malformed response) without one."""
        return await self.answer(await self.send(request))

    async def send(self, request: Request) -> Sent:
        """Write ``request``'s frame: the first half of :meth:`call`, whose :meth:`answer`
        must follow. Raises RequestFailed("disconnected") when it cannot be written."""
        ws = self._ws()
        if ws is None:
            raise RequestFailed("disconnected")
        request_id, frame = self._proto.send(request, self._wall_ns())
        future: asyncio.Future[api.Response] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = _Waiting(future, self._clock.monotonic_ns())
        if self.writes_now() and ws.protocol.state is OPEN:
            # what ws.send does on an open connection whose buffer has room, without its
            # async context (a step of the wire-to-wire path, #23): the text frame is
            # framed by the protocol and handed to the transport, which writes it at once
            protocol = ws.protocol
            protocol.send_text(frame)
            for data in protocol.data_to_send():  # the frame: no close is under way
                ws.transport.write(data)
        else:
            try:
                await ws.send(frame, text=True)
            except BaseException as exc:
                self._forget(request_id, future)
                if isinstance(exc, ConnectionClosed):
                    raise RequestFailed("disconnected") from None
                raise
        if self.on_written is not None:  # the frame left: uvloop writes at once when it can
            self.on_written()
        return Sent(request_id, future)

    async def answer(self, sent: Sent) -> api.Response:
        """The response to a request :meth:`send` wrote; raises :class:`RequestFailed`
        ("disconnected", "timeout") without one."""
        request_id, future = sent
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            raise RequestFailed("timeout") from None
        finally:
            self._forget(request_id, future)

    def answered(self, answer: Answered) -> int | None:
        """The protocol read the answer to ``answer.request_id``: wake its waiter; the
        round trip (ns, frame ready to write -> answer read), None if nobody waited."""
        waiting = self.pending.pop(answer.request_id, None)
        if waiting is None:
            return None
        future = waiting.future
        if not future.done():
            if answer.response is None:
                future.set_exception(RequestFailed(answer.failure))
            else:
                future.set_result(answer.response)
        return answer.read_ns - waiting.sent_ns

    def fail_all(self) -> int:
        """The connection is gone: every request waiting fails ("disconnected"); how many."""
        self._proto.disconnected()
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            if not waiting.future.done():
                waiting.future.set_exception(RequestFailed("disconnected"))
        return len(pending)

    def _forget(self, request_id: int, future: asyncio.Future[api.Response]) -> None:
        self.pending.pop(request_id, None)
        self._proto.forget(request_id)
        if future.done() and not future.cancelled():
            future.exception()  # failed while nobody waited (the send raised): retrieved
