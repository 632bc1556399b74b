"""Commands on recordings: ``mmdaemon record`` (the live feed into day files), ``mmdaemon
sim`` (recordings served as a local Binance-compatible venue) and ``mmdaemon verify-book``
(the book rebuilt from a recording, checked against the venue's own)."""

from __future__ import annotations

import asyncio
import signal
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.commands.usage import UsageError, speed_and_recordings
from mmdaemon.config import Config
from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.venues.binance import Market
from mmdaemon.venues.binance_survey import SurveyError, served_instrument
from mmdaemon.verify import survey_recordings, verify_recordings

if TYPE_CHECKING:
    from mmdaemon.sim.server import ReferenceSpec

VENUES: dict[str, Market] = {"binance-spot": "spot", "binance-usdm": "usdm"}
"""``verify-book --venue``: the sync rules of each venue (the instrument comes from the data)."""
KNOWN_INSTRUMENTS: dict[tuple[str, str], Instrument] = {
    ("binance-spot", "BTCUSDT"): BINANCE_SPOT_BTCUSDT,
    ("binance-usdm", "BTCUSDT"): BINANCE_USDM_BTCUSDT,
}
"""The grids ``sim --reference`` knows without ``--reference-tick-size``/``-lot-size``."""


def verify_book(paths: list[str], venue: str, as_json: bool, symbol: str | None = None) -> int:
    """Verify the book of ``symbol`` in ``paths`` (see :mod:`mmdaemon.verify`): 0 verified,
    1 the check failed or verified nothing, 2 unusable input."""
    logger = log.get_logger(command="verify-book")
    try:
        summary = verify_recordings(paths, VENUES[venue], symbol, report=_reporter(logger))
    except (RecordingError, SurveyError) as exc:
        logger.error("recording_unusable", error=str(exc))
        print(f"mmdaemon verify-book: {exc}", file=sys.stderr)
        return 2
    summary["venue"] = venue
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        print(_human_summary(summary))
    return 0 if summary["ok"] else 1


def _reporter(logger: Any) -> Any:
    def report(event: str, **fields: Any) -> None:
        logger.warning(event, **fields)

    return report


def _human_summary(s: dict[str, Any]) -> str:
    """The verdict for people: prices at the grid found in the data, and why it failed."""
    grid = Instrument(s["instrument"] or "", s["tick_size"], s["lot_size"])

    def px(ticks: int | None) -> str:
        return "-" if ticks is None else grid.price_str(ticks)

    verdict = "OK" if s["ok"] else "FAILED"
    lines = [
        f"verify-book {verdict}: {s['instrument'] or 'no symbol named'}, tick {s['tick_size']} "
        f"and lot {s['lot_size']} (from the data)",
        f"  {s['frames']} frames: {s['depth_updates']} diffs applied, {s['trades']} trades, "
        f"{s['tickers']} tickers" + (f"; {s['other_symbol_frames']} frames of other symbols "
                                     f"skipped" if s["other_symbol_frames"] else ""),
        f"  compared {s['compared']} bookTickers: {s['mismatches']} mismatches "
        f"({s['not_comparable']} not comparable)",
        f"  gaps {s['gaps']}, resyncs {s['resyncs']}, crossed {s['crossed']}, "
        f"malformed {s['malformed']}",
        f"  final book: {px(s['best_bid'])} / {px(s['best_ask'])} at update "
        f"{s['last_update_id']} ({'synced' if s['synced_at_end'] else 'NOT synced'})",
    ]
    lines.extend(f"  FAILED: {reason}" for reason in s["reasons"])
    return "\n".join(lines)


def _until_signalled(main: Any) -> Any:
    """Wrap coroutine function ``main(stop_event)`` so SIGTERM/SIGINT set the event."""

    async def wrapper() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return wrapper


