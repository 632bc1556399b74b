"""The USD-M futures sim's book-keeping: wallets, one-way positions, orders, trades, income.

One :class:`FuturesLedger` holds, per API key (each key is its own futures account): the
USDT wallet, a one-way position per symbol (:class:`Position`: signed amount, average
entry, realised PnL), the leverage per symbol, the orders the venue accepted
(:class:`FuturesOrder`, open and closed), the trade history ``userTrades`` lists and the
income history ``income`` lists (realised PnL, commissions, funding fees). No I/O, no
clock: times are passed in. :mod:`mmdaemon.sim.futures_matching` changes it,
:mod:`mmdaemon.sim.futures_protocol` reads it to answer.

Units: prices ticks and sizes lots of each symbol's instrument; money (wallet, PnL, fees,
margins) exact :class:`~fractions.Fraction` USDT, printed with 8 decimals as Binance does
(:func:`usdt`); times ms since the epoch of the sim's one clock. Invariants: an order is in
:attr:`FuturesLedger.open` exactly while it is open for its client; order ids, trade ids and
income ``tranId`` are unique and increase across all accounts and symbols.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final, NamedTuple

from mmdaemon.model import Instrument, Side
from mmdaemon.orders.position import COST_SCALE, cost_share

DEFAULT_LEVERAGE: Final = 20
"""Binance's default leverage of a USD-M symbol (BTCUSDT) for a new account."""

MAINT_MARGIN_RATE: Final = Fraction(4, 1000)
"""BTCUSDT's first maintenance-margin bracket (0.4 % of notional), for display only: the sim
liquidates nobody."""

WORKING: Final = frozenset({"NEW", "PARTIALLY_FILLED"})
"""Order statuses of an order still on the book."""

USDT: Final = "USDT"


def usdt(amount: Fraction | int) -> str:
    """Binance's 8-decimal text of a USDT amount (half-even; ``"-0.00000000"`` never)."""
    value = Decimal(amount.numerator) / Decimal(amount.denominator) if isinstance(
        amount, Fraction) else Decimal(amount)
    text = f"{value.quantize(Decimal('1e-8'), rounding=ROUND_HALF_EVEN):.8f}"
    return "0.00000000" if text == "-0.00000000" else text


def price_text(instrument: Instrument, price: Fraction) -> str:
    """A price that may fall between ticks (an average entry) as Binance prints it: the
    instrument's decimals when exact, else 8 decimals."""
    value = price * Fraction(instrument.tick_size)
    places = instrument.price_precision
    scaled = value * 10**places
    if scaled.denominator == 1:
        return f"{Decimal(scaled.numerator).scaleb(-places):.{places}f}"
    return usdt(value)


class Position:
    """A one-way position in one symbol: ``amount`` lots (positive long, negative short),
    ``cost`` the entry notional of the open amount in notional units (``|amount|`` x the
    average entry price in ticks; kept as ``cost_scaled`` sub-units and rounded to one after
    a reducing fill, as the daemon's own :class:`mmdaemon.orders.position.Position` does,
    so a long-running sim does not carry an ever-growing Fraction), ``realized`` USDT
    realised on reducing fills since the start, ``update_ms`` the time of the last change."""

    __slots__ = ("amount", "cost_scaled", "realized", "update_ms")

    def __init__(self) -> None:
        self.amount = 0
        self.cost_scaled = 0
        self.realized = Fraction(0)
        self.update_ms = 0

    @property
    def cost(self) -> Fraction:
        """The entry notional of the open amount, notional units."""
        return Fraction(self.cost_scaled, COST_SCALE)

    @property
    def entry_ticks(self) -> Fraction:
        """The average entry price in ticks (0 when flat)."""
        return Fraction(self.cost_scaled, abs(self.amount) * COST_SCALE) if self.amount \
            else Fraction(0)

    def apply_fill(self, side: Side, price: int, size: int, unit: Fraction, ms: int) -> Fraction:
        """A fill of ``size`` lots at ``price`` ticks; returns the USDT it realises
        (``unit`` = USDT per notional unit). A fill that flips the position closes the old
        one and opens the rest at ``price``."""
        signed = size if side is Side.BUY else -size
        realized = Fraction(0)
        if self.amount == 0 or (self.amount > 0) == (signed > 0):
            self.cost_scaled += price * size * COST_SCALE
        else:
            held = abs(self.amount)
            closing = min(size, held)
            kept = cost_share(self.cost_scaled, held - closing, held)
            given_up = Fraction(self.cost_scaled - kept, COST_SCALE)
            direction = 1 if self.amount > 0 else -1
            realized = (price * closing - given_up) * direction * unit
            self.cost_scaled = kept
            if size > closing:  # flipped: the rest opens a position at this price
                self.cost_scaled = price * (size - closing) * COST_SCALE
        self.amount += signed
        self.realized += realized
        self.update_ms = ms
        return realized


