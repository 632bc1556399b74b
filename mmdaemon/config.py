"""Typed configuration from TOML, validated at start.

Every section is a frozen dataclass; :func:`parse_config` builds them from the file's text
(read by :func:`mmdaemon.config_file.load_config`) with
type checks, rejects unknown keys, and turns every problem into a :class:`ConfigError`
whose message names the key and the expected form, e.g.
``risk.max_loss: expected a non-negative decimal (quote currency), got '-5'``.
Relative paths are resolved against the config file's directory, by the loader.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from mmdaemon.config_exchange import (
    ExchangeConfig,
    check_exchange_urls,
    check_market_data_url,
    check_venue_urls,
)
from mmdaemon.exchange.queue import POWER_MAX
from mmdaemon.instrument_config import InstrumentConfig
from mmdaemon.markouts import DEFAULT_HORIZONS_S, horizons_ns
from mmdaemon.model import MAX_FRAME_BYTES, Instrument
from mmdaemon.pace import ReplayClock, parse_speed
from mmdaemon.quoting.fair_value import NOT_A_CONFIG_KEY
from mmdaemon.quoting.quoter import QuoterParams
from mmdaemon.venues.binance_parse import assets_of

VENUES = ("binance-spot", "binance-usdm")
"""The Binance venues whose recordings the codec reads (``verify-book --venue``)."""
SUPPORTED_ADAPTERS: dict[str, tuple[str, ...]] = {
    "binance-spot": ("paper", "binance"),
    "binance-usdm": ("paper", "binance"),
    "lobster": ("paper",),  # a NASDAQ sample replayed, never traded
}
"""The ``exchange.adapter`` each ``instrument.venue`` can trade through: anything else
would send another venue's requests (a USD-M config on the spot order entry)."""
# exchange.stop_timeout_ms: below 3 s the closes (1 s each at worst) leave the final cancel-all
# next to nothing; above 10 min a stop outlasts any service manager's patience
STOP_TIMEOUT_MIN_MS = 3_000
STOP_TIMEOUT_MAX_MS = 600_000


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the key."""


MIN_MESSAGE_BYTES = 1 << 16
"""The smallest message or body limit a config may set (bytes): near the venue's
legitimate frames (34.6 KB depth diffs are real) connections would be refused for nothing."""
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES
"""The largest (64 MiB): beyond it a limit no longer protects the process, and it is the
longest frame a recording line may hold, so whatever the feed accepts replays."""


@dataclass(frozen=True)
class FeedConfig:
    """Where frames come from: recordings (replayed at ``speed``) or the venue's websocket
    streams at ``url`` with REST snapshots from ``rest_url`` (base URLs).

    ``clock`` is the time a replay runs on: ``receive``, the recorded receive times, or
    ``exchange``, the venue's event times in the frames (see :mod:`mmdaemon.feed.replay`);
    a live feed runs on receive time.

    ``max_message_bytes`` bounds one websocket message and ``max_snapshot_bytes`` one REST
    depth snapshot body, in bytes, before either is parsed (see
    :mod:`mmdaemon.feed.websocket`). Defaults from the real recordings: the largest diff
    depth frame is 34,571 bytes (spot, 1,076 levels) and 25,927 (USD-M, 1,226 levels), so
    1 MiB is 30x that; a spot snapshot of 1,000 levels per side is 64,046 bytes (32 bytes a
    level), so the venue's largest, ``limit=5000`` (10,000 levels), is ~320 KB (~400 KB
    with the widest prices and sizes) and 4 MiB is 10x that (USD-M's largest, 1,000
    levels, is 42,092 bytes).
    """

    recordings: tuple[str, ...] = ()
    speed: str = "max"
    clock: ReplayClock = "receive"
    url: str = ""
    rest_url: str = ""
    stale_after_ms: int = 5000
    max_connection_age_s: float = 84_600.0  # 23.5 h: before the venue's 24 h cut
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 30_000
    snapshot_timeout_ms: int = 10_000  # a REST depth snapshot not answered by then failed
    max_lag_ms: int = 1000  # live frames waiting longer to be processed: shed the backlog
    proxy: str = ""  # empty: connect directly, whatever the environment says
    max_message_bytes: int = 1 << 20  # 1 MiB: a larger websocket message is refused
    max_snapshot_bytes: int = 4 << 20  # 4 MiB: a larger REST depth snapshot is refused
    # plain ws:// feeds read with the kernel's receive stamps (wss:// never are)
    kernel_timestamps: bool = True
    # the event loop never sleeps: frames are read and handled warm, at the cost of a core
    busy_poll: bool = False

    def speed_factor(self) -> float | None:
        return parse_speed(self.speed)


@dataclass(frozen=True)
class OrdersConfig:
    """Order manager tolerances: leave an order alone unless the quote moved this much."""

    price_tolerance_ticks: int = 1
    size_tolerance_lots: int = 1


@dataclass(frozen=True)
class RiskConfig:
    """Pre-trade limits and breakers. Sizes in lots, money in quote currency, times in ms."""

    max_order_lots: int
    price_band_bps: float
    inventory_soft_lots: int
    inventory_hard_lots: int
    max_loss: str
    max_drawdown: str
    max_open_orders: int = 2
    # lots open on one side summed over its levels (0: only inventory_hard_lots bounds it)
    max_side_open_lots: int = 0
    max_orders_per_s: float = 20.0
    order_burst: int = 10
    stale_feed_ms: int = 2000
    reject_burst: int = 5
    reject_window_ms: int = 10_000
    supervisor_interval_ms: int = 100


@dataclass(frozen=True)
class StateConfig:
    """State directory (journal, pid file); ``durable`` fsyncs every fill."""

    dir: str
    durable: bool = False


@dataclass(frozen=True)
class ReportConfig:
    """Report data: how often (event time, ms) the market and our quote are sampled, the
    widest spread (bps of mid) that still counts as quoting for the uptime metric, and the
    horizons (s after each fill) its exact markouts are measured at (:mod:`mmdaemon.markouts`;
    read at start: a reload that changes them is refused)."""

    sample_ms: int = 250
    max_spread_bps: float = 10.0
    markout_horizons_s: tuple[float, ...] = DEFAULT_HORIZONS_S


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus endpoint ``GET /metrics``; ``port`` 0 turns it off. Loopback only unless
    ``allow_non_loopback`` says otherwise (put a proxy with TLS in front for that)."""

    port: int = 0
    host: str = "127.0.0.1"
    allow_non_loopback: bool = False


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class AssetLimitConfig:
    """A firm limit on one base asset: the desk's gross notional (sum of every instance's
    |position| x mark), quote currency; ``action`` when reached."""

    asset: str
    max_notional: str
    action: Literal["reduce", "kill"] = "reduce"


