"""What the sans-I/O Binance order-entry protocol and its shell hand each other.

The protocol (:mod:`mmdaemon.venues.binance_orders`) asks for requests to be sent
(:class:`Request`, yielded by a :data:`Procedure`) and tells what happened
(:data:`Output`); the shell (:mod:`mmdaemon.exchange.binance_gateway`) answers with
responses, or throws :class:`RequestFailed` in when none came.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Final, Generic, NamedTuple, TypeVar

from mmdaemon.model import VenueEvent
from mmdaemon.venues import binance_api as api

T = TypeVar("T")

UNKNOWN_ORDER: Final = frozenset({api.CANCEL_REJECTED, api.NO_SUCH_ORDER})
"""Error codes meaning the venue does not know the order (closed already, or never was)."""


def reason(response: api.Response) -> str:
    """``"<code> <msg>"`` of an error response (the REJECTED reason the daemon logs)."""
    error = response.error
    if error is None:
        return f"status {response.status}"
    return f"{error.code} {error.msg}"


def venue_id_of(entry: object) -> int:
    """The ``orderId`` of an order object that ``order_update_from_result`` accepted."""
    assert isinstance(entry, dict)
    value = entry["orderId"]
    assert isinstance(value, int)
    return value


class RequestFailed(Exception):
    """A request that got no usable answer (``"disconnected"``, ``"timeout"``), or an API
    error where a result was required. ``reason`` is what the daemon is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RestCall(NamedTuple):
    """A REST request instead of a websocket frame (Binance USD-M's open orders, trade and
    income history, cancel-all): HTTP ``method`` on ``path`` with ``params`` in the query,
    SIGNED (``timestamp``, ``signature``; the key in ``X-MBX-APIKEY``) when ``signed``."""

    method: str
    path: str
    params: tuple[tuple[str, object], ...]
    signed: bool = True


def _no_frame(request_id: int, timestamp_ms: int) -> bytes:
    raise TypeError("a REST call has no websocket frame")


class Request(NamedTuple):
    """A request a procedure wants answered: ``build(request_id, timestamp_ms)`` is its
    frame; ``handler`` applies its response when it is read (wire order). With ``rest``
    set it goes over HTTP instead, and ``build`` is not used (:func:`rest_request`)."""

    build: Callable[[int, int], bytes]
    handler: Callable[[api.Response], None] | None = None
    rest: RestCall | None = None


def rest_request(call: RestCall) -> Request:
    """A :class:`Request` that the shell sends as the REST call ``call``."""
    return Request(_no_frame, None, call)


Procedure = Generator[Request, api.Response, T]
"""Multi-step order entry: yields the requests it needs answered, returns its value."""


class Done(NamedTuple, Generic[T]):
    """A procedure finished with ``value``."""

    value: T


class Answered(NamedTuple):
    """The answer to request ``request_id``: ``response``, or None and ``failure`` (a frame
    that was not a readable response). ``read_ns``: when its frame was read (monotonic)."""

    request_id: int
    response: api.Response | None
    failure: str
    read_ns: int


class Suspect(NamedTuple):
    """No usable answer, or an event we could not read: reconcile now, and drop the
    connection if that fails too."""

    why: str


class CancelStrays(NamedTuple):
    """Open venue orders of ours that nobody wants appeared: run the protocol's
    ``cancel_strays`` procedure (a cancel already in flight is not repeated)."""


class HangUp(NamedTuple):
    """The venue ended our user-data subscription: a fresh connection subscribes again."""

    why: str


class Hold(NamedTuple):
    """Rate limited: hold places and amends back until monotonic ``until_ns``."""

    until_ns: int


Output = VenueEvent | Answered | Suspect | CancelStrays | HangUp | Hold