class FuturesOrder:
    """One venue order (its id is also its PaperVenue id), as its client was told it.

    ``price`` ticks, ``size`` (the order's current total quantity, a modify changes it)
    and ``executed`` lots; ``cum_quote`` the traded notional in notional units.
    """

    __slots__ = (
        "api_key",
        "client_id",
        "closed",
        "created_ms",
        "cum_quote",
        "executed",
        "order_id",
        "price",
        "reduce_only",
        "side",
        "size",
        "status",
        "symbol",
        "update_ms",
    )

    def __init__(self, api_key: str, symbol: str, order_id: int, client_id: str, side: Side,
                 price: int, size: int, reduce_only: bool, ms: int) -> None:
        self.api_key = api_key
        self.symbol = symbol
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price = price
        self.size = size
        self.reduce_only = reduce_only
        self.executed = 0
        self.cum_quote = 0
        self.status = "NEW"
        self.created_ms = ms
        self.update_ms = ms
        self.closed = False

    @property
    def left(self) -> int:
        """Lots still to fill."""
        return self.size - self.executed


class FuturesTrade(NamedTuple):
    """One fill of an account's order, as ``userTrades`` lists it: money in USDT."""

    trade_id: int
    symbol: str
    order_id: int
    side: Side
    price: int
    qty: int
    notional: Fraction
    commission: Fraction
    realized: Fraction
    maker: bool
    time_ms: int


class Income(NamedTuple):
    """One entry of the income history: ``income_type`` (REALIZED_PNL, COMMISSION,
    FUNDING_FEE), signed USDT ``amount`` (negative paid), unique ``tran_id``."""

    symbol: str
    income_type: str
    amount: Fraction
    time_ms: int
    tran_id: int
    trade_id: str


class FuturesAccount:
    """One API key's futures account: the USDT ``wallet`` (deposits + realised PnL -
    commissions + funding), positions and leverage per symbol."""

    __slots__ = ("leverage", "positions", "update_ms", "wallet")

    def __init__(self, wallet: Fraction, symbols: Iterable[str]) -> None:
        self.wallet = wallet
        self.positions = {s: Position() for s in symbols}
        self.leverage = dict.fromkeys(self.positions, DEFAULT_LEVERAGE)
        self.update_ms = 0