@dataclass(frozen=True)
class FirmConfig:
    """Firm-wide risk over Redis (off unless ``enabled``); see ``deploy/redis.md``.

    ``redis_url``: ``redis://host:port/db`` or ``rediss://`` (TLS, verified against the
    system CAs or ``tls_ca_file``); never with a password in it. ``password``: where the
    password is, never the password: ``""`` none, ``"env"`` the variable
    ``MMDAEMON_REDIS_PASSWORD``, else a file holding ``password = "..."``, named like
    ``exchange.credentials`` (a systemd credential name, or a path relative to the config
    file's directory) and refused like it when others can get at it, unless
    ``allow_readable_password``; ``username`` for Redis ACLs.
    Keys live under ``{namespace}:{{desk}}:``. Times in ms: a heartbeat every
    ``heartbeat_ms`` (and on every fill) that expires after ``ttl_ms``; every Redis round
    trip is abandoned after ``timeout_ms``; Redis unreachable for longer than ``grace_ms``
    -> HALTED (``on_redis_lost = "halt"``, resumes when it returns) or KILLED (``"kill"``).
    Limits: ``asset_limits`` per base asset; the desk's loss and drawdown from its peak in
    ``quote_asset`` (``""`` = no limit), each with its action, ``"reduce"`` or ``"kill"``.
    """

    enabled: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    username: str = ""
    password: str = ""
    allow_readable_password: bool = False
    tls_ca_file: str = ""
    namespace: str = "mmdaemon"
    desk: str = ""
    instance: str = ""
    base_asset: str = ""
    quote_asset: str = ""
    heartbeat_ms: int = 500
    ttl_ms: int = 3000
    timeout_ms: int = 1000
    grace_ms: int = 3000
    on_redis_lost: Literal["halt", "kill"] = "halt"
    asset_limits: tuple[AssetLimitConfig, ...] = ()
    desk_max_loss: str = ""
    desk_max_loss_action: Literal["reduce", "kill"] = "kill"
    desk_max_drawdown: str = ""
    desk_max_drawdown_action: Literal["reduce", "kill"] = "kill"


