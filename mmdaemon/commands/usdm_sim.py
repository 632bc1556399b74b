"""``mmdaemon sim --venue binance-usdm``: serve USD-M recordings as a Binance USD-M futures
venue (market data, the WebSocket API, signed REST, user-data streams, funding) on one port.

Each RECORDING file names its symbol in its frames (:mod:`mmdaemon.venues.binance_survey`);
files of one symbol (several days) are served as one tape, several symbols side by side, each
USDT-margined (the accounts hold USDT only; another quote asset is refused at start).
A symbol the sim knows (BTCUSDT) gets Binance's filters; another gets the price and size
grids of its frames and a minimum notional of :data:`OTHER_MIN_NOTIONAL` USDT.
"""

from __future__ import annotations

import asyncio
import re
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Final

from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.sim.futures_accounts import USDT
from mmdaemon.venues.binance_survey import SurveyError, served_instrument
from mmdaemon.verify import survey_recordings

OTHER_MIN_NOTIONAL: Final = "5"  # Binance USD-M's minimum notional of most symbols (USDT)
_DURATION_RE: Final = re.compile(r"([0-9]+)(ms|s|m|h)?")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


class SimUsageError(ValueError):
    """A command line the futures sim cannot serve; the message names the option and fix."""


def parse_interval_ms(text: str) -> int:
    """``--funding-interval``: ``8h``, ``30s``, ``500ms``, ``5m`` or plain seconds -> ms."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise SimUsageError(f"--funding-interval: expected a positive duration such as 8h, "
                            f"30s or 500ms, got {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def instruments_of(paths: list[str]) -> list[tuple[Instrument, list[Path]]]:
    """The symbol of each recording file, files grouped by symbol in the order given;
    :class:`SimUsageError` for a file that cannot be read or names no single symbol."""
    groups: dict[str, list[Path]] = {}
    grids: dict[str, Instrument] = {}
    for text in paths:
        path = Path(text)
        try:
            plan = survey_recordings([path])[1]
        except (RecordingError, SurveyError, OSError) as exc:
            raise SimUsageError(f"{text}: {exc} (the futures sim serves one symbol per "
                                "recording file)") from None
        symbol = plan.instrument.symbol
        if not symbol:
            raise SimUsageError(f"{text}: no frame names a symbol")
        if not symbol.endswith(USDT) or symbol == USDT:
            # its accounts, fills, funding and exchangeInfo are USDT's: a USDC-margined
            # contract was served as base asset 'ETHUSDC' quoted in USDT
            raise SimUsageError(f"{text}: {symbol}: the futures sim serves USDT-margined "
                                f"symbols only (its accounts hold USDT)")
        groups.setdefault(symbol, []).append(path)
        grids.setdefault(symbol, plan.instrument)
    return [(served_instrument(grids[symbol], BINANCE_USDM_BTCUSDT, OTHER_MIN_NOTIONAL), files)
            for symbol, files in groups.items()]


def usdm_sim(recordings: list[str], host: str, port: int, speed: float | None,
             credentials: list[str], maker_fee_bps: str, wait_for_subscriber: bool,
             balances: list[str], funding_interval: str, funding_rate: str,
             binance_routes: bool = False) -> int:
    """Serve ``recordings`` as a USD-M venue until SIGTERM/SIGINT; 2 on a bad command line.
    ``binance_routes``: market data only on Binance's split routes (/public, /market)."""
    from mmdaemon.commands.recordings import _until_signalled
    from mmdaemon.exchange.credentials import CredentialsError, load_credentials
    from mmdaemon.sim.balances import balances as parse_balances
    from mmdaemon.sim.clock import SimClock
    from mmdaemon.sim.futures_protocol import rate_fraction
    from mmdaemon.sim.usdm import WS_API_PATH, UsdmOrderEntry, UsdmSim

    logger = log.get_logger(command="sim")
    clock = SystemClock()
    # the sim's one clock: every time it prints or stamps, the tapes' frames included
    sim_clock = SimClock(clock, speed)
    order_entry: UsdmOrderEntry | None = None
    try:
        served = instruments_of(recordings)
        wallets = parse_balances(balances)
        unknown = sorted(set(wallets) - {"USDT"})
        if unknown:
            raise SimUsageError(f"--balance: a USD-M account holds USDT only, not "
                                f"{', '.join(unknown)}")
        interval_ms = parse_interval_ms(funding_interval)
        rate = rate_fraction(funding_rate)
        try:
            accounts = [load_credentials(s if s == "env" else str(Path(s).absolute()),
                                         allow_readable=True) for s in credentials]
            order_entry = UsdmOrderEntry(
                [inst for inst, _ in served], {c.api_key: c.secret for c in accounts},
                Fraction(wallets.get("USDT", Decimal(0))), sim_clock.now_ms,
                signing_ms=sim_clock.signing_ms, maker_fee_bps=maker_fee_bps,
                funding_interval_ms=interval_ms, funding_rate=rate)
        except CredentialsError as exc:
            logger.warning("sim_market_data_only", reason=str(exc))
    except ValueError as exc:
        print(f"mmdaemon sim: {exc}", file=sys.stderr)
        return 2

    async def main(stop: asyncio.Event) -> None:
        async with UsdmSim(served, speed=speed, clock=clock, host=host, port=port,
                           order_entry=order_entry,
                           wait_for_subscriber=wait_for_subscriber,
                           sim_clock=sim_clock, binance_routes=binance_routes) as venue:
            logger.info("sim_listening", venue="binance-usdm", ws_url=venue.ws_url,
                        rest_url=venue.rest_url, streams=f"{venue.ws_url}/stream?streams=...",
                        raw_streams=f"{venue.ws_url}/ws", ws_api=f"{venue.ws_url}{WS_API_PATH}",
                        user_stream=f"{venue.ws_url}/ws/<listenKey>",
                        symbols=[inst.symbol for inst, _ in served], speed=speed or "max",
                        order_entry=order_entry is not None,
                        funding_interval_ms=interval_ms, funding_rate=funding_rate)
            finished = asyncio.create_task(venue.wait_finished())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([finished, stopper], return_when=asyncio.FIRST_COMPLETED)
            if finished.done():
                logger.info("sim_tape_finished", frames_sent=sum(
                    t.frames_sent for t in venue.tapes.values()))
                await stopper  # a venue stays up after its tape ends, quietly
            finished.cancel()

    import uvloop

    try:
        uvloop.run(_until_signalled(main)())
    except OSError as exc:
        print(f"mmdaemon sim: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    logger.info("sim_stopped")
    return 0
