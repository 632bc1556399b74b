"""The paper venue a service trades on remembers only its last PAPER_MAX_CLOSED closed
orders: a day of replay closes about 11,500, and each one kept costs about 0.6 KiB."""

from __future__ import annotations

from mmdaemon import log
from mmdaemon.config_file import load_config
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import Side
from mmdaemon.wiring import PAPER_MAX_CLOSED, make_exchange
from tests.conftest import REPO

T0 = 1_723_161_600 * 10**9


def test_service_paper_venue_forgets_all_but_its_last_closed_orders() -> None:
    config = load_config(REPO / "config" / "dryrun.toml")
    instrument = config.instrument.build()
    exchange = make_exchange(config, instrument, log.get_logger(), lambda: T0)
    venue = exchange.venue  # type: ignore[attr-defined]
    assert isinstance(venue, PaperVenue)
    closed = PAPER_MAX_CLOSED + 500
    t = T0
    for order_id in range(1, closed + 1):
        venue.place(order_id, Side.BUY, 6_000_000, 100_000, t)
        t += 10**9  # past the entry latency: the order is open
        venue.advance(t)
        venue.cancel(order_id, t)
        t += 10**9
        venue.advance(t)
    assert venue.open_orders() == []
    remembered = [i for i in range(1, closed + 1) if venue.order(i) is not None]
    assert remembered == list(range(closed - PAPER_MAX_CLOSED + 1, closed + 1))