PLUGIN_KEYS = ("class", "params", "path", "error_hold_ms")
"""The ``[strategy]`` keys that choose the strategy; its sub-tables configure the built-ins."""
BUILTIN_STRATEGIES = ("composition", "avellaneda_stoikov", "glft")
"""Built-in strategy names (:mod:`mmdaemon.strategy.builtin`); the last two fix the skew mode."""


@dataclass(frozen=True)
class PluginConfig:
    """Which strategy quotes (``[strategy]`` keys ``class``, ``params``, ``path``,
    ``error_hold_ms``).

    ``name``: a built-in (:data:`BUILTIN_STRATEGIES`), ``"package.module:Class"``, or a name
    registered in the ``mmdaemon.strategies`` entry-point group. ``params``: the
    ``[strategy.params]`` table, handed to the class as it is. ``path``: directories put in
    front of the import path to find the module (relative to the config file).
    ``error_hold_ms``: after the strategy raised, quotes stay pulled (HALTED) until it has
    answered well again this long after its last failure (ms of event time).
    """

    name: str = "composition"
    params: dict[str, Any] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    error_hold_ms: int = 5000

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_STRATEGIES


@dataclass(frozen=True)
class ReferenceConfig:
    """A second, read-only market-data feed whose price leads the traded one (the USD-M
    perpetual for spot): :mod:`mmdaemon.reference`.

    ``venue``, ``symbol``, ``tick_size`` and ``lot_size`` describe the reference instrument
    (its own grids, decimal strings: they may differ from the traded one's). ``recordings``
    (paths, relative to the config file) are its frames for a replay, merged with
    ``feed.recordings`` by receive time; ``url`` and ``rest_url`` its websocket streams and
    REST snapshots live (base URLs, as in ``[feed]``). ``stale_ms``: receive time (ms) without
    a reference book update after which the reference is stale; ``on_stale``: what a stale or
    out-of-sync reference does, ``"fallback"`` (quote on the local fair value) or ``"halt"``
    (HALTED ``reference_stale`` until it is fresh again). ``basis_halflife_s``: half-life (s
    of event time) of the EWMA of the basis, traded minus reference price.
    """

    venue: Literal["binance-spot", "binance-usdm"]
    symbol: str
    tick_size: str
    lot_size: str
    recordings: tuple[str, ...] = ()
    url: str = ""
    rest_url: str = ""
    stale_ms: int = 1000
    on_stale: Literal["fallback", "halt"] = "fallback"
    basis_halflife_s: float = 30.0

    def build(self) -> Instrument:
        """The reference instrument (its grids; it is never traded)."""
        return Instrument(self.symbol, self.tick_size, self.lot_size)


@dataclass(frozen=True)
class Config:
    instrument: InstrumentConfig
    feed: FeedConfig
    risk: RiskConfig
    state: StateConfig
    strategy: QuoterParams = field(default_factory=QuoterParams)
    plugin: PluginConfig = field(default_factory=PluginConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    firm: FirmConfig = field(default_factory=FirmConfig)
    reference: ReferenceConfig | None = None  # None: no [reference] section

    def money_units(self, amount: str, instrument: Instrument) -> Fraction:
        """Quote-currency ``amount`` in notional units (ticks x lots), exactly."""
        return Fraction(Decimal(amount)) / (
            Fraction(instrument.tick_size) * Fraction(instrument.lot_size)
        )


def parse_config(text: str, path: Path) -> Config:
    """Validate the TOML ``text`` of the config file ``path`` (named in messages). Raises
    :class:`ConfigError` naming the bad key. Reading the file, and making its relative paths
    absolute, is :func:`mmdaemon.config_file.load_config`'s."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_table(raw)


def config_from_table(raw: dict[str, Any]) -> Config:
    """Validate a config file's parsed TOML ``raw`` (consumed: the caller passes a copy it
    no longer needs); a sweep builds each run's config this way from the base file's table
    with the run's keys set. Raises :class:`ConfigError` naming the bad key."""
    plugin = _plugin(raw)
    config = dataclasses.replace(_build(Config, raw, ""), plugin=plugin)
    _check(config)
    return _share_maker_fee(config, raw)