class FuturesLedger:
    """Every account of the futures sim over ``instruments`` (symbol -> instrument); each
    of ``api_keys`` starts with ``wallet`` USDT."""

    def __init__(self, instruments: Mapping[str, Instrument], api_keys: Iterable[str],
                 wallet: Fraction) -> None:
        self.instruments = dict(instruments)
        self.api_keys = tuple(api_keys)
        self.accounts = {k: FuturesAccount(wallet, self.instruments) for k in self.api_keys}
        self.orders: dict[int, FuturesOrder] = {}  # every accepted order by orderId
        self.latest: dict[tuple[str, str], FuturesOrder] = {}  # (key, client id) -> newest
        self.open: dict[str, dict[str, FuturesOrder]] = {k: {} for k in self.api_keys}
        self.trades: dict[str, list[FuturesTrade]] = {k: [] for k in self.api_keys}
        self.income: dict[str, list[Income]] = {k: [] for k in self.api_keys}
        self.marks: dict[str, Fraction] = dict.fromkeys(self.instruments, Fraction(0))
        self._trade_seq = 0
        self._tran_seq = 0

    def unit(self, symbol: str) -> Fraction:
        """USDT per notional unit (tick x lot) of ``symbol``."""
        inst = self.instruments[symbol]
        return Fraction(inst.tick_size) * Fraction(inst.lot_size)

    # ---- orders -----------------------------------------------------------------------------

    def add(self, order: FuturesOrder) -> None:
        """The venue accepted ``order``: open for its client and findable from now on."""
        self.orders[order.order_id] = order
        self.latest[(order.api_key, order.client_id)] = order
        self.open[order.api_key][order.client_id] = order

    def discard(self, order: FuturesOrder) -> None:
        """Forget ``order``: the venue refused it after all (it was never accepted)."""
        self.orders.pop(order.order_id, None)
        self.latest.pop((order.api_key, order.client_id), None)
        self.open[order.api_key].pop(order.client_id, None)

    def close(self, order: FuturesOrder, status: str, ms: int) -> None:
        """``order`` is final for its client with ``status`` at ``ms``."""
        order.status = status
        order.closed = True
        order.update_ms = ms
        self.open[order.api_key].pop(order.client_id, None)

    def find(self, api_key: str, symbol: str, order_id: int | None,
             client_id: str | None) -> FuturesOrder | None:
        """``api_key``'s order in ``symbol``, open or closed: by ``order_id`` (checked
        against ``client_id`` when both are given) or the newest with ``client_id``."""
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.api_key != api_key or order.symbol != symbol or (
                    client_id is not None and order.client_id != client_id):
                return None
            return order
        if client_id is None:
            return None
        order = self.latest.get((api_key, client_id))
        return order if order is not None and order.symbol == symbol else None

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[FuturesOrder]:
        """``api_key``'s open orders (in ``symbol`` only when given), oldest first."""
        return sorted((o for o in self.open[api_key].values()
                       if symbol is None or o.symbol == symbol), key=lambda o: o.order_id)

    # ---- fills, funding ---------------------------------------------------------------------

    def record_fill(self, order: FuturesOrder, price: int, size: int, fee_units: int,
                    maker: bool, ms: int) -> FuturesTrade:
        """A fill of ``order``: its executed quantity, the position, the wallet (realised
        PnL less commission), the trade and income histories; returns the trade."""
        unit = self.unit(order.symbol)
        order.executed += size
        order.cum_quote += price * size
        order.update_ms = ms
        if not order.closed:
            order.status = "FILLED" if order.executed >= order.size else "PARTIALLY_FILLED"
        account = self.accounts[order.api_key]
        realized = account.positions[order.symbol].apply_fill(order.side, price, size, unit, ms)
        commission = fee_units * unit
        account.wallet += realized - commission
        account.update_ms = ms
        self._trade_seq += 1
        trade = FuturesTrade(self._trade_seq, order.symbol, order.order_id, order.side, price,
                             size, price * size * unit, commission, realized, maker, ms)
        self.trades[order.api_key].append(trade)
        if realized:
            self._income(order.api_key, order.symbol, "REALIZED_PNL", realized, ms, trade)
        if commission:
            self._income(order.api_key, order.symbol, "COMMISSION", -commission, ms, trade)
        return trade

    def pay_funding(self, api_key: str, symbol: str, amount: Fraction, ms: int) -> Income:
        """Book a funding payment of ``amount`` USDT (negative paid) on the wallet."""
        account = self.accounts[api_key]
        account.wallet += amount
        account.update_ms = ms
        return self._income(api_key, symbol, "FUNDING_FEE", amount, ms, None)

    def _income(self, api_key: str, symbol: str, kind: str, amount: Fraction, ms: int,
                trade: FuturesTrade | None) -> Income:
        self._tran_seq += 1
        entry = Income(symbol, kind, amount, ms, self._tran_seq,
                       "" if trade is None else str(trade.trade_id))
        self.income[api_key].append(entry)
        return entry

    # ---- margins ----------------------------------------------------------------------------

    def unrealized(self, api_key: str, symbol: str) -> Fraction:
        """The position's unrealised PnL at the symbol's mark price, USDT."""
        position = self.accounts[api_key].positions[symbol]
        mark = self.marks[symbol]
        if not position.amount or not mark:
            return Fraction(0)
        return (mark * abs(position.amount) - position.cost) * (
            1 if position.amount > 0 else -1) * self.unit(symbol)

    def position_margin(self, api_key: str, symbol: str) -> Fraction:
        """Initial margin of the position: its notional at the mark (entry before any
        mark) / leverage, USDT."""
        account = self.accounts[api_key]
        position = account.positions[symbol]
        mark = self.marks[symbol]
        notional = mark * abs(position.amount) if mark else position.cost
        return notional * self.unit(symbol) / account.leverage[symbol]

    def order_margin(self, api_key: str, symbol: str) -> Fraction:
        """Initial margin of the open orders in ``symbol``: notional / leverage, USDT.
        Binance nets orders that would reduce the position; the sim does not (stricter)."""
        account = self.accounts[api_key]
        notional = sum(o.price * o.left for o in self.open[api_key].values()
                       if o.symbol == symbol)
        return notional * self.unit(symbol) / account.leverage[symbol]

    def available(self, api_key: str) -> Fraction:
        """Margin available for new orders, USDT: wallet + unrealised PnL - the initial
        margin of every position and open order (cross margin, one asset)."""
        account = self.accounts[api_key]
        out = account.wallet
        for symbol in self.instruments:
            out += self.unrealized(api_key, symbol) - self.position_margin(api_key, symbol) \
                - self.order_margin(api_key, symbol)
        return out
