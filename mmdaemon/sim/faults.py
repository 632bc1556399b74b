"""Faults the sim's order entry can be told to inject, for tests: their state and rules.

Plain state, no I/O: :class:`~mmdaemon.sim.orders.OrderEntry` (the connection shell) reads
it to decide what to do with a connection, a request or a frame, and
:mod:`mmdaemon.sim.matching` reports fills of orders whose response is being held.

- :attr:`Faults.accepting` False: a new connection is closed at once (1013, "try again
  later");
- :attr:`Faults.blackhole` True: requests still run but nothing is sent back, neither
  responses nor events (a network path that silently lost its way back);
- :meth:`Faults.delay_requests`: the next requests of a method run late and later requests
  overtake them (a cancel reaches the matching engine before the place it cancels);
- :meth:`Faults.hold_responses`: the next requests of a method run at once, their events go
  out, their responses come late (an order can be acknowledged and fill on the user-data
  stream before its ``order.place`` response; :attr:`Faults.fills_before_response` counts
  those fills).
"""

from __future__ import annotations

import orjson


class Faults:
    """The faults set on one order entry; none at first."""

    def __init__(self) -> None:
        self.accepting = True  # False refuses new order-entry connections
        self.blackhole = False  # True sends nothing back (requests still run)
        # method -> [seconds, requests left] (delay_requests, hold_responses)
        self._delays: dict[str, list[float]] = {}
        self._holds: dict[str, list[float]] = {}
        self.unanswered: set[int] = set()  # orders whose place response is being held
        # request method -> venue ids of the orders its delayed requests placed
        self.late_placed: dict[str, list[int]] = {}
        self.fills_before_response = 0  # fills of orders in ``unanswered``

    def delay_requests(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``method`` requests (any connection) run ``seconds`` after they
        arrive, and requests that arrive meanwhile overtake them, as in a venue that
        processes requests concurrently. Their responses and events come that late.
        ``count`` 0 lifts the fault."""
        _set_fault(self._delays, method, seconds, count)

    def hold_responses(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``method`` requests run at once (their execution reports go out
        now) but their responses are sent ``seconds`` later. ``count`` 0 lifts the fault."""
        _set_fault(self._holds, method, seconds, count)

    @property
    def timed(self) -> bool:
        """Whether a delay or hold is still due for some method (requests must be looked
        at with :meth:`timing`)."""
        return bool(self._delays or self._holds)

    def delays_left(self, method: str) -> int:
        """How many ``method`` requests are still due to be delayed (0: none, or lifted)."""
        fault = self._delays.get(method)
        return 0 if fault is None else int(fault[1])

    @property
    def due(self) -> int:
        """Requests still due to be delayed or held."""
        return sum(int(f[1]) for f in (*self._delays.values(), *self._holds.values()))

    def timing(self, message: str | bytes) -> tuple[float, float]:
        """(seconds to delay, seconds to hold the response) of a request frame, from the
        faults set for its method (``v3/`` prefix ignored); each use counts against the
        fault's requests. A frame that is not a request with a method gets (0, 0)."""
        method = method_of(message)
        if method is None:
            return 0.0, 0.0
        out = [0.0, 0.0]
        for i, faults in enumerate((self._delays, self._holds)):
            fault = faults.get(method)
            if fault is not None:
                out[i] = fault[0]
                fault[1] -= 1
                if fault[1] <= 0:
                    del faults[method]
        return out[0], out[1]

    def note_fill(self, order_id: int) -> None:
        """A fill of venue order ``order_id`` went out: count it if its response is held."""
        if order_id in self.unanswered:
            self.fills_before_response += 1


def method_of(message: str | bytes) -> str | None:
    """The method of a request frame (``v3/`` prefix dropped); None if it names none."""
    try:
        msg = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    method = msg.get("method") if type(msg) is dict else None
    return method.removeprefix("v3/") if isinstance(method, str) else None


def _set_fault(faults: dict[str, list[float]], method: str, seconds: float,
               count: int) -> None:
    if count > 0:
        faults[method] = [seconds, count]
    else:
        faults.pop(method, None)
