"""The service's parts, built from a config: the feed's settings, the exchange adapter,
the firm risk bus and the risk limits. Each builder reads the config and nothing else (and
the credentials its adapter names), so the engine and the shell take finished parts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdaemon.clock import Clock
from mmdaemon.config import Config, ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.engine_ports import Limits
from mmdaemon.exchange.base import ExchangeAdapter
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.exchange.latency_file import build_model
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.exchange.queue import make_queue_model
from mmdaemon.feed.event_cache import EventCache, replay_items
from mmdaemon.feed.lobster import read_lobster
from mmdaemon.feed.replay import ReplaySource, paced
from mmdaemon.feed.websocket import FeedSettings
from mmdaemon.feed_task import FeedItem
from mmdaemon.market import Decoded, MarketState, NoCodec, Reporter
from mmdaemon.model import Instrument, Malformed
from mmdaemon.pace import ReplayClock
from mmdaemon.risk.breakers import BreakerLimits
from mmdaemon.risk.firm import Identity
from mmdaemon.risk.rules import PreTradeLimits
from mmdaemon.strategy.api import Strategy
from mmdaemon.strategy_loader import load_strategy
from mmdaemon.venues.binance import BinanceCodec, Market, frame_event_ns

if TYPE_CHECKING:  # the bus imports redis: only a daemon with [firm] enabled loads it
    from mmdaemon.risk.redis_bus import FirmBus, FirmHost

# config sections a SIGHUP cannot change: they shape connections, files and the book itself
RESTART_SECTIONS = ("instrument", "feed", "exchange", "state", "metrics", "logging", "firm",
                    "reference")


PAPER_MAX_CLOSED = 1_000
"""Closed orders the paper venue of a service remembers (see :class:`PaperVenue`)."""


def feed_settings(config: Config) -> FeedSettings:
    """The live feed's settings from the config (streams and snapshot path by venue)."""
    return _feed_settings(config, config.instrument.venue, config.feed.url,
                          config.feed.rest_url, config.instrument.symbol)


def reference_feed_settings(config: Config) -> FeedSettings | None:
    """The reference venue's live feed (``[reference]``), None without one: its venue's
    streams and snapshot path at its own URLs; how a connection is kept (silence, backoff,
    timeouts, size limits, proxy) is ``[feed]``'s, as for the traded feed. The reference's
    ``stale_ms`` is not the connection's: it is how old its book may be to price on."""
    ref = config.reference
    if ref is None:
        return None
    return _feed_settings(config, ref.venue, ref.url, ref.rest_url, ref.symbol)


# Binance USD-M's routes since 2026-04-23 (the legacy /stream serves none of these): the
# high-frequency streams only under /public, the other market data under /market
USDM_ROUTES = (("/public", ("depth@0ms", "bookTicker")), ("/market", ("trade",)))


def _feed_settings(config: Config, venue: str, url: str, rest_url: str,
                   symbol: str) -> FeedSettings:
    feed, usdm = config.feed, venue == "binance-usdm"
    return FeedSettings(
        ws_url=url,
        rest_url=rest_url,
        symbol=symbol,
        streams=("depth@0ms", "trade", "bookTicker") if usdm else
        ("depth@100ms", "trade", "bookTicker"),
        routes=USDM_ROUTES if usdm else (),
        depth_path="/fapi/v1/depth" if usdm else "/api/v3/depth",
        stale_after_ms=feed.stale_after_ms,
        max_connection_age_s=feed.max_connection_age_s,
        backoff_initial_s=feed.backoff_initial_ms / 1000,
        backoff_max_s=feed.backoff_max_ms / 1000,
        snapshot_timeout_s=feed.snapshot_timeout_ms / 1000,
        proxy=feed.proxy or None,
        max_message_bytes=feed.max_message_bytes,
        max_snapshot_bytes=feed.max_snapshot_bytes,
        kernel_timestamps=feed.kernel_timestamps,
    )


def make_exchange(config: Config, instrument: Instrument, log: Any,
                  event_ns: Callable[[], int], clock: Clock | None = None) -> ExchangeAdapter:
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
        # memory keeps a long run's footprint flat (10,000, about 0.6 KiB each, took 21 h
        # of the day benchmark to fill, its RSS growing 15 % on the way; 1,000 are the
        # last two hours there, and 50 s at config/dryrun.toml's max_orders_per_s of 20)
        venue = PaperVenue(instrument, constants["entry"], ex.maker_fee_bps, ex.taker_fee_bps,
                           max_closed=PAPER_MAX_CLOSED, entry=PaperExchange.venue_entry(latency),
                           queue=make_queue_model(ex.queue_model, ex.queue_power),
                           fill_through=ex.fill_through, trade_through=ex.trade_through)
        return PaperExchange(venue, latency, event_ns)
    from mmdaemon.exchange.binance_gateway import BinanceGateway, GatewaySettings
    from mmdaemon.exchange.credentials import load_credentials
    from mmdaemon.exchange.usdm_gateway import UsdmGateway, UsdmSettings
    from mmdaemon.venues.binance_api import Credentials
    from mmdaemon.venues.usdm_api import DEFAULT_REST_URL, DEFAULT_USER_STREAM_URL

    creds = load_credentials(ex.credentials, allow_readable=ex.allow_readable_credentials)
    common: dict[str, Any] = dict(
        ws_api_url=ex.ws_api_url, client_prefix=ex.client_id_prefix,
        recv_window_ms=ex.recv_window_ms, request_timeout_s=ex.request_timeout_ms / 1000,
        proxy=config.feed.proxy or None, max_message_bytes=ex.max_message_bytes)
    api_creds = Credentials(creds.api_key, creds.secret)
    if config.instrument.venue == "binance-usdm":
        usdm = UsdmSettings(rest_url=ex.rest_url or DEFAULT_REST_URL,
                            user_stream_url=ex.user_stream_url or DEFAULT_USER_STREAM_URL,
                            **common)
        return UsdmGateway(usdm, instrument, api_creds, log, clock=clock)
    return BinanceGateway(GatewaySettings(**common), instrument, api_creds, log, clock=clock)


