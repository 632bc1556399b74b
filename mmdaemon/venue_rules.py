"""The instrument's rules at start: from the venue (live) or a saved exchangeInfo (replay).

- **Live** (``run`` or ``record`` on ``feed.url``, whatever the adapter: the paper adapter
  on a live feed quotes on the venue's grid too): the venue's exchangeInfo for the symbol is
  read from the feed's REST base, ``GET {feed.rest_url}/api/v3/exchangeInfo?symbol=S``
  (spot) or ``/fapi/v1/exchangeInfo`` (USD-M, every symbol), through ``feed.proxy``. A
  config that states every grid is checked by the running service before order entry starts
  (:func:`check_live`): a venue that does not answer (no connection, a timeout, HTTP 5xx,
  429 or 418, an answer that is not HTTP, is cut off or is not JSON) is waited out like a
  venue down at start, HALTED, retried with the feed's backoff, systemd told why, signals
  acted on; nothing is quoted before the rules are read
  and agree. A config that leaves grids out cannot be built without them, nor can
  ``record`` save them: they are read first (:func:`fetch`), :data:`TRIES` times with the
  feed's backoff, then the command exits 1 with the reason, nothing open, and the service
  manager's restart (``Restart=on-failure``) tries again. Every other answer is final (exit
  2): the symbol unknown to the venue, a body without the rules, rules the config disagrees
  with (:mod:`mmdaemon.instrument_config`), a symbol not TRADING.
- **Replay** (``replay``, ``run`` on ``feed.recordings``, the other commands that read
  recordings): the rules saved beside the first recording, ``<dir>/exchangeInfo-<SYMBOL>.json``
  (:func:`saved_path`; ``mmdaemon record`` writes it when it starts), with the same checks;
  without that file the config must state every grid it needs.

What was read is logged as ``instrument_rules`` (:func:`log_rules`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from mmdaemon.clock import Clock
from mmdaemon.config import Config, ConfigError
from mmdaemon.exchange.base import VenueRefused
from mmdaemon.instrument_config import apply_rules
from mmdaemon.venues.binance import Market
from mmdaemon.venues.binance_rules import RulesError, VenueRules, parse_exchange_info

TRIES = 5
"""Reads of an unreachable venue's exchangeInfo before the command gives up (exit 1)."""
MAX_BODY_BYTES = 16 << 20
"""The largest exchangeInfo accepted (bytes): USD-M's lists every contract in ~1 MB."""


class RulesUnavailable(Exception):
    """The venue's exchangeInfo could not be read (exit 1: may pass, a restart retries)."""


@dataclass(frozen=True)
class Settled:
    """A config whose instrument the venue's rules completed and checked: ``source`` where
    they came from (a URL, a file, or "" when none was read), ``filled`` the keys taken
    from them, ``body`` the exchangeInfo read (for ``record`` to save)."""

    config: Config
    source: str = ""
    rules: VenueRules | None = None
    filled: tuple[str, ...] = ()
    body: bytes = b""


def saved_path(recording: str | Path, symbol: str) -> Path:
    """Where a recording's exchangeInfo is kept: beside it, ``exchangeInfo-<SYMBOL>.json``."""
    return Path(recording).parent / f"exchangeInfo-{symbol}.json"


def _market(config: Config) -> Market | None:
    venue = config.instrument.venue
    return "usdm" if venue == "binance-usdm" else "spot" if venue == "binance-spot" else None


def settle(config: Config, recordings: Sequence[str] = (), live: bool = True) -> Settled:
    """``config`` with its instrument completed from the venue's rules (see the module):
    from the venue when it has a feed URL, no ``recordings`` (given, or the config's) and
    ``live`` (:func:`fetch`), else the exchangeInfo saved beside the first recording, if
    any. Raises :class:`ConfigError` (exit 2) and :class:`RulesUnavailable` (exit 1)."""
    market = _market(config)
    recordings = list(recordings) or list(config.feed.recordings)
    if market is None:
        return _complete(config)
    if recordings:
        path = saved_path(recordings[0], config.instrument.symbol)
        if not path.is_file():
            return _complete(config)
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
        return _apply(config, body, market, str(path))
    if not (config.feed.url and live):
        return _complete(config)
    url, body = fetch(config, market)
    return _apply(config, body, market, url)


def _apply(config: Config, body: bytes, market: Market, source: str) -> Settled:
    symbol = config.instrument.symbol
    try:
        rules = parse_exchange_info(body, market, symbol)
        inst, filled = apply_rules(config.instrument, rules)
    except RulesError as exc:
        raise ConfigError(f"instrument: the venue's rules ({source}): {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{exc} (the venue's exchangeInfo: {source})") from None
    return Settled(replace(config, instrument=inst), source, rules, filled, body)


def _complete(config: Config) -> Settled:
    """``config`` as it is, when no rules are read: its grids must then all be stated."""
    try:
        config.instrument.build()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Settled(config)


def exchange_info_url(config: Config, market: Market) -> str:
    import urllib.parse  # here: a replay reads the rules from a file, and starts sooner

    base = config.feed.rest_url.rstrip("/")
    if market == "usdm":
        return f"{base}/fapi/v1/exchangeInfo"
    return f"{base}/api/v3/exchangeInfo?" + urllib.parse.urlencode(
        {"symbol": config.instrument.symbol})


