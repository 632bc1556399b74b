"""The sim serving two venues at once: the traded spot market and a reference venue's
(the USD-M perpetual), each on its own port and protocol, played on one replay clock from
the real recordings; clients are the daemon's own websocket feed and codecs."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from pathlib import Path

import aiohttp
import orjson
import pytest

from mmdaemon.clock import ManualClock, SystemClock
from mmdaemon.feed.websocket import FeedSettings, Reconnected, WebsocketFeed
from mmdaemon.market import MarketState
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.sim.server import ReferenceSpec, SimVenue
from mmdaemon.venues.binance import BinanceCodec, Market
from tests.helpers import first_lines, rewrite, until, write_gz
from tests.recorder import Recorder

SPOT_FEED = ("depth@100ms", "trade", "bookTicker")
USDM_FEED = ("depth@0ms", "trade", "bookTicker")
# the bundled BTCUSDT perpetual renamed ETHUSDT, prices / 25 and sizes x 1,000 (rewrite):
# 0.1 / 25 = 0.004 sits on a 0.001 grid, 0.001 x 1,000 = 1 on a grid of 1
ETHUSDT_PERP = Instrument("ETHUSDT", "0.001", "1")


def usdm_lines(usdm_file: Path, count: int) -> list[bytes]:
    """The first ``count`` lines of the USD-M recording (its snapshot is line 55; about 270
    lines per second of market)."""
    with gzip.open(usdm_file, "rb") as f:
        return [line.rstrip(b"\n") for line in itertools.islice(f, count)]


async def test_both_tapes_play_on_one_clock_as_recorded(tmp_path: Path, usdm_file: Path) -> None:
    """Every frame of either recording goes out at its recorded receive time, measured from
    the first frame of both: the perpetual's recording starts 1.09 s after spot's, and so
    does its tape (a tape paced from its own first frame would start both at once)."""
    spot = first_lines(tmp_path / "spot.gz", 2_000)
    ref = write_gz(tmp_path / "usdm.gz", usdm_lines(usdm_file, 2_000))
    clock = ManualClock()
    sim = SimVenue([spot], BINANCE_SPOT_BTCUSDT, speed=4.0, clock=clock,
                   reference=ReferenceSpec((ref,), BINANCE_USDM_BTCUSDT))
    assert sim.reference is not None
    played: list[tuple[str, int, int]] = []  # (tape, recv_ns, clock ns when it went out)
    sim.tape.on_frame = lambda ns, _: played.append(("spot", ns, clock.monotonic_ns()))
    sim.reference.tape.on_frame = lambda ns, _: played.append(("usdm", ns, clock.monotonic_ns()))
    await sim.tape.run()

    assert {tape for tape, _, _ in played} == {"spot", "usdm"}
    first_recv, start = played[0][1], played[0][2]
    for tape, recv_ns, at in played:
        assert abs((at - start) * 4.0 - (recv_ns - first_recv)) < 1_000, (tape, recv_ns)
    first_usdm = next(p for p in played if p[0] == "usdm")
    assert first_usdm[2] - start == pytest.approx((first_usdm[1] - first_recv) / 4.0, abs=300)
    assert (first_usdm[1] - first_recv) / 1e9 == pytest.approx(1.093, abs=0.001)
    # and one clock means one order: receive times never go back across the two tapes
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(played))


async def follow(settings: FeedSettings, market: MarketState, log: Recorder) -> None:
    """A client as the daemon is one: its websocket feed into a codec and book; a gap or
    a new connection asks for a fresh snapshot."""
    feed = WebsocketFeed(settings, log)
    async for item in feed.frames():
        if isinstance(item, Reconnected):
            market.codec.reset()
            continue
        gaps = market.gaps
        market.on_frame(*item)
        if market.gaps > gaps:
            feed.request_snapshot()


def settings(url: str, rest_url: str, symbol: str, market: Market) -> FeedSettings:
    usdm = market == "usdm"
    return FeedSettings(url, rest_url, symbol, USDM_FEED if usdm else SPOT_FEED,
                        "/fapi/v1/depth" if usdm else "/api/v3/depth", stale_after_ms=3000,
                        backoff_initial_s=0.05, backoff_max_s=0.2)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
async def test_usdm_clients_sync_the_reference_by_the_futures_rules_beside_spot(
        tmp_path: Path, usdm_file: Path, symbol: str) -> None:
    """Spot and the perpetual served at once from the real recordings (the perpetual also
    renamed ETHUSDT on a grid of its own): a spot client and a USD-M client, each on its
    venue's port, sync by their venue's rules (USD-M: the snapshot inside the first diff,
    then an unbroken ``pu`` chain), never gap, and hold the sim's own books."""
    lines = usdm_lines(usdm_file, 6_000)
    instrument = BINANCE_USDM_BTCUSDT
    if symbol != "BTCUSDT":
        lines, instrument = rewrite(lines, symbol), ETHUSDT_PERP
    ref = write_gz(tmp_path / "usdm.gz", lines)
    spot = first_lines(tmp_path / "spot.gz", 3_000)
    async with SimVenue([spot], BINANCE_SPOT_BTCUSDT, speed=8.0, clock=SystemClock(),
                        reference=ReferenceSpec((ref,), instrument)) as sim:
        assert sim.reference is not None
        theirs = sim.reference.tape.market
        ours = MarketState(BinanceCodec(instrument, "usdm"))
        spot_ours = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
        log = Recorder()
        clients = [
            asyncio.create_task(follow(settings(sim.reference.ws_url, sim.reference.rest_url,
                                                symbol, "usdm"), ours, log)),
            asyncio.create_task(follow(settings(sim.ws_url, sim.rest_url, "BTCUSDT", "spot"),
                                       spot_ours, log)),
        ]
        try:
            await until(lambda: ours.depth_updates > 200 and ours.trades > 20
                        and spot_ours.depth_updates > 20, timeout=30)
            await until(lambda: ours.book.last_id == theirs.book.last_id)
            assert ours.book.bids.top(100) == theirs.book.bids.top(100)
            assert ours.book.asks.top(100) == theirs.book.asks.top(100)
            await until(lambda: spot_ours.book.last_id == sim.tape.market.book.last_id)
            assert spot_ours.book.bids.top(50) == sim.tape.market.book.bids.top(50)
        finally:
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        assert (ours.gaps, ours.malformed, spot_ours.gaps, spot_ours.malformed) == (0, 0, 0, 0)
        assert ours.book.synced and ours.codec.market == "usdm"  # type: ignore[attr-defined]

        # the venue's REST as the futures venue has it: /fapi/v1, with E and T
        async with aiohttp.ClientSession() as http:
            url = f"{sim.reference.rest_url}/fapi/v1/depth?symbol={symbol}&limit=1000"
            async with http.get(url) as response:
                assert response.status == 200
                snapshot = orjson.loads(await response.read())
            # the venue's time of that book: the recording's (2024-08-08 23:54-00:00 UTC)
            # on the sim's one clock, the traded venue's
            assert snapshot["E"] == snapshot["T"]
            offset_ms = sim.sim_clock.offset_ns // 1_000_000
            assert 1_723_161_240_000 < snapshot["T"] - offset_ms < 1_723_161_600_000
            assert snapshot["T"] <= sim.sim_clock.now_ms()
            if symbol == "BTCUSDT":  # printed as the venue prints it: "61800.20", "2.909"
                price, size = snapshot["bids"][0]
                assert len(price.partition(".")[2]) == 2 and len(size.partition(".")[2]) == 3
            async with http.get(f"{sim.reference.rest_url}/api/v3/depth?symbol={symbol}") as r:
                assert r.status == 404  # spot's route is not the futures venue's
            async with http.get(f"{sim.reference.rest_url}/fapi/v1/depth?symbol=XRPUSDT") as r:
                assert r.status == 400
            async with http.get(f"{sim.reference.rest_url}/fapi/v1/depth?symbol={symbol}"
                                "&limit=5000") as r:
                assert r.status == 400  # 5000 levels is spot's limit, not the futures'
