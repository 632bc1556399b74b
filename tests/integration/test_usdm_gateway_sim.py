"""The USD-M gateway against the sim's USD-M venue (the real recording), over loopback.

The daemon's order entry (:class:`~mmdaemon.exchange.usdm_gateway.UsdmGateway`) and the
sim's futures venue (:class:`~mmdaemon.sim.usdm.UsdmSim`) are built by different hands from
the same contract: what one sends the other must take, figure for figure. Quotes at the
touch of the replayed USD-M BTCUSDT book fill on the tape; the fee, the funding payment and
the available margin the gateway reports are the sim's own figures converted to notional
units (1e-4 USDT).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from mmdaemon.exchange.usdm_gateway import UsdmGateway, UsdmSettings
from mmdaemon.model import (
    Balances,
    Fill,
    Funding,
    Instrument,
    OrderStatus,
    OrderUpdate,
    Side,
    VenueEvent,
)
from mmdaemon.sim.usdm import UsdmOrderEntry, UsdmSim
from mmdaemon.venues import binance_api as api
from tests.helpers import gz_lines, rewrite, until, write_gz
from tests.integration.test_gateway import CaptureLog
from tests.integration.test_usdm_sim import (
    BTC,
    KEY,
    SECRET,
    WALLET,
    WsApi,
    place_params,
    start_venue,
)

UNIT = Fraction(BTC.tick_size) * Fraction(BTC.lot_size)  # one notional unit: 1e-4 USDT
LOTS = 5  # 0.005 BTC: ~300 USDT, above the 100 USDT minimum notional


@asynccontextmanager
async def trading(usdm_file: Path, *, funding_interval_ms: int, funding_rate: Fraction,
                  maker_fee_bps: str, others: tuple[tuple[Instrument, Path], ...] = ()
                  ) -> AsyncIterator[tuple[UsdmSim, UsdmOrderEntry, UsdmGateway,
                                           list[VenueEvent]]]:
    """The sim serving BTCUSDT (and ``others``, on the same accounts), and a BTCUSDT
    gateway started on it."""
    sim, entry, clock = await start_venue([(BTC, [usdm_file]),
                                           *((inst, [path]) for inst, path in others)],
                                          funding_interval_ms=funding_interval_ms,
                                          funding_rate=funding_rate, maker_fee_bps=maker_fee_bps)
    async with sim:
        await until(lambda: all(t.market.book.synced for t in sim.tapes.values()), timeout=20)
        settings = UsdmSettings(ws_api_url=f"{sim.ws_url}/ws-fapi/v1", client_prefix="mm",
                                rest_url=sim.rest_url, user_stream_url=f"{sim.ws_url}/ws",
                                backoff_initial_s=0.05, backoff_max_s=0.5)
        gw = UsdmGateway(settings, BTC, api.Credentials(KEY, SECRET), CaptureLog(),
                         now_ms=clock)
        events: list[VenueEvent] = []
        gw.set_listener(events.append)
        try:
            await asyncio.wait_for(gw.start(), 20)
            yield sim, entry, gw, events
        finally:
            await gw.close(2.0)
    assert entry.internal_errors == 0


def of(events: list[VenueEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def touch(sim: UsdmSim) -> tuple[int, int]:
    book = sim.tapes["BTCUSDT"].market.book
    bid, ask = book.bids.best(), book.asks.best()
    assert bid is not None and ask is not None
    return bid, ask


async def test_the_gateway_trades_on_the_sim_with_fees_funding_margin_and_cancel_all(
        usdm_file: Path) -> None:
    async with trading(usdm_file, funding_interval_ms=500, funding_rate=Fraction(1, 1000),
                       maker_fee_bps="2") as (sim, entry, gw, events):
        # the account as the sim holds it: 10,000 USDT available at leverage 20
        assert of(events, Balances)[0][:3] == (None, WALLET / UNIT, 20)
        # a post-only order that would take is refused with Binance's -5022
        bid, ask = touch(sim)
        await gw.place(1, Side.BUY, ask + 10, LOTS)
        await until(lambda: any(u.order_id == 1 for u in of(events, OrderUpdate)))
        [refused] = [u for u in of(events, OrderUpdate) if u.order_id == 1]
        assert refused.status is OrderStatus.REJECTED and refused.reason.startswith("-5022 ")
        # quotes at the touch until the tape fills one side (both: flat again, retry)
        order_id = 2
        position = entry.ledger.accounts[KEY].positions["BTCUSDT"]
        for _ in range(5):
            fills = len(of(events, Fill))
            bid, ask = touch(sim)
            await gw.place(order_id, Side.BUY, bid, LOTS)
            await gw.place(order_id + 1, Side.SELL, ask, LOTS)
            order_id += 2
            await until(lambda before=fills: len(of(events, Fill)) > before, timeout=30)
            await gw.cancel_all()
            if position.amount:
                break
        assert position.amount
        fill = of(events, Fill)[0]
        [trade] = [t for t in entry.ledger.trades[KEY] if t.trade_id == fill.exec_id]
        assert fill.fee == math.ceil(trade.commission / UNIT) > 0  # 2 bps, exactly
        assert (fill.price, fill.size, fill.maker) == (trade.price, trade.qty, True)
        # funding on the position the fill opened: the sim's payment, floored to units
        await until(lambda: bool(of(events, Funding)), timeout=10)
        funding = of(events, Funding)[0]
        [paid] = [i for i in entry.ledger.income[KEY] if i.income_type == "FUNDING_FEE"
                  and i.time_ms == funding.funding_id][:1]
        assert funding.amount == math.floor(paid.amount / UNIT) != 0
        # the kill switch's cancel-all: nothing open at the venue when it returns
        await gw.place(order_id, Side.BUY, touch(sim)[0] - 500, LOTS)
        await until(lambda: len(entry.ledger.open_orders(KEY)) >= 1)
        await gw.cancel_all()
        assert entry.ledger.open_orders(KEY) == [] and gw.open_order_count() == 0


async def test_another_symbols_funding_on_the_account_is_not_booked_as_ours(
        usdm_file: Path, tmp_path: Path) -> None:
    """The account holds an ETHUSDT position (another instance, or a hand trade) and none
    in BTCUSDT: ETHUSDT's funding comes on the account's user-data stream as Binance sends
    it for a cross position (the balance change, no symbol), and the BTCUSDT gateway
    books nothing of it."""
    eth_path = write_gz(tmp_path / "ethusdt.gz", rewrite(gz_lines(usdm_file), "ETHUSDT"))
    eth = Instrument("ETHUSDT", "0.001", "1", min_notional="5")
    async with trading(usdm_file, funding_interval_ms=500, funding_rate=Fraction(1, 1000),
                       maker_fee_bps="0", others=((eth, eth_path),)) as (sim, entry, _gw,
                                                                          events):
        client = WsApi(await connect(f"{sim.ws_url}/ws-fapi/v1"), entry.now_ms)
        ledger = entry.ledger
        position = ledger.accounts[KEY].positions["ETHUSDT"]
        for _ in range(5):  # quote ETHUSDT at the touch until one side fills
            book = sim.tapes["ETHUSDT"].market.book
            bid, ask = book.bids.best(), book.asks.best()
            assert bid is not None and ask is not None
            await client.call("order.place", **place_params("BUY", bid, qty="1", inst=eth))
            await client.call("order.place", **place_params("SELL", ask, qty="1", inst=eth))
            await until(lambda: bool(ledger.trades[KEY]), timeout=30)
            for order in ledger.open_orders(KEY):
                await client.call("order.cancel", symbol="ETHUSDT", orderId=order.order_id)
            if position.amount:
                break
        assert position.amount and ledger.accounts[KEY].positions["BTCUSDT"].amount == 0
        paid = len([i for i in ledger.income[KEY] if i.income_type == "FUNDING_FEE"])
        # two more ETHUSDT payments, each read by the gateway's account refresh
        await until(lambda: len([i for i in ledger.income[KEY]
                                 if i.income_type == "FUNDING_FEE"]) >= paid + 2, timeout=10)
        refreshed = len(of(events, Balances))
        await until(lambda: len(of(events, Balances)) > refreshed, timeout=10)
        assert of(events, Funding) == []
        await client.ws.close()