def fetch_once(config: Config, market: Market) -> tuple[str, bytes]:
    """One read of the venue's exchangeInfo: its URL and body. Raises
    :class:`RulesUnavailable` (``why``) when it may pass, :class:`ConfigError` for an
    answer that retrying cannot change."""
    import http.client  # only a live start reads the venue: a replay starts without them
    import urllib.error
    import urllib.request

    feed = config.feed
    url = exchange_info_url(config, market)
    proxies = {"http": feed.proxy, "https": feed.proxy} if feed.proxy else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(url, timeout=feed.snapshot_timeout_ms / 1000) as response:
            body: bytes = response.read(MAX_BODY_BYTES + 1)
            declared = response.headers.get("Content-Length", "")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (418, 429):
            raise RulesUnavailable(f"HTTP {exc.code}") from None
        raise ConfigError(f"instrument.symbol: {url} answered HTTP {exc.code}: "
                          f"{_venue_error(exc.read(4096))}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, a dropped connection
        raise RulesUnavailable(str(getattr(exc, "reason", exc)) or type(exc).__name__
                               ) from None
    except http.client.HTTPException as exc:  # no HTTP status line: a proxy, a wrong port
        raise RulesUnavailable(f"not an HTTP answer: {type(exc).__name__}: {exc}") from None
    # a connection dropped mid-body may pass; judged as the venue's rules, the cut-off JSON
    # would be a final config error (exit 2) that systemd does not retry
    if declared.isdigit() and len(body) < int(declared) and len(body) <= MAX_BODY_BYTES:
        raise RulesUnavailable(f"the answer was cut off: {len(body)} of {declared} bytes")
    if len(body) > MAX_BODY_BYTES:
        raise ConfigError(f"instrument: {url}: the exchangeInfo is larger than "
                          f"{MAX_BODY_BYTES} bytes")
    try:  # a page instead of JSON says nothing of the rules: waited out like the venue down
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RulesUnavailable(f"not JSON (a proxy's or a maintenance page?): "
                               f"{body[:80]!r}") from None
    return url, body


def fetch(config: Config, market: Market) -> tuple[str, bytes]:
    """:func:`fetch_once`, :data:`TRIES` times with the feed's backoff (before a start that
    has nothing open: a plain sleep), then :class:`RulesUnavailable` with the last reason."""
    feed = config.feed
    delay_s, why = feed.backoff_initial_ms / 1000, ""
    for attempt in range(TRIES):
        if attempt:
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, feed.backoff_max_ms / 1000)
        try:
            return fetch_once(config, market)
        except RulesUnavailable as exc:
            why = str(exc)
    raise RulesUnavailable(f"the venue's exchangeInfo ({exchange_info_url(config, market)}) "
                           f"could not be read in {TRIES} tries: {why}")


class RulesRefused(VenueRefused):
    """The running service's config disagrees with the venue's rules: exit 2."""


async def check_live(config: Config, clock: Clock,
                     on_retry: Callable[[str, float], None]) -> Settled:
    """The service's check of a config that states every grid (:class:`~mmdaemon.daemon.
    Service`, before order entry starts): the venue's exchangeInfo read as long as an
    outage lasts (``on_retry(why, retry_in_s)`` after each failed read; the feed's
    backoff), then the config checked against it. Raises :class:`RulesRefused`."""
    market = _market(config)
    assert market is not None  # a live feed is a Binance venue's
    delay_s = config.feed.backoff_initial_ms / 1000
    while True:
        try:
            url, body = await asyncio.to_thread(fetch_once, config, market)
            return _apply(config, body, market, url)
        except ConfigError as exc:
            raise RulesRefused(str(exc)) from None
        except RulesUnavailable as exc:
            on_retry(f"the venue's exchangeInfo: {exc}", delay_s)
        await clock.sleep(delay_s)
        delay_s = min(delay_s * 2, config.feed.backoff_max_ms / 1000)


def _venue_error(body: bytes) -> str:
    """A Binance error body as ``code msg``, or its start."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return repr(body[:200])
    if isinstance(doc, dict) and "code" in doc:
        return f"{doc.get('code')} {doc.get('msg', '')}".strip()
    return repr(body[:200])


def log_rules(logger: Any, settled: Settled | None, saved: Path | None = None) -> None:
    """The ``instrument_rules`` event: what was read, from where, what it filled in and
    where it was ``saved`` (``record``)."""
    if settled is None or settled.rules is None:
        return
    inst = settled.config.instrument
    where = {} if saved is None else {"saved": str(saved)}
    logger.info("instrument_rules", source=settled.source, filled=list(settled.filled), **where,
                tick_size=inst.tick_size, lot_size=inst.lot_size,
                size_step_lots=inst.size_step_lots, min_size_lots=inst.min_size_lots,
                min_notional=inst.min_notional,
                venue={k: v for k, v in settled.rules.as_fields().items() if k != "symbol"})


def save(settled: Settled | None, out: Path) -> Path | None:
    """Keep the exchangeInfo read at start beside what ``record`` writes to ``out``, with
    only the recorded symbol's entry (USD-M's lists every contract): the rules a replay
    of the recording reads. None when no exchangeInfo was read."""
    if settled is None or not settled.body:
        return None
    symbol = settled.config.instrument.symbol
    doc = orjson.loads(settled.body)
    doc["symbols"] = [s for s in doc["symbols"] if isinstance(s, dict)
                      and s.get("symbol") == symbol]
    path = saved_path(out / "x", symbol)
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path
