"""The sim venue's book-keeping: accounts, their orders and their trades, exact.

One :class:`Ledger` holds, per API key (each key is its own spot account): the balances
(:class:`Account`), the orders the venue accepted (:class:`VenueOrder`, open and closed,
as the client was told them) and the trade history ``myTrades`` lists. It knows nothing
of websockets, requests or the matching engine: :mod:`mmdaemon.sim.matching` opens,
fills and closes orders here, :mod:`mmdaemon.sim.protocol` reads it to answer.

Units: prices ticks, sizes lots, quote amounts notional units (ticks x lots; for BTCUSDT
spot 1e-10 USDT), times model ms since the epoch. Invariants: an order is in
:attr:`Ledger.open` and :attr:`Ledger.by_id` exactly while it is open for its client;
:attr:`Ledger.history` and :attr:`Ledger.latest` hold every order the venue accepted
(refused ones never enter them); trade ids are unique and increase across all accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, NamedTuple

from mmdaemon.exchange.fill_model import fee_units
from mmdaemon.model import Fill, Instrument, Side
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api

WORKING: Final = frozenset({"NEW", "PARTIALLY_FILLED"})
"""Binance order statuses of an order still on the book."""


class OpenOrder(NamedTuple):
    """An open order as the sim sees it: venue ``order_id``, ``price`` ticks, sizes lots."""

    api_key: str
    order_id: int
    client_order_id: str
    side: Side
    price: int
    size: int
    executed: int
    status: str


class Account:
    """One API key's spot account, exact: base asset in lots, quote asset in notional units.

    ``position_lots`` is the net base bought minus sold since the start, in lots;
    ``update_ms`` the model time of the last fill; ``other`` the starting balances of assets
    the symbol does not trade (listed by ``account.status``, never moved).
    """

    __slots__ = ("base_lots", "other", "position_lots", "quote_units", "update_ms")

    def __init__(self, base_lots: int, quote_units: int,
                 other: Mapping[str, Decimal] | None = None) -> None:
        self.base_lots = base_lots
        self.quote_units = quote_units
        self.other = dict(other or {})
        self.position_lots = 0
        self.update_ms = 0

    def apply_fill(self, side: Side, size: int, notional: int, fee: int, ms: int) -> None:
        """``size`` lots traded for ``notional`` units, paying ``fee`` units of quote."""
        if side is Side.BUY:
            self.base_lots += size
            self.quote_units -= notional + fee
            self.position_lots += size
        else:
            self.base_lots -= size
            self.quote_units += notional - fee
            self.position_lots -= size
        self.update_ms = ms


class VenueOrder:
    """One venue order (its PaperVenue id is its ``order_id``), as its client was told it."""

    __slots__ = (
        "acked",
        "api_key",
        "cancel_client_id",
        "client_id",
        "closed",
        "created_ms",
        "cum_quote",
        "executed",
        "order_id",
        "price",
        "reject_reason",
        "side",
        "size",
        "status",
        "update_ms",
        "working_ms",
    )

    def __init__(
        self, api_key: str, order_id: int, client_id: str, side: Side, price: int, size: int,
        ms: int,
    ) -> None:
        self.api_key = api_key
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price = price  # ticks
        self.size = size  # lots
        self.executed = 0  # lots
        self.cum_quote = 0  # notional units
        self.status = "NEW"  # Binance order status, as the client was told
        self.created_ms = ms
        self.update_ms = ms
        self.working_ms = -1
        self.acked = False  # the client was told NEW (response or executionReport)
        self.closed = False  # the client was told it is final
        self.cancel_client_id = ""  # the id a cancel gave it (``c`` of its CANCELED report)
        self.reject_reason = ""  # the PaperVenue's reason when it refused the order

    def view(self) -> wire.OrderView:
        """The order as an ``executionReport`` shows it."""
        return wire.OrderView(
            self.order_id, self.client_id, self.side, self.price, self.size, self.executed,
            self.cum_quote, self.status, self.created_ms, self.working_ms,
        )

    def snapshot(self) -> OpenOrder:
        """The order as :meth:`Ledger.open_orders` and :meth:`Ledger.order` show it."""
        return OpenOrder(self.api_key, self.order_id, self.client_id, self.side, self.price,
                         self.size, self.executed, self.status)


class Ledger:
    """Every account of the sim venue for ``instrument``: balances, orders, trades.

    ``accounts`` maps each API key to its account as it starts; ``assets`` names the base and
    quote asset. Commissions are charged in the quote asset (the sim's deviation from
    Binance, see :mod:`mmdaemon.sim.orders`), at ``fee_bps`` at most: a buy must be able to
    pay its notional and that fee from the free quote balance.
    """

    def __init__(self, instrument: Instrument, assets: api.Assets,
                 accounts: Mapping[str, Account], fee_bps: Fraction = Fraction(0)) -> None:
        self.instrument = instrument
        self.assets = assets
        self.api_keys = tuple(accounts)
        self.accounts = dict(accounts)
        self.fee_bps = fee_bps
        self.trades: dict[str, list[api.AccountTrade]] = {key: [] for key in self.api_keys}
        self.history: dict[int, VenueOrder] = {}  # every accepted order by orderId
        self.latest: dict[tuple[str, str], VenueOrder] = {}  # (api key, client id) -> newest
        self.open: dict[str, dict[str, VenueOrder]] = {key: {} for key in self.api_keys}
        self.by_id: dict[int, VenueOrder] = {}  # open orders (client view) by orderId
        self._trade_seq = 0  # trade ids ``t`` of our fills: unique, increasing

    # ---- orders -----------------------------------------------------------------------------

    def add_open(self, order: VenueOrder) -> None:
        """``order`` is open for its client from now on (before the venue has decided)."""
        self.open[order.api_key][order.client_id] = order
        self.by_id[order.order_id] = order

    def remember(self, order: VenueOrder) -> None:
        """The venue accepted ``order``: ``order.status`` can find it from now on."""
        self.history[order.order_id] = order
        self.latest[(order.api_key, order.client_id)] = order

    def close(self, order: VenueOrder, status: str, ms: int) -> None:
        """``order`` is final for its client with Binance ``status`` at model ``ms``."""
        order.status = status
        order.closed = True
        order.update_ms = ms
        self.open[order.api_key].pop(order.client_id, None)
        self.by_id.pop(order.order_id, None)

    def find_open(self, api_key: str, order_id: int | None,
                  client_id: str | None) -> VenueOrder | None:
        """``api_key``'s open order by venue ``order_id`` (checked against ``client_id`` when
        both are given) or by ``client_id``; None if there is none."""
        if order_id is not None:
            order = self.by_id.get(order_id)
            if order is None or order.api_key != api_key:
                return None
            if client_id is not None and order.client_id != client_id:
                return None
            return order
        if client_id is None:
            return None
        return self.open[api_key].get(client_id)

    def find(self, api_key: str, order_id: int | None,
             client_id: str | None) -> VenueOrder | None:
        """Any order ``api_key`` ever had accepted, open or closed: by venue ``order_id``
        (checked against ``client_id`` when both are given) or the newest with
        ``client_id``; None if there is none."""
        if order_id is not None:
            order = self.history.get(order_id)
            if order is not None and (order.api_key != api_key or (
                    client_id is not None and order.client_id != client_id)):
                return None
            return order
        if client_id is None:
            return None
        return self.latest.get((api_key, client_id))

    def open_orders(self) -> list[OpenOrder]:
        """Every open order of every account, in placement order."""
        return [o.snapshot() for o in self.by_id.values()]

    def order(self, order_id: int) -> OpenOrder | None:
        """Any order ever accepted (open or closed) by venue ``order_id``; None if unknown."""
        o = self.history.get(order_id)
        return None if o is None else o.snapshot()

    # ---- fills and trades -------------------------------------------------------------------

    def record_fill(self, order: VenueOrder, fill: Fill, ms: int) -> api.AccountTrade:
        """``fill`` of ``order`` at model ``ms``: the order's executed quantity and status, the
        account's balances and its trade history; returns the trade (its id is new)."""
        notional = fill.price * fill.size
        order.executed += fill.size
        order.cum_quote += notional
        order.update_ms = ms
        if not order.closed:
            order.status = "FILLED" if order.executed >= order.size else "PARTIALLY_FILLED"
        self.accounts[order.api_key].apply_fill(order.side, fill.size, notional, fill.fee, ms)
        self._trade_seq += 1
        inst = self.instrument
        trade = api.AccountTrade(
            self._trade_seq, order.order_id, -1, fill.price, fill.size,
            Decimal(wire.notional_str(inst, notional)),
            Decimal(wire.notional_str(inst, fill.fee)),
            self.assets.quote, ms, order.side is Side.BUY, fill.maker, True,
        )
        self.trades[order.api_key].append(trade)
        return trade

    def select_trades(self, api_key: str, *, order_id: int | None, from_id: int | None,
                      start_ms: int | None, end_ms: int | None,
                      limit: int) -> list[api.AccountTrade]:
        """``api_key``'s trades as ``myTrades`` lists them, oldest first: only ``order_id``'s
        when given; then those with id >= ``from_id``, or within the window
        [``start_ms``, ``end_ms``] (one end given: 24 h from it), at most ``limit``;
        neither: the ``limit`` most recent. The arguments are already validated."""
        trades = self.trades[api_key]
        if order_id is not None:
            trades = [t for t in trades if t.order_id == order_id]
        if from_id is not None:
            return [t for t in trades if t.trade_id >= from_id][:limit]
        if start_ms is not None or end_ms is not None:
            lo = start_ms if start_ms is not None else (end_ms or 0) - api.MAX_TRADE_LOOKUP_MS
            hi = end_ms if end_ms is not None else lo + api.MAX_TRADE_LOOKUP_MS
            return [t for t in trades if lo <= t.time_ms <= hi][:limit]
        return trades[-limit:]

    # ---- balances ---------------------------------------------------------------------------

    @property
    def position_lots(self) -> int:
        """Net base asset bought minus sold, in lots, over all accounts."""
        return sum(a.position_lots for a in self.accounts.values())

    def uid(self, api_key: str) -> int:
        """The account's user id: 1 for the first API key, 2 for the second..."""
        return self.api_keys.index(api_key) + 1

    def locked(self, api_key: str) -> tuple[int, int]:
        """(base lots, quote notional units) reserved by the account's open orders."""
        base = quote = 0
        for order in self.open[api_key].values():
            left = order.size - order.executed
            if order.side is Side.BUY:
                quote += order.price * left
            else:
                base += left
        return base, quote

    def affordable(self, api_key: str, side: Side, price: int, size: int) -> bool:
        """Whether the account's free balance covers a new order of ``size`` lots at
        ``price`` ticks: a sell needs its lots of the base asset, a buy its notional and the
        most fee it can be charged (in the quote asset, see the class docstring) of the
        quote asset, beyond what open orders lock."""
        account = self.accounts[api_key]
        locked_base, locked_quote = self.locked(api_key)
        if side is Side.BUY:
            notional = price * size
            fee = max(fee_units(notional, self.fee_bps), 0)
            return notional + fee <= account.quote_units - locked_quote
        return size <= account.base_lots - locked_base

    def balances(self, api_key: str) -> list[tuple[str, str, str]]:
        """(asset, free, locked) texts, as booked (the matching keeps free >= 0 by refusing
        what an account cannot pay for)."""
        inst = self.instrument
        account = self.accounts[api_key]
        locked_base, locked_quote = self.locked(api_key)
        return [
            (self.assets.base, wire.qty_str(inst, account.base_lots - locked_base),
             wire.qty_str(inst, locked_base)),
            (self.assets.quote, wire.notional_str(inst, account.quote_units - locked_quote),
             wire.notional_str(inst, locked_quote)),
            *((asset, wire.amount_str(amount), wire.amount_str(Decimal(0)))
              for asset, amount in sorted(account.other.items())),
        ]

    def position_event(self, api_key: str, ms: int) -> dict[str, Any]:
        """The account's ``outboundAccountPosition`` event at model ``ms``."""
        return {
            "e": "outboundAccountPosition",
            "E": ms,
            "u": self.accounts[api_key].update_ms,
            "B": [{"a": a, "f": f, "l": lk} for a, f, lk in self.balances(api_key)],
        }
