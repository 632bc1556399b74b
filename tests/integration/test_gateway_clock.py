"""The gateway reads time only from the clock it is given (issue #18): the ``timestamp`` of
every signed request and the stamp of the updates it makes itself are the injected
clock's wall time, against the sim on 127.0.0.1 whose server clock is that same clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mmdaemon.clock import ManualClock
from mmdaemon.exchange.base import VenueStatus
from mmdaemon.exchange.binance_gateway import BinanceGateway
from mmdaemon.model import OrderStatus, Side
from mmdaemon.venues import binance_api as api
from tests.helpers import first_lines
from tests.integration.test_gateway import (
    FAR,
    INSTR,
    KEY,
    LOTS,
    RUN,
    SECRET,
    CaptureLog,
    Recorder,
    best,
    entry_of,
    settings_for,
    venue,
)

MS = 1_000_000
YEARS_AGO_NS = 1_600_000_000 * 10**9  # Sep 2020: years behind the machine's wall clock


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first ~53 s of the real recording: ~5 s at speed 10."""
    return first_lines(tmp_path_factory.mktemp("gateway_clock") / "short.gz", 6000)


async def test_signed_requests_and_own_updates_carry_the_injected_wall_clock(
        short_recording: Path) -> None:
    clock = ManualClock(wall_offset_ns=YEARS_AGO_NS)
    log = CaptureLog()
    # the venue checks each request's timestamp against the same clock: a request stamped
    # with the machine's wall time instead would be years ahead of it, and refused (-1021)
    async with venue(short_recording, now_ms=lambda: clock.wall_ns() // MS) as sim:
        gw = BinanceGateway(settings_for(sim), INSTR, api.Credentials(KEY, SECRET), log,
                            clock=clock)
        rec = Recorder()
        gw.set_listener(rec.on_event)
        gw.set_status_listener(rec.on_status)
        # a gateway stamping with another clock is refused (-1021) and retries for ever
        await asyncio.wait_for(gw.start(), 15)
        try:
            assert rec.statuses[-1] == VenueStatus(True, "ready")
            bid, _ = best(sim)
            await gw.place(RUN + 1, Side.BUY, bid - FAR, LOTS)
            await gw.settled()
            assert rec.last(RUN + 1).status is OrderStatus.NEW
            assert len(entry_of(sim).open_orders()) == 1
            clock.now_ns += 7_000 * MS  # time moves only when the clock says so
            await gw.place(RUN + 1, Side.BUY, bid - FAR, LOTS)  # refused by the gateway
            await gw.settled()
            duplicate = rec.updates(RUN + 1)[-1]
            assert duplicate.reason == "duplicate order id"
            assert duplicate.ts_ns == clock.wall_ns() // MS * MS
        finally:
            await gw.close()