def _plugin(raw: dict[str, Any]) -> PluginConfig:
    """Take the strategy-choosing keys out of ``raw["strategy"]`` (the rest configures the
    built-ins) and check them; a built-in that fixes a skew mode sets it."""
    table = raw.get("strategy")
    if not isinstance(table, dict):
        return PluginConfig()
    taken = {key: table.pop(key) for key in PLUGIN_KEYS if key in table}
    name = taken.get("class", "composition")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"strategy.class: expected a built-in "
                          f"({', '.join(BUILTIN_STRATEGIES)}), 'package.module:Class' or a "
                          f"registered strategy name, got {_show(name)}")
    if ":" not in name and not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ConfigError(f"strategy.class: expected a built-in "
                          f"({', '.join(BUILTIN_STRATEGIES)}), 'package.module:Class' or a "
                          f"registered strategy name, got {name!r}")
    if ":" in name:
        module, _, attr = name.partition(":")
        if not all(part.isidentifier() for part in module.split(".")) or not attr.isidentifier():
            raise ConfigError(f"strategy.class: expected 'package.module:Class' (Python names), "
                              f"got {name!r}")
    params = taken.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"strategy.params: expected a table (the strategy's own "
                          f"parameters), got {_show(params)}")
    if params and name in BUILTIN_STRATEGIES:
        raise ConfigError(f"strategy.params: the built-in {name!r} takes its parameters from "
                          f"the [strategy.*] tables, not strategy.params")
    path = _convert(tuple[str, ...], taken.get("path", []), "strategy.path")
    hold = _convert(int, taken.get("error_hold_ms", 5000), "strategy.error_hold_ms")
    if hold < 0:
        raise ConfigError(f"strategy.error_hold_ms: expected an integer >= 0 (ms), got {hold}")
    skew = BUILTIN_SKEW_MODE.get(name)
    if skew is not None:
        stated = table.setdefault("skew", {})
        if isinstance(stated, dict):
            if stated.get("mode", skew) != skew:
                raise ConfigError(f"strategy.skew.mode: the built-in {name!r} quotes with "
                                  f"mode {skew!r}, got {stated['mode']!r}; leave it out")
            stated["mode"] = skew
    return PluginConfig(name, params, path, hold)


BUILTIN_SKEW_MODE = {"avellaneda_stoikov": "avellaneda_stoikov", "glft": "glft"}
"""The built-in strategies that fix the skew model, and to what."""


def _share_maker_fee(config: Config, raw: dict[str, Any]) -> Config:
    """The spread covers the fee the exchange charges: one number, stated once.

    ``strategy.spread.maker_fee_bps`` defaults to ``exchange.maker_fee_bps``; when both are
    given they must agree, or the quotes would be priced for a fee we do not pay.
    """
    fee = float(Decimal(config.exchange.maker_fee_bps))
    stated = raw.get("strategy", {}).get("spread", {}).get("maker_fee_bps")
    if stated is None:
        spread = dataclasses.replace(config.strategy.spread, maker_fee_bps=fee)
        return dataclasses.replace(
            config, strategy=dataclasses.replace(config.strategy, spread=spread)
        )
    if config.strategy.spread.maker_fee_bps != fee:
        raise ConfigError(
            f"strategy.spread.maker_fee_bps: expected the same as exchange.maker_fee_bps "
            f"({config.exchange.maker_fee_bps}), got {stated!r}; leave it out to share it"
        )
    return config