def make_firm_bus(config: Config, host: FirmHost, clock: Clock, log: Any) -> FirmBus | None:
    """The firm risk bus when ``[firm]`` is enabled, else None. The Redis password is read
    now (a :class:`~mmdaemon.exchange.credentials.CredentialsError` names the source)."""
    firm = config.firm
    if not firm.enabled:
        return None
    from mmdaemon.exchange.credentials import load_redis_password
    from mmdaemon.risk.redis_bus import FirmBus

    inst = config.instrument.build()  # the venue's grids filled in (mmdaemon.venue_rules)
    identity = Identity(firm.instance, firm.desk, firm.base_asset, firm.quote_asset,
                        f"{inst.tick_size:f}", f"{inst.lot_size:f}")
    password = load_redis_password(firm.password, allow_readable=firm.allow_readable_password)
    return FirmBus(firm, identity, host, clock, log, password)


def pretrade_limits(config: Config) -> PreTradeLimits:
    """The pre-trade limits of ``config.risk``."""
    risk = config.risk
    return PreTradeLimits(max_order_lots=risk.max_order_lots, price_band_bps=risk.price_band_bps,
                          max_open_orders=risk.max_open_orders,
                          max_orders_per_s=risk.max_orders_per_s, burst=risk.order_burst,
                          max_side_open_lots=risk.max_side_open_lots,
                          inventory_hard_lots=risk.inventory_hard_lots)


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


def make_market(config: Config, instrument: Instrument, report: Reporter) -> MarketState:
    """The book and the codec of the configured venue (a LOBSTER replay brings its rows
    decoded); ``report`` hears of gaps, crossed books and malformed frames."""
    depth = config.strategy.fair_value.depth_levels  # levels per side read every quote
    venue = config.instrument.venue
    if venue == "lobster":
        return MarketState(NoCodec(), report, depth)
    kind: Market = "usdm" if venue == "binance-usdm" else "spot"
    return MarketState(BinanceCodec(instrument, kind), report, depth)


def _decoded_ns(item: Decoded) -> int:
    return item.recv_ns


def _cached_ns(item: Decoded | Malformed) -> int | None:
    return item.recv_ns if type(item) is Decoded else None  # a bad line is not timed


def recorded_batches(config: Config, instrument: Instrument, recordings: list[str],
                     speed: float | None, clock: Clock, event_clock: ReplayClock,
                     reference: Sequence[str] = (), events: EventCache | None = None
                     ) -> AsyncIterator[Sequence[FeedItem]]:
    """A dry run's feed: recorded frames (or LOBSTER rows, decoded), paced at ``speed``
    (None: as fast as taken) on ``clock``, timed by ``event_clock``; the ``reference``
    feed's recordings merged in by the same clock. ``events``: the recordings' decoded-event
    cache (:mod:`mmdaemon.feed.event_cache`), checked for them, read instead."""
    if events is not None:
        return paced(replay_items(events), _cached_ns, speed, clock)
    if config.instrument.venue == "lobster":  # two files: MESSAGE_CSV ORDERBOOK_CSV
        message, orderbook = recordings
        rows = (Decoded(e.recv_ns, [e]) for e in read_lobster(message, orderbook, instrument))
        return paced(rows, _decoded_ns, speed, clock)
    event_ns = frame_event_ns if event_clock == "exchange" else None
    source = ReplaySource(recordings, speed, clock, event_ns)
    return source.merged_batches(reference) if reference else source.batches()


def reload_parts(path: Path | None, running: Config, instrument: Instrument, book_depth: int,
                 log: Any) -> tuple[Config, Strategy, Limits] | None:
    """SIGHUP: the config file's new parameters, and what the engine builds from them, if
    they can be swapped in now; else None, the reason logged. An invalid file, a change that
    needs a restart (:data:`RESTART_SECTIONS`, the markout horizons) or a fair value deeper
    than the ``book_depth`` levels the book keeps sorted is refused."""
    if path is None:
        log.warning("reload_refused", reason="no config file to reload from")
        return None
    try:
        new = load_config(path)
    except (ConfigError, ValueError) as exc:
        log.error("reload_failed", error=str(exc), kept="the running parameters")
        return None
    # the grids the file leaves out are the venue's, read at start (mmdaemon.venue_rules)
    new = replace(new, instrument=new.instrument.left_out_from(running.instrument))
    fixed = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(running, name)]
    if (new.plugin.name, new.plugin.path) != (running.plugin.name, running.plugin.path):
        fixed.append("strategy.class")  # a module once imported is not imported again
    if new.report.markout_horizons_s != running.report.markout_horizons_s:
        fixed.append("report.markout_horizons_s")  # the markouts pending keep theirs
    if fixed:
        log.warning("reload_refused", sections=fixed, reason="needs a restart")
        return None
    depth = new.strategy.fair_value.depth_levels
    if depth > book_depth:  # the book was sized for the old depth
        log.warning("reload_refused", sections=["strategy"],
                    reason=f"fair_value.depth_levels {depth} is more than the {book_depth} "
                           "levels the book keeps sorted: needs a restart")
        return None
    try:  # built last: a strategy needing a restart is not imported into the running one
        strategy = load_strategy(new, instrument, log)
        risk_limits = limits(new, instrument)
    except (ConfigError, ValueError) as exc:
        log.error("reload_failed", error=str(exc), kept="the running parameters")
        return None
    return new, strategy, risk_limits
