"""The service's parts, built from a config: the feed's settings, the exchange adapter,
the firm risk bus and the risk limits. Each builder reads the config and nothing else (and
the credentials its adapter names), so the engine and the shell take finished parts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdaemon.clock import Clock
from mmdaemon.config import Config
from mmdaemon.engine import Limits
from mmdaemon.exchange.base import ExchangeAdapter
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.exchange.latency import build_model
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.exchange.queue import make_queue_model
from mmdaemon.feed.websocket import FeedSettings
from mmdaemon.model import Instrument
from mmdaemon.risk.breakers import BreakerLimits
from mmdaemon.risk.firm import Identity
from mmdaemon.risk.rules import PreTradeLimits

if TYPE_CHECKING:  # the bus imports redis: only a daemon with [firm] enabled loads it
    from mmdaemon.risk.redis_bus import FirmBus, FirmHost


def feed_settings(config: Config) -> FeedSettings:
    """The live feed's settings from the config (streams and snapshot path by venue)."""
    feed, usdm = config.feed, config.instrument.venue == "binance-usdm"
    return FeedSettings(
        ws_url=feed.url,
        rest_url=feed.rest_url,
        symbol=config.instrument.symbol,
        streams=("depth@0ms", "trade", "bookTicker") if usdm else
        ("depth@100ms", "trade", "bookTicker"),
        depth_path="/fapi/v1/depth" if usdm else "/api/v3/depth",
        stale_after_ms=feed.stale_after_ms,
        max_connection_age_s=feed.max_connection_age_s,
        backoff_initial_s=feed.backoff_initial_ms / 1000,
        backoff_max_s=feed.backoff_max_ms / 1000,
        snapshot_timeout_s=feed.snapshot_timeout_ms / 1000,
        proxy=feed.proxy or None,
        max_message_bytes=feed.max_message_bytes,
        max_snapshot_bytes=feed.max_snapshot_bytes,
    )


def make_exchange(config: Config, instrument: Instrument, log: Any,
                  event_ns: Callable[[], int]) -> ExchangeAdapter:
    """The configured adapter: the paper exchange on the daemon's event clock
    (``event_ns``), or the Binance gateway with credentials read now (a
    :class:`~mmdaemon.exchange.credentials.CredentialsError`, a ValueError, says which
    source failed)."""
    ex = config.exchange
    if ex.adapter == "paper":
        constants = {"entry": round(ex.latency_ms * 1_000_000),
                     "response": round(ex.response_latency_ms * 1_000_000),
                     "feed": round(ex.feed_latency_ms * 1_000_000)}
        try:
            latency = build_model(constants, Path(ex.latency_file) if ex.latency_file else None,
                                  ex.latency_seed)
        except ValueError as exc:
            raise ValueError(f"exchange.latency_file: {exc}") from None
        # closed orders are kept only to answer requests that arrive after them: a short
        # memory keeps a long run's footprint flat
        venue = PaperVenue(instrument, constants["entry"], ex.maker_fee_bps, ex.taker_fee_bps,
                           max_closed=10_000, entry=PaperExchange.venue_entry(latency),
                           queue=make_queue_model(ex.queue_model, ex.queue_power),
                           fill_through=ex.fill_through, trade_through=ex.trade_through)
        return PaperExchange(venue, latency, event_ns)
    from mmdaemon.exchange.binance_gateway import BinanceGateway, GatewaySettings
    from mmdaemon.exchange.credentials import load_credentials
    from mmdaemon.venues.binance_api import Credentials

    creds = load_credentials(ex.credentials, allow_readable=ex.allow_readable_credentials)
    settings = GatewaySettings(ws_api_url=ex.ws_api_url, client_prefix=ex.client_id_prefix,
                               recv_window_ms=ex.recv_window_ms,
                               request_timeout_s=ex.request_timeout_ms / 1000,
                               proxy=config.feed.proxy or None,
                               max_message_bytes=ex.max_message_bytes)
    return BinanceGateway(settings, instrument, Credentials(creds.api_key, creds.secret), log)


def make_firm_bus(config: Config, host: FirmHost, clock: Clock, log: Any) -> FirmBus | None:
    """The firm risk bus when ``[firm]`` is enabled, else None. The Redis password is read
    now (a :class:`~mmdaemon.exchange.credentials.CredentialsError` names the source)."""
    firm = config.firm
    if not firm.enabled:
        return None
    from mmdaemon.exchange.credentials import load_redis_password
    from mmdaemon.risk.redis_bus import FirmBus

    inst = config.instrument
    identity = Identity(firm.instance, firm.desk, firm.base_asset, firm.quote_asset,
                        inst.tick_size, inst.lot_size)
    password = load_redis_password(firm.password, allow_readable=firm.allow_readable_password)
    return FirmBus(firm, identity, host, clock, log, password)


def pretrade_limits(config: Config) -> PreTradeLimits:
    """The pre-trade limits of ``config.risk``."""
    risk = config.risk
    return PreTradeLimits(max_order_lots=risk.max_order_lots, price_band_bps=risk.price_band_bps,
                          max_open_orders=risk.max_open_orders,
                          max_orders_per_s=risk.max_orders_per_s, burst=risk.order_burst)


def breaker_limits(config: Config, instrument: Instrument) -> BreakerLimits:
    """The breakers' limits of ``config.risk``, money in notional units."""
    risk = config.risk
    return BreakerLimits(
        inventory_soft_lots=risk.inventory_soft_lots,
        inventory_hard_lots=risk.inventory_hard_lots,
        max_loss_units=config.money_units(risk.max_loss, instrument),
        max_drawdown_units=config.money_units(risk.max_drawdown, instrument),
        stale_feed_ns=risk.stale_feed_ms * 1_000_000,
        reject_burst=risk.reject_burst,
        reject_window_ns=risk.reject_window_ms * 1_000_000)


def limits(config: Config, instrument: Instrument) -> Limits:
    """The engine's risk limits (pre-trade checks and breakers) from ``config.risk``."""
    return Limits(pretrade_limits(config), breaker_limits(config, instrument))