def _check(config: Config) -> None:
    """Cross-field rules the per-field types cannot express."""
    feed, risk = config.feed, config.risk
    venue, adapter = config.instrument.venue, config.exchange.adapter
    if adapter not in SUPPORTED_ADAPTERS[venue]:
        supported = "; ".join(f"{v}: {' or '.join(a)}" for v, a in SUPPORTED_ADAPTERS.items())
        raise ConfigError(f"exchange.adapter: {adapter!r} cannot trade instrument.venue "
                          f"{venue!r} (not implemented); the supported venue and adapter "
                          f"combinations are {supported}")
    symbol = config.instrument.symbol
    if venue != "lobster" and not re.fullmatch(r"[A-Z0-9]+(_[0-9]+)?", symbol):
        # another spelling matches no frame and no exchangeInfo entry of the venue
        raise ConfigError(f"instrument.symbol: expected Binance's name of the symbol, "
                          f"upper-case letters and digits such as 'BTCUSDT', got {symbol!r}")
    if not feed.recordings and not feed.url and venue != "lobster":
        raise ConfigError("feed: expected 'recordings' (list of paths) or 'url' (websocket URL)")
    if feed.url and not feed.recordings:
        if not feed.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"feed.url: expected a ws:// or wss:// URL, got {feed.url!r}")
        if not feed.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"feed.rest_url: expected an http(s):// URL for depth snapshots, "
                              f"got {feed.rest_url!r}")
    if feed.clock == "exchange" and not feed.recordings:
        raise ConfigError("feed.clock: expected 'receive' for a live feed (no feed.recordings): "
                          "'exchange' times recorded frames by the venue's event times")
    try:
        parse_speed(feed.speed)
    except ValueError as exc:
        raise ConfigError(f"feed.speed: {exc}") from None
    inst = config.instrument
    _decimal(inst.min_notional or "0", "instrument.min_notional",
             "a non-negative decimal (quote currency)")
    for key in ("tick_size", "lot_size"):  # one left out is the venue's (instrument_config)
        if getattr(inst, key) is not None:
            _positive_decimal(getattr(inst, key), f"instrument.{key}", "a positive decimal")
    for key in ("size_step_lots", "min_size_lots"):
        if getattr(inst, key) is not None and getattr(inst, key) < 1:
            raise ConfigError(f"instrument.{key}: expected an integer >= 1 (lots), got "
                              f"{getattr(inst, key)}")
    try:
        if inst.tick_size is not None and inst.lot_size is not None:
            inst.build()
    except ValueError as exc:
        raise ConfigError(f"instrument: {exc}") from None
    for key in ("max_loss", "max_drawdown"):
        # 0 would trip at the first check: a limit that can never be met is a typo
        if _decimal(getattr(risk, key), f"risk.{key}", "a positive decimal (quote currency)") == 0:
            raise ConfigError(f"risk.{key}: expected a positive decimal (quote currency), got 0")
    if config.strategy.sizing.base_size_lots > risk.max_order_lots:
        raise ConfigError(
            "strategy.sizing.base_size_lots: expected <= risk.max_order_lots, or every order "
            "would be blocked"
        )
    for key in ("maker_fee_bps", "taker_fee_bps"):
        fee = _decimal(getattr(config.exchange, key), f"exchange.{key}",
                       "a decimal number of bps within +-10000", allow_negative=True)
        if abs(fee) > 10_000:
            raise ConfigError(f"exchange.{key}: expected a decimal number of bps within "
                              f"+-10000, got {fee}")
    positive = {
        "risk.max_order_lots": risk.max_order_lots,
        "risk.price_band_bps": risk.price_band_bps,
        "risk.inventory_soft_lots": risk.inventory_soft_lots,
        "risk.inventory_hard_lots": risk.inventory_hard_lots,
        "risk.max_open_orders": risk.max_open_orders,
        "risk.max_orders_per_s": risk.max_orders_per_s,
        "risk.order_burst": risk.order_burst,
        "risk.stale_feed_ms": risk.stale_feed_ms,
        "risk.reject_burst": risk.reject_burst,
        "risk.reject_window_ms": risk.reject_window_ms,
        "risk.supervisor_interval_ms": risk.supervisor_interval_ms,
        "orders.price_tolerance_ticks": config.orders.price_tolerance_ticks,
        "orders.size_tolerance_lots": config.orders.size_tolerance_lots,
        "feed.stale_after_ms": feed.stale_after_ms,
        "report.sample_ms": config.report.sample_ms,
        "report.max_spread_bps": config.report.max_spread_bps,
        "feed.max_connection_age_s": feed.max_connection_age_s,
        "feed.backoff_initial_ms": feed.backoff_initial_ms,
        "feed.backoff_max_ms": feed.backoff_max_ms,
        "feed.snapshot_timeout_ms": feed.snapshot_timeout_ms,
        "feed.max_lag_ms": feed.max_lag_ms,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    if risk.supervisor_interval_ms > risk.stale_feed_ms:
        raise ConfigError(f"risk.supervisor_interval_ms: expected at most risk.stale_feed_ms "
                          f"({risk.stale_feed_ms}), got {risk.supervisor_interval_ms}: the "
                          f"breakers are checked this often, a silent feed would outlive its "
                          f"limit")
    try:
        horizons_ns(config.report.markout_horizons_s)
    except ValueError as exc:
        raise ConfigError(f"report.markout_horizons_s: {exc}") from None
    for key, value in (("feed.max_message_bytes", feed.max_message_bytes),
                       ("feed.max_snapshot_bytes", feed.max_snapshot_bytes),
                       ("exchange.max_message_bytes", config.exchange.max_message_bytes)):
        if not MIN_MESSAGE_BYTES <= value <= MAX_MESSAGE_BYTES:
            raise ConfigError(f"{key}: expected a size in bytes from {MIN_MESSAGE_BYTES} "
                              f"(64 KiB) to {MAX_MESSAGE_BYTES} (64 MiB), got {value!r}")
    exchange = config.exchange
    try:
        check_exchange_urls(exchange)
        check_venue_urls(config.instrument.venue, exchange,
                         {"feed.url": feed.url, "feed.rest_url": feed.rest_url})
        check_market_data_url(config.instrument.venue, "feed.url", feed.url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    prefix = exchange.client_id_prefix
    if not (1 <= len(prefix) <= 19 and prefix.isascii() and prefix.isalnum()):
        raise ConfigError(f"exchange.client_id_prefix: expected 1-19 letters or digits, "
                          f"got {prefix!r}")
    for key in ("recv_window_ms", "request_timeout_ms"):
        if not 0 < getattr(exchange, key) <= 60_000:
            raise ConfigError(f"exchange.{key}: expected 1..60000 ms, got {getattr(exchange, key)}")
    if not STOP_TIMEOUT_MIN_MS <= exchange.stop_timeout_ms <= STOP_TIMEOUT_MAX_MS:
        raise ConfigError(
            f"exchange.stop_timeout_ms: expected {STOP_TIMEOUT_MIN_MS}..{STOP_TIMEOUT_MAX_MS} ms "
            f"(the connections' closes take up to 2 s of it; keep the unit's TimeoutStopSec "
            f"above it), got {exchange.stop_timeout_ms}")
    metrics = config.metrics
    if not 0 <= metrics.port <= 65535:
        raise ConfigError(f"metrics.port: expected 0 (off) or 1..65535, got {metrics.port}")
    from mmdaemon.hosts import check_host

    try:
        check_host(metrics.host, metrics.allow_non_loopback)
    except ValueError as exc:
        raise ConfigError(f"metrics.host: {exc}") from None
    if not 1 <= exchange.queue_power <= POWER_MAX:
        raise ConfigError(f"exchange.queue_power: expected an integer from 1 to {POWER_MAX} "
                          f"(the n of f(x) = x**n), got {exchange.queue_power}")
    for key in ("latency_ms", "response_latency_ms", "feed_latency_ms"):
        value = getattr(config.exchange, key)
        if not 0 <= value <= 60_000:  # NaN fails too
            raise ConfigError(f"exchange.{key}: expected 0..60000 ms, got {value}")
    if risk.inventory_soft_lots > risk.inventory_hard_lots:
        raise ConfigError("risk.inventory_soft_lots: expected <= risk.inventory_hard_lots")
    levels = config.strategy.ladder.levels
    # every level is an open order (one level a side: check-config warns, as it always has)
    if levels > 1 and risk.max_open_orders < 2 * levels:
        raise ConfigError(f"strategy.ladder.levels: {levels} levels a side need {2 * levels} "
                          f"open orders, above risk.max_open_orders {risk.max_open_orders}: "
                          f"raise risk.max_open_orders to at least {2 * levels} or lower "
                          f"strategy.ladder.levels")
    if risk.max_side_open_lots < 0:
        raise ConfigError(f"risk.max_side_open_lots: expected 0 (no limit) or a positive "
                          f"number of lots, got {risk.max_side_open_lots}")
    if config.firm.enabled:
        _check_firm(config.firm)
        _check_firm_assets(config)
    _check_reference(config)


def _check_reference(config: Config) -> None:
    """The ``[reference]`` section, and a fair value that needs one."""
    ref = config.reference
    if ref is None:
        if config.strategy.fair_value.mode == "lead_lag":
            raise ConfigError("strategy.fair_value.mode: 'lead_lag' prices off a reference "
                              "feed: add a [reference] section (venue, symbol, tick_size, "
                              "lot_size, recordings or url)")
        return
    if config.instrument.venue == "lobster":
        raise ConfigError("reference: expected a Binance instrument to trade; a LOBSTER "
                          "replay has no receive times to merge a reference feed with")
    if not ref.recordings and not ref.url:
        raise ConfigError("reference: expected 'recordings' (list of paths) or 'url' "
                          "(websocket URL)")
    if ref.url:
        if not ref.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"reference.url: expected a ws:// or wss:// URL, got {ref.url!r}")
        if not ref.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"reference.rest_url: expected an http(s):// URL for depth "
                              f"snapshots, got {ref.rest_url!r}")
        try:
            check_market_data_url(ref.venue, "reference.url", ref.url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        ref.build()
    except (ValueError, ArithmeticError) as exc:
        raise ConfigError(f"reference: tick_size and lot_size: expected positive decimals: "
                          f"{exc}") from None
    if not 0 < ref.stale_ms <= 3_600_000:
        raise ConfigError(f"reference.stale_ms: expected 1..3600000 ms of receive time, "
                          f"got {ref.stale_ms}")
    if not 0 < ref.basis_halflife_s <= 86_400:
        raise ConfigError(f"reference.basis_halflife_s: expected a half-life in seconds, "
                          f"above 0 and at most 86400, got {ref.basis_halflife_s}")


_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ASSET_RE = re.compile(r"[A-Za-z0-9]{1,20}")


def _check_firm_assets(config: Config) -> None:
    """``firm.base_asset`` and ``quote_asset`` are the instrument's own, where its symbol
    names them: the heartbeats publish the position in base_asset and money in quote_asset
    as they are, so an ETHBTC instance saying USDT would add BTC to the desk's USDT."""
    symbol = config.instrument.symbol
    if config.instrument.venue == "lobster":
        return
    try:
        assets = assets_of(symbol)
    except ValueError:  # a quote asset not known: the config's word is all there is
        return
    for key, asset in (("base_asset", assets.base), ("quote_asset", assets.quote)):
        given = getattr(config.firm, key)
        if given.upper() != asset:
            raise ConfigError(f"firm.{key}: expected {asset!r}, the {key.split('_')[0]} "
                              f"asset of {symbol} (instrument.symbol), got {given!r}")


def _check_firm(firm: FirmConfig) -> None:
    """The ``[firm]`` section of an enabled risk bus."""
    url = urllib.parse.urlsplit(firm.redis_url)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ConfigError(f"firm.redis_url: expected redis://host:port/db or rediss://..., "
                          f"got {firm.redis_url!r}")
    if url.password is not None or url.username:
        # the URL would carry the secret into the config file and every log of it
        raise ConfigError("firm.redis_url: expected no user or password in the URL; use "
                          "firm.username and firm.password (a source, never the secret)")
    if url.query or url.fragment or "?" in firm.redis_url:
        # redis-py honours URL query options (?password=, ?username=, ...), and the URL is
        # logged: any query is refused, and the URL is not echoed (it may hold a secret)
        raise ConfigError("firm.redis_url: expected redis://host:port/db or "
                          "rediss://host:port/db with no query string or fragment; give "
                          "credentials as firm.username and firm.password (a source)")
    try:
        url.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ConfigError(f"firm.redis_url: expected a port 0..65535, got {url.netloc!r}"
                          ) from None
    if firm.tls_ca_file and url.scheme != "rediss":
        raise ConfigError("firm.tls_ca_file: expected only with a rediss:// (TLS) URL")
    for key in ("namespace", "desk", "instance"):
        if not _NAME_RE.fullmatch(getattr(firm, key)):
            raise ConfigError(f"firm.{key}: expected 1-64 letters, digits, '_', '.' or '-', "
                              f"got {getattr(firm, key)!r}")
    for key in ("base_asset", "quote_asset"):
        if not _ASSET_RE.fullmatch(getattr(firm, key)):
            raise ConfigError(f"firm.{key}: expected an asset code of 1-20 letters or "
                              f"digits (e.g. BTC, USDT), got {getattr(firm, key)!r}")
    for key in ("heartbeat_ms", "ttl_ms", "timeout_ms", "grace_ms"):
        if not 0 < getattr(firm, key) <= 3_600_000:
            raise ConfigError(f"firm.{key}: expected 1..3600000 ms, got {getattr(firm, key)}")
    if firm.ttl_ms < 2 * firm.heartbeat_ms:
        raise ConfigError(f"firm.ttl_ms: expected >= 2 x firm.heartbeat_ms "
                          f"({2 * firm.heartbeat_ms}), or one late heartbeat expires the "
                          f"instance; got {firm.ttl_ms}")
    if firm.grace_ms < firm.heartbeat_ms or firm.timeout_ms > firm.grace_ms:
        raise ConfigError(f"firm.grace_ms: expected >= firm.heartbeat_ms and >= "
                          f"firm.timeout_ms, got {firm.grace_ms}")
    seen: set[str] = set()
    for i, limit in enumerate(firm.asset_limits):
        key = f"firm.asset_limits[{i}]"
        if not _ASSET_RE.fullmatch(limit.asset):
            raise ConfigError(f"{key}.asset: expected an asset code of 1-20 letters or "
                              f"digits, got {limit.asset!r}")
        if limit.asset in seen:
            raise ConfigError(f"{key}.asset: expected one limit per asset, {limit.asset!r} "
                              f"is given twice")
        seen.add(limit.asset)
        _positive_decimal(limit.max_notional, f"{key}.max_notional")
    for key in ("desk_max_loss", "desk_max_drawdown"):
        if getattr(firm, key):
            _positive_decimal(getattr(firm, key), f"firm.{key}")


def _positive_decimal(text: str, key: str,
                      expected: str = "a positive decimal (quote currency)") -> Decimal:
    value = _decimal(text, key, expected)
    if value == 0:
        raise ConfigError(f"{key}: expected {expected}, got {text!r}")
    return value


_DECIMAL_LIMIT = 100
"""Largest decimal exponent (either way) of a decimal setting: beyond the decimal context
(1e999999999) arithmetic on it raises Overflow, and an exact Fraction of it takes minutes."""


def _decimal(text: str, key: str, expected: str, allow_negative: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{key}: expected {expected}, got {text!r}") from None
    if not value.is_finite() or (value < 0 and not allow_negative):
        raise ConfigError(f"{key}: expected {expected}, got {text!r}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value and not (exponent >= -_DECIMAL_LIMIT and value.adjusted() <= _DECIMAL_LIMIT):
        raise ConfigError(f"{key}: expected {expected} within 1e-{_DECIMAL_LIMIT}.."
                          f"1e{_DECIMAL_LIMIT}, got {text!r}")
    return value


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    """``cls``'s resolved annotations, once per class: resolving them is two thirds of
    building a config, which a sweep does for every run before any starts."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _build(cls: type[Any], table: object, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a TOML table, checking every key's type."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {_show(table)}")
    hints = _type_hints(cls)
    # a field the loader fills in from a file (a fitted table) is no key of the file itself
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get(NOT_A_CONFIG_KEY)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of {sorted(fields)})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in table:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ConfigError(f"{key}: missing (expected {_describe(hints[name])})")
            continue
        values[name] = _convert(hints[name], table[name], key)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _convert(hint: Any, value: object, key: str) -> Any:
    """``value`` as type ``hint`` or a ConfigError naming ``key`` and the expected form."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    ok: bool
    if origin is Literal:
        ok = value in typing.get_args(hint)
    elif origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, list):
            return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
        ok = False
    elif origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if len(options) == 1:  # an optional section: TOML has no null, present means given
            return _convert(options[0], value, key)
        for option in options:
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        ok = False
    elif hint is float:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        if ok:
            return float(value)  # type: ignore[arg-type]
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is str:
        # money and grids are decimal strings; a bare TOML integer is accepted as its text
        # (a TOML float is a binary double before we see it: write such values quoted)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        ok = isinstance(value, str)
    elif hint is bool:
        ok = isinstance(value, bool)
    else:
        raise AssertionError(f"unsupported config type {hint!r}")
    if not ok:
        raise ConfigError(f"{key}: expected {_describe(hint)}, got {_show(value)}")
    return value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if dataclasses.is_dataclass(hint):
        return "a table"
    names = {int: "an integer", float: "a finite number", str: "a string",
             bool: "true or false"}
    return names.get(hint, str(hint))


def _show(value: object) -> str:
    return f"{type(value).__name__} {value!r}"
