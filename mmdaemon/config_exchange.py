"""The ``[exchange]`` section of the config: which adapter trades, and how it reaches the
venue (:mod:`mmdaemon.config` reads the file and checks the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ExchangeConfig:
    """The exchange adapter.

    ``paper`` simulates fills against the market the daemon sees, with fees and three delays
    (see :mod:`mmdaemon.exchange.paper`): ``latency_ms`` order entry (request sent -> the
    venue acts), ``response_latency_ms`` (the venue acted -> its report reaches us) and
    ``feed_latency_ms`` (a venue event -> our market data shows it). ``latency_file`` (a
    path, relative to the config file's directory; ``""``: none) replaces each constant that
    it has samples for with draws from them, seeded by ``latency_seed``
    (:mod:`mmdaemon.exchange.latency`; ``mmdaemon run --latency-out FILE`` writes one).
    ``queue_model`` is how paper orders move up their price level
    (:mod:`mmdaemon.exchange.queue`): ``conservative`` (cancels are behind us), ``power``
    (a cancel was ahead of us with probability front**n / (front**n + back**n), ``n`` =
    ``queue_power``, an integer 1..10) or ``log`` (ln(1 + x) for x**n). ``fill_through`` is
    what a book through our price fills: ``whole`` (the rest of the order, optimistic) or
    ``traded`` (at most the volume printed at or through our price, conservative);
    ``trade_through`` what a trade printed through our price fills: ``print`` (up to its
    size) or ``whole`` (the rest of the order: hftbacktest's rule, optimistic).
    ``binance`` trades through Binance's WebSocket API at ``ws_api_url`` (spot's
    ``/ws-api/v3``, or USD-M futures' ``/ws-fapi/v1`` when ``instrument.venue`` is
    ``binance-usdm``; futures also use ``rest_url``, ``""``: https://fapi.binance.com, for
    the listings and cancel-all, and ``user_stream_url``, ``""``: wss://fstream.binance.com/private/ws,
    for the user-data stream) with the
    credentials named by ``credentials`` (see :mod:`mmdaemon.exchange.credentials`: "env",
    a systemd credential name, or a path, relative to the config file's directory), client
    order ids starting with ``client_id_prefix``. A credentials file that anyone but this
    user and root can get at is refused unless ``allow_readable_credentials``. The fee
    fields also price the spread. ``stop_timeout_ms`` is the whole graceful stop, from
    SIGTERM to exit: the closes of the feed and order connections (up to 1 s each) and, in
    what is left, the final cancel-all; orders not confirmed cancelled by then are logged by
    name and the exit status is 1.
    ``max_message_bytes`` bounds one message from the WebSocket API before it is parsed: its
    largest answer is a ``myTrades`` page of 1,000 trades (~270 KB at ~270 bytes a trade), so
    16 MiB is 60x that.
    """

    adapter: Literal["paper", "binance"] = "paper"
    latency_ms: float = 5.0
    response_latency_ms: float = 5.0
    feed_latency_ms: float = 5.0
    latency_file: str = ""
    latency_seed: int = 1
    queue_model: Literal["conservative", "power", "log"] = "conservative"
    queue_power: int = 2
    fill_through: Literal["whole", "traded"] = "whole"
    trade_through: Literal["print", "whole"] = "print"
    maker_fee_bps: str = "0"
    taker_fee_bps: str = "0"
    ws_api_url: str = ""
    rest_url: str = ""
    user_stream_url: str = ""
    credentials: str = "env"
    allow_readable_credentials: bool = False
    client_id_prefix: str = "mm"
    recv_window_ms: int = 5000
    request_timeout_ms: int = 5000
    stop_timeout_ms: int = 10_000
    max_message_bytes: int = 16 << 20


def check_exchange_urls(exchange: ExchangeConfig) -> None:
    """``ValueError`` naming the key when a URL the binance adapter needs is unusable."""
    if exchange.adapter != "binance":
        return
    for key, schemes, what in (("ws_api_url", ("ws://", "wss://"), "a ws:// or wss://"),
                               ("rest_url", ("http://", "https://"), "an http:// or https://"),
                               ("user_stream_url", ("ws://", "wss://"), "a ws:// or wss://")):
        value = getattr(exchange, key)
        if (value or key == "ws_api_url") and not value.startswith(schemes):
            raise ValueError(f"exchange.{key}: expected {what} URL for the binance adapter, "
                             f"got {value!r}")


# Binance's own hosts of each venue (production and testnet): a URL naming one of the other
# venue's is a copy-paste slip, refused at config time. Other hosts (a relay, the sim on
# 127.0.0.1) are the operator's word and pass.
_VENUE_HOSTS: Final[dict[str, frozenset[str]]] = {
    "binance-spot": frozenset({
        "stream.binance.com", "data-stream.binance.vision", "api.binance.com",
        "api1.binance.com", "api2.binance.com", "api3.binance.com", "api4.binance.com",
        "api-gcp.binance.com", "data-api.binance.vision", "ws-api.binance.com",
        "testnet.binance.vision", "stream.testnet.binance.vision",
        "ws-api.testnet.binance.vision"}),
    "binance-usdm": frozenset({
        "fstream.binance.com", "fapi.binance.com", "ws-fapi.binance.com",
        "testnet.binancefuture.com", "stream.binancefuture.com",
        "fstream.binancefuture.com"}),
}
# the WebSocket API's path of each venue: spot /ws-api/v3, USD-M /ws-fapi/v1
_WS_API_PATH: Final = {"binance-spot": "/ws-api/", "binance-usdm": "/ws-fapi/"}


def check_venue_urls(venue: str, exchange: ExchangeConfig,
                     feed_urls: dict[str, str]) -> None:
    """``ValueError`` naming the key when a URL is another Binance venue's than ``venue``
    (``feed_urls``: config key -> URL; the exchange's URLs are checked for the binance
    adapter): a USD-M config with spot's market data would quote futures off the spot book,
    and spot's WebSocket API would be sent futures orders. ``rest_url`` and
    ``user_stream_url`` are USD-M futures' alone: set for spot, they would be ignored."""
    if venue not in _VENUE_HOSTS:
        return
    urls = dict(feed_urls)
    if exchange.adapter == "binance":
        urls.update({f"exchange.{key}": getattr(exchange, key)
                     for key in ("ws_api_url", "rest_url", "user_stream_url")})
        if venue == "binance-spot":
            for key in ("rest_url", "user_stream_url"):
                if getattr(exchange, key):
                    raise ValueError(f"exchange.{key}: only USD-M futures use it "
                                     f"(instrument.venue = \"binance-usdm\"); remove it for "
                                     f"{venue}")
    stream = urlsplit(exchange.user_stream_url)
    # production only: whether the testnet moved too is not documented
    if (exchange.adapter == "binance" and stream.hostname == "fstream.binance.com"
            and not stream.path.startswith("/private/")):
        raise ValueError(f"exchange.user_stream_url: {exchange.user_stream_url!r} is a legacy "
                         f"USD-M WebSocket URL, retired by Binance on 2026-04-23: use "
                         f"\"wss://{stream.hostname}/private/ws\" (user data moved to /private)")
    for other, hosts in _VENUE_HOSTS.items():
        if other == venue:
            continue
        for key, url in urls.items():
            host = urlsplit(url).hostname or ""
            wrong_path = key == "exchange.ws_api_url" and _WS_API_PATH[other] in url
            if host in hosts or wrong_path:
                raise ValueError(f"{key}: {url!r} is {other}'s, but instrument.venue is "
                                 f"{venue!r}: use {venue}'s URL (see "
                                 f"config/example-live{'-usdm' if venue == 'binance-usdm' else ''}"
                                 f".toml)")


# Binance's production USD-M market-data host: since 2026-04-23 its streams are only under
# /public (depth, bookTicker) and /market (trades), which the feed appends to the root
_USDM_STREAM_HOST: Final = "fstream.binance.com"


def check_market_data_url(venue: str, key: str, url: str) -> None:
    """``ValueError`` naming ``key`` when ``url`` is a legacy Binance USD-M market-data URL
    (a path on the production host, e.g. ``wss://fstream.binance.com/stream``): the feed
    takes the host's root and appends the routes; there, the retired paths serve nothing.
    Other hosts (a relay, the sim on 127.0.0.1) are the operator's word and pass."""
    parts = urlsplit(url)
    if (venue == "binance-usdm" and parts.hostname == _USDM_STREAM_HOST
            and (parts.path not in ("", "/") or parts.query)):
        raise ValueError(f"{key}: {url!r} is a legacy USD-M market-data URL, retired by "
                         f"Binance on 2026-04-23: use \"wss://{_USDM_STREAM_HOST}\" (the feed "
                         f"connects to /public for depth and bookTicker and to /market for "
                         f"trades under it)")