def record(config: Config, out: Path) -> int:
    """``mmdaemon record``: the live feed of ``config`` into ``out``, and with a
    ``[reference]`` section the reference venue's feed into ``out/<venue>-<symbol>/``
    (:func:`mmdaemon.feed.recorder.reference_dir`); stops on SIGTERM/SIGINT."""
    from mmdaemon.feed.recorder import FrameWriter, reference_dir
    from mmdaemon.feed.websocket import Reconnected, WebsocketFeed
    from mmdaemon.wiring import feed_settings, reference_feed_settings

    if not config.feed.url:
        print("mmdaemon record: config error: feed.url: expected the venue's websocket URL",
              file=sys.stderr)
        return 2
    ref = config.reference
    if ref is not None and not (ref.url and ref.rest_url):
        print("mmdaemon record: config error: reference.url and reference.rest_url: expected "
              "the reference venue's websocket and REST URLs to record it", file=sys.stderr)
        return 2
    logger = log.get_logger(command="record", instrument=config.instrument.symbol)
    clock = SystemClock()
    feeds = [(WebsocketFeed(feed_settings(config), logger, clock=clock),
              FrameWriter(out, config.instrument.symbol, report=_reporter(logger), clock=clock))]
    ref_settings = reference_feed_settings(config)
    if ref is not None and ref_settings is not None:
        ref_log = logger.bind(feed="reference")
        feeds.append((WebsocketFeed(ref_settings, ref_log, clock=clock),
                      FrameWriter(reference_dir(out, ref.venue, ref.symbol), ref.symbol,
                                  report=_reporter(ref_log), clock=clock)))

    async def main(stop: asyncio.Event) -> None:
        async def consume(feed: WebsocketFeed, writer: FrameWriter) -> None:
            async for item in feed.frames():
                if isinstance(item, Reconnected):
                    continue  # the snapshot fetched after it is what a replay needs
                writer.write(*item)

        async def flusher() -> None:
            while True:  # a quiet feed still gets its last frames onto the disk
                await clock.sleep(min(writer.flush_interval_s for _, writer in feeds))
                for _, writer in feeds:
                    writer.flush()

        # each feed reconnects on its own: only a writer's failure (the disk) ends a consumer
        consumers = [asyncio.create_task(consume(*pair)) for pair in feeds]
        tasks = [*consumers, asyncio.create_task(flusher())]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*consumers, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in (*tasks, stopper):
            task.cancel()
        results = await asyncio.gather(*consumers, return_exceptions=True)
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        failure = next((r for r in results if isinstance(r, Exception)), None)
        if failure is not None:  # a writer failed: not a clean stop
            raise failure

    logger.info("record_started", out=str(out), url=config.feed.url,
                reference_url=ref.url if ref is not None else None)
    try:
        import uvloop

        uvloop.run(_until_signalled(main)())
    except (RecordingError, OSError) as exc:  # a day file it must not append to; the disk
        logger.error("record_failed", error=str(exc))
        print(f"mmdaemon record: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, RecordingError) else 1
    finally:
        for _, writer in feeds:
            writer.close()
        feed, writer = feeds[0]
        reference = {} if len(feeds) == 1 else {
            "reference_frames": feeds[1][1].frames,
            "reference_files": [str(p) for p in feeds[1][1].files],
            "reference_reconnects": feeds[1][0].reconnects,
            "reference_snapshots": feeds[1][0].snapshots}
        logger.info("record_stopped", frames=writer.frames, files=[str(p) for p in writer.files],
                    reconnects=feed.reconnects, snapshots=feed.snapshots, **reference)
    return 0


def reference_spec(recordings: list[str], venue: str, symbol: str, port: int,
                   tick_size: str | None, lot_size: str | None) -> ReferenceSpec:
    """``sim --reference ..``: what the sim serves as the reference venue. Raises
    :class:`~mmdaemon.commands.usage.UsageError` naming the option at fault."""
    from mmdaemon.sim.server import ReferenceSpec

    missing = [p for p in recordings if not Path(p).is_file()]
    if missing:
        raise UsageError(f"mmdaemon sim: --reference: no such recording: {missing[0]}")
    known = KNOWN_INSTRUMENTS.get((venue, symbol))
    if tick_size is None or lot_size is None:
        if known is None:
            raise UsageError(f"mmdaemon sim: --reference-tick-size and --reference-lot-size "
                             f"are needed for {symbol} on {venue} (known: "
                             f"{', '.join(f'{s} on {v}' for v, s in KNOWN_INSTRUMENTS)})")
        tick_size = tick_size or str(known.tick_size)
        lot_size = lot_size or str(known.lot_size)
    try:
        instrument = Instrument(symbol, tick_size, lot_size)
    except ValueError as exc:
        raise UsageError(f"mmdaemon sim: --reference-tick-size/--reference-lot-size: {exc}") \
            from None
    return ReferenceSpec(tuple(Path(p) for p in recordings), instrument, VENUES[venue], port)


def file_balances(path: Path) -> dict[str, Decimal] | None:
    """The ``balances`` table of the credentials file ``path`` (``balances = { BTC = "1",
    USDT = "100000" }``): its account's starting balances; None when it has none. ValueError
    naming the file and the fix for a table that is not one of ``ASSET = "AMOUNT"``."""
    from mmdaemon.sim.balances import parse_amount

    with path.open("rb") as f:
        table = tomllib.load(f).get("balances")
    if table is None:
        return None
    form = 'balances = { BTC = "1", USDT = "100000" }'
    if not isinstance(table, dict):
        raise ValueError(f"{path}: balances: expected a table such as {form}")
    out: dict[str, Decimal] = {}
    for asset, amount in table.items():
        # a TOML float is binary: 0.1 would not be the amount written
        if isinstance(amount, bool) or not isinstance(amount, str | int):
            raise ValueError(f"{path}: balances.{asset}: expected the amount as a string "
                             f"such as \"0.5\", as in {form}")
        if not (asset.isascii() and asset.isalnum()):
            raise ValueError(f"{path}: balances: {asset!r} is not an asset name such as BTC")
        out[asset.upper()] = parse_amount(asset.upper(), str(amount))
    return out


def spot_instrument(paths: list[str], symbol: str | None) -> Instrument:
    """The spot instrument the sim serves from ``paths``: the one symbol their frames name
    (``symbol``, ``--symbol``, picks one of several), on the grids of its frames
    (:mod:`mmdaemon.venues.binance_survey`), step and minimums of one lot and no minimum
    notional; BTCUSDT, whose filters the sim knows, gets Binance's when its frames fit them.
    Raises :class:`SurveyError` (several symbols and none picked, the one picked absent, no
    decodable frame) or :class:`RecordingError`."""
    grid = survey_recordings(paths, symbol)[1].instrument
    if not grid.symbol:
        raise SurveyError(f"{', '.join(paths)}: no frame names a symbol")
    return served_instrument(grid, BINANCE_SPOT_BTCUSDT)


def sim(recordings: list[str], host: str, port: int, speed_text: str, symbol: str | None,
        credentials: list[str], maker_fee_bps: str, wait_for_subscriber: bool = False,
        reference: ReferenceSpec | None = None, balance: list[str] | None = None) -> int:
    """``mmdaemon sim``: serve ``recordings`` (and the ``reference`` venue's) until
    SIGTERM/SIGINT. Every account starts with ``balance`` (``ASSET=AMOUNT`` texts; none: 0,
    as a new Binance account), unless its credentials file has a ``balances`` table."""
    from mmdaemon.exchange.credentials import CredentialsError, load_credentials
    from mmdaemon.exchange.fill_model import PaperVenue
    from mmdaemon.sim.balances import balances
    from mmdaemon.sim.orders import OrderEntry
    from mmdaemon.sim.server import SimVenue
    from mmdaemon.venues.binance_parse import assets_of

    speed = speed_and_recordings("sim", recordings, speed_text)
    try:
        every = balances(balance or [])
    except ValueError as exc:
        print(f"mmdaemon sim: --balance: {exc}", file=sys.stderr)
        return 2
    try:
        instrument = spot_instrument(recordings, symbol)
    except (RecordingError, SurveyError, OSError) as exc:
        print(f"mmdaemon sim: {exc}", file=sys.stderr)
        return 2
    logger = log.get_logger(command="sim")
    clock = SystemClock()
    order_entry: OrderEntry | None = None
    try:
        # the fake venue's accounts: a path on the command line is relative to the working
        # directory, and the test keys need no guarding
        sources = [source if source == "env" else str(Path(source).absolute())
                   for source in credentials]
        accounts = [load_credentials(source, allow_readable=True) for source in sources]
        starting = {c.api_key: every for c in accounts}
        for source, account in zip(sources, accounts, strict=True):
            own = None if source == "env" else file_balances(Path(source))
            if own is not None:
                starting[account.api_key] = own
        assets = assets_of(instrument.symbol)
        for key, held in starting.items():
            if not any(held.get(asset) for asset in assets):
                logger.warning("sim_account_empty", api_key=f"{key[:4]}...",
                               fix=f"--balance {assets.base}=1 --balance {assets.quote}=100000 "
                                   "or a balances table in its credentials file",
                               reason="its orders are refused -2010 insufficient balance")
        # matching on the sim's own clock: loopback is the latency, so the venue adds none
        order_entry = OrderEntry(instrument, PaperVenue(instrument, 0, maker_fee_bps, "0"),
                                 {c.api_key: c.secret for c in accounts},
                                 account_balances=starting)
    except CredentialsError as exc:
        logger.warning("sim_market_data_only", reason=str(exc))
    except ValueError as exc:
        print(f"mmdaemon sim: {exc}", file=sys.stderr)
        return 2

    async def main(stop: asyncio.Event) -> None:
        async with SimVenue(recordings, instrument, speed=speed, clock=clock,
                            host=host, port=port, order_entry=order_entry,
                            wait_for_subscriber=wait_for_subscriber,
                            reference=reference) as venue:
            served = {} if venue.reference is None else {
                "reference_ws_url": venue.reference.ws_url,
                "reference_rest_url": venue.reference.rest_url,
                "reference_symbol": venue.reference.instrument.symbol,
                "reference_market": venue.reference.tape.kind}
            logger.info("sim_listening", ws_url=venue.ws_url, rest_url=venue.rest_url,
                        streams=f"{venue.ws_url}/stream?streams=...",
                        raw_streams=f"{venue.ws_url}/ws", ws_api=f"{venue.ws_url}/ws-api/v3",
                        speed=speed or "max", order_entry=order_entry is not None, **served)
            finished = asyncio.create_task(venue.wait_finished())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([finished, stopper], return_when=asyncio.FIRST_COMPLETED)
            if finished.done():
                logger.info("sim_tape_finished", frames_sent=venue.tape.frames_sent)
                await stopper  # a venue stays up after its tape ends, quietly
            finished.cancel()

    import uvloop

    try:
        uvloop.run(_until_signalled(main)())
    except OSError as exc:
        ports = f"{port}" if reference is None else f"{port} and {reference.port}"
        print(f"mmdaemon sim: cannot listen on {host}:{ports}: {exc}", file=sys.stderr)
        return 2
    logger.info("sim_stopped")
    return 0
