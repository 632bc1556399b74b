"""Queue-position models: how far from the front of its price level a resting order is.

Pure and deterministic: no I/O, no clock, no random numbers. Units: sizes integer lots.
The paper venue (:mod:`mmdaemon.exchange.fill_model`) calls a model at three moments, each
returning a new :class:`QueuePos` (the position is an immutable value):

- :meth:`QueueModel.on_arrival`: an order joins its level. Our paper orders are not in the
  recorded book, so it joins the *back*: ``ahead`` = the displayed size at its price then.
- :meth:`QueueModel.on_trade`: a public trade printed ``printed`` lots at our price, of which
  ``reached`` were still available when it got to our level (our better-priced orders may
  have taken the rest, see the venue's sharing rule). The queue ahead is consumed first:
  ``ahead`` falls by ``min(ahead, reached)``; the lots beyond it are the venue's to fill us
  with. The printed lots are remembered (``traded``) to explain the depth stream's later
  decrease of the same level, so one trade is never counted twice.
- :meth:`QueueModel.on_level`: the displayed size at our price changed (synced book only).
  This is where the models differ (below).
- :func:`rebase` (all models): after a gap in the book (unsynced stretch) the change since
  the last synced look is of unknown cause: cap ``ahead`` at the displayed size and start
  counting afresh, the conservative rule.

Invariant (all models): ``0 <= ahead <= shown`` after every call but :meth:`on_trade`,
which only lowers ``ahead``.

The models
----------
Let the displayed size at our price go from ``shown`` (the last synced look) to
``displayed``, with ``traded`` lots printed at our price in between. The decrease not
explained by trades is ``d = shown - displayed - traded`` lots (cancels, mostly).

- ``conservative`` (default; hftbacktest's ``RiskAdverseQueueModel``): every unexplained
  decrease was *behind* us; ``ahead`` only falls when it has to, to stay within the
  displayed size: ``ahead' = min(ahead, displayed)``.
- ``power`` and ``log`` (hftbacktest's ``ProbQueueModel`` with ``PowerProbQueueFunc`` /
  ``LogProbQueueFunc``; Rigtorp, "Estimating order queue position", 2013): each lot of the
  decrease was ahead of us with probability

      p(front, back) = f(front) / (f(front) + f(back))

  where ``front = ahead`` (public lots ahead of us) and ``back = shown - traded - ahead``
  (public lots behind us just before the change, clamped at 0; the trades took from the
  front). ``f(x) = x**n`` for ``power`` (``n`` = ``exchange.queue_power``, an integer
  >= 1) and ``f(x) = ln(1 + x)`` for ``log``, ``x`` in lots. Our own order is not part of
  ``shown`` (the book is the recorded public one), so nothing is subtracted for it. The
  closer to the back we are, the larger the share that was ahead of us; a larger ``n``
  sharpens that (the front half of the queue moves less, the back half more); ``log`` is
  flatter than any power: it moves an order in the front half *more* than ``power`` does
  and one in the back half *less* (equal at ``front == back``, where p = 1/2).

  Deterministic, in integer lots: the lots that left from ahead of us are the expected
  value ``d * p`` rounded *down*:

      gone = min(floor(d * p), front)      (a large cancel cannot take us past the front)
      ahead' = min(ahead - gone, displayed)

  The cap at ``displayed`` also keeps the estimate possible when fewer than ``d - gone``
  lots were behind us: with ``displayed = front + back - d`` it means ``gone >= d - back``.

  Rounding down moves us forward by at most the expected amount, never more, so the
  rounding is never optimistic. ``power`` is exact (integer arithmetic). ``log`` needs
  floating point: the product is lowered by 16 ulps (about twice a bound on the error of
  two log1p, one addition, one division and one product) before the floor, so float error
  cannot round it up past the exact floor. The price: when ``d * p`` is exactly an
  integer (``p = 1/3`` for front 1, back 3: ln 2 / ln 8) the result can be one lot below it,
  in our disfavour; ``front == back`` (p = 1/2) is computed exactly.

Level increases never move us forward (a new order joins behind us): with ``d <= 0`` every
model applies the conservative cap only.

A model can only advance an order relative to ``conservative``: ``ahead(power or log) <=
ahead(conservative)`` after the same events (each step keeps the order, and the
probabilistic step only lowers it further), so an order that has its price level to itself
among ours fills at least as soon and as much under ``power`` or ``log``.

Not modelled: a decrease the depth stream shows before the trade stream prints the trade
that caused it is seen as a cancel here (the trade then consumes ``ahead`` again); on
Binance the trade stream is real-time and the depth stream batched (100 ms), so trades come
first almost always.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

POWER_MAX = 10  # exponents beyond this behave as "ahead iff front > back"; refuse typos


class QueuePos(NamedTuple):
    """A resting order's place in its level (lots).

    ``ahead``: public lots ahead of us (our estimate). ``shown``: the displayed size at our
    price at the last synced look. ``traded``: lots printed at our price since that look.
    """

    ahead: int
    shown: int
    traded: int


def rebase(pos: QueuePos, displayed: int) -> QueuePos:
    """``ahead`` capped at ``displayed`` lots; counting starts afresh from ``displayed``."""
    return QueuePos(min(pos.ahead, displayed), displayed, 0)


class QueueModel:
    """The protocol the venue calls, with the conservative rule (see the module docstring).

    Subclasses override :meth:`on_level` only; instances are stateless (one serves every
    order).
    """

    name = "conservative"

    def on_arrival(self, displayed: int) -> QueuePos:
        """An order joins the back of a level showing ``displayed`` lots."""
        return QueuePos(displayed, displayed, 0)

    def on_trade(self, pos: QueuePos, printed: int, reached: int) -> QueuePos:
        """A trade printed ``printed`` lots at our price; ``reached`` of them got to our
        level. The lots beyond ``pos.ahead`` (``reached - pos.ahead`` if positive) are the
        venue's to fill us with."""
        return QueuePos(max(pos.ahead - reached, 0), pos.shown, pos.traded + printed)

    def on_level(self, pos: QueuePos, displayed: int) -> QueuePos:
        """The displayed size at our price is now ``displayed`` lots (synced book)."""
        return rebase(pos, displayed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


CONSERVATIVE = QueueModel()


class _Probabilistic(QueueModel, ABC):
    """Cancels ahead of us with probability f(front) / (f(front) + f(back))."""

    def on_level(self, pos: QueuePos, displayed: int) -> QueuePos:
        d = pos.shown - displayed - pos.traded
        if d <= 0:
            return rebase(pos, displayed)  # an increase, or all of it explained by trades
        front = pos.ahead
        back = max(pos.shown - pos.traded - front, 0)
        gone = min(self._expected_ahead(d, front, back), front)
        return QueuePos(min(front - gone, displayed), displayed, 0)

    @abstractmethod
    def _expected_ahead(self, d: int, front: int, back: int) -> int:
        """floor(d * f(front) / (f(front) + f(back))), never above the exact value;
        ``d > 0`` and ``front + back > 0``."""


class PowerQueue(_Probabilistic):
    """``f(x) = x**n``, exact in integers."""

    name = "power"

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= POWER_MAX:
            raise ValueError(f"queue power: expected an integer from 1 to {POWER_MAX} "
                             f"(the n of f(x) = x**n), got {n!r}")
        self.n = n

    def _expected_ahead(self, d: int, front: int, back: int) -> int:
        f_front: int = front**self.n  # int ** int is typed Any (a negative power is a float)
        f_back: int = back**self.n
        return d * f_front // (f_front + f_back)

    def __repr__(self) -> str:
        return f"PowerQueue({self.n})"


class LogQueue(_Probabilistic):
    """``f(x) = ln(1 + x)``, in floating point lowered by 16 ulps before the floor."""

    name = "log"

    def _expected_ahead(self, d: int, front: int, back: int) -> int:
        if front == back:
            return d // 2  # p = 1/2 exactly: no float needed (and none to lose a lot to)
        f_front = math.log1p(front)
        share = d * f_front / (f_front + math.log1p(back))
        return max(math.floor(share - 16 * math.ulp(share)), 0)


QUEUE_MODELS = ("conservative", "power", "log")


def make_queue_model(name: str, power: int) -> QueueModel:
    """The model called ``name`` (one of :data:`QUEUE_MODELS`); ``power`` is the exponent
    of ``power`` and ignored by the others. ValueError names what is wrong."""
    if name == "conservative":
        return CONSERVATIVE
    if name == "power":
        return PowerQueue(power)
    if name == "log":
        return LogQueue()
    raise ValueError(f"queue model: expected one of {', '.join(QUEUE_MODELS)}, got {name!r}")
