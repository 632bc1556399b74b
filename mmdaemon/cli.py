"""``mmdaemon <command>``: the command-line entry point.

Exit status: 0 success, 1 a check failed (e.g. book mismatches), 2 unusable input or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mmdaemon import early_signals, log
from mmdaemon.clock import SystemClock
from mmdaemon.config import Config, ConfigError, load_config
from mmdaemon.defaults import DRYRUN, LOBSTER, bundled_config
from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, MAX_UNITS, Instrument
from mmdaemon.pace import ReplayClock
from mmdaemon.risk.rules import ORDER_RATE
from mmdaemon.venues.binance import Market
from mmdaemon.venues.binance_survey import SurveyError
from mmdaemon.verify import verify_recordings

if TYPE_CHECKING:  # imported where a command runs it: the other commands start sooner
    from mmdaemon.daemon import Service

DEFAULT_CONFIG = bundled_config(DRYRUN)
LOBSTER_CONFIG = bundled_config(LOBSTER)

VENUES: dict[str, Market] = {"binance-spot": "spot", "binance-usdm": "usdm"}
"""``verify-book --venue``: the sync rules of each venue (the instrument comes from the data)."""


class _LauncherPath(argparse.Action):
    """``--launcher-path``: the path on stdout (exit 0), or why there is none (exit 1)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        path = early_signals.launcher_path()
        if path is None:
            parser.exit(1, "mmdaemon: no mmdaemond launcher in this installation (built only "
                           "on Linux with a C compiler: rebuild the wheel where one exists)\n")
        print(path)
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdaemon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--launcher-path", action=_LauncherPath, nargs=0,
                        help="print where this installation's mmdaemond launcher is (the "
                             "systemd unit runs it, linked into the venv's bin/) and exit")
    parser.add_argument("--log-level", choices=sorted(log.LEVELS),
                        help="default: the config's logging.level (commands without a "
                             "config: info); debug logs every order sent (order_sent)")
    parser.add_argument("--log-format", default="auto", choices=log.FORMATS,
                        help="json lines, or console text for people (prices and sizes also "
                             "in decimals); auto (default): console when the log goes to a "
                             "terminal")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-config",
        help="validate a config without running it: the effective configuration with units, "
             "derived values and warnings (exit 0 valid, 2 invalid)")
    check.add_argument("config", metavar="FILE", nargs="?", default=str(DEFAULT_CONFIG),
                       help="default: the dry-run config shipped with mmdaemon")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--price", metavar="PRICE",
                        help="reference price (quote currency) for the notional figures "
                             "(default: the first price of the config's feed.recordings)")
    source.add_argument("--recording", action="append", metavar="RECORDING",
                        help="take the reference price from the start of this recording "
                             "(repeat for several files: a LOBSTER message and order-book "
                             "file)")
    check.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    verify = commands.add_parser(
        "verify-book",
        help="rebuild the book from a recording and compare it with the venue's bookTicker",
    )
    verify.add_argument("recordings", nargs="+", metavar="RECORDING")
    verify.add_argument("--venue", choices=sorted(VENUES), default="binance-spot")
    verify.add_argument("--symbol", type=_symbol,
                        help="the symbol to verify when the recording carries several (frames "
                             "of the others are skipped; any case)")
    verify.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    run = commands.add_parser("run", help="run the daemon (logs on stdout: JSON lines, or "
                                          "console text on a terminal)")
    run.add_argument("--config", required=True, metavar="FILE")
    run.add_argument("--latency-out", metavar="FILE", type=Path,
                     help="write the latencies measured in this run (feed, order entry, "
                          "response) as a latency file a dry run can draw from "
                          "(exchange.latency_file), at stop")

    replay = commands.add_parser(
        "replay", help="dry run: replay recordings through the daemon with the paper exchange"
    )
    replay.add_argument("recordings", nargs="*", metavar="RECORDING",
                        help="recordings to replay (default: the config's feed.recordings)")
    replay.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE",
                        help="default: the dry-run config shipped with mmdaemon")
    replay.add_argument("--speed", default="max", help="1 = real time, N = N x faster, max")
    replay.add_argument("--clock", choices=("receive", "exchange"),
                        help="event time: the recorded receive times, or the venue's event "
                             "times in the frames (default: the config's feed.clock)")
    replay.add_argument("--state-dir", metavar="DIR",
                        help="keep the journal here (default: a temporary directory)")
    replay.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    replay.add_argument("--venue", choices=("binance", "lobster"),
                        help="lobster: RECORDING is MESSAGE_CSV ORDERBOOK_CSV of a LOBSTER "
                             "sample (default config config/lobster-amzn.toml)")
    replay.add_argument("--report", metavar="DIR",
                        help="write report.html with its plots to DIR after the replay")

    cross = commands.add_parser(
        "crosscheck", help="replay the dry run's order actions through hftbacktest (a dev "
                           "dependency) and compare its fills with ours, one to one")
    cross.add_argument("recordings", nargs="*", metavar="RECORDING",
                       help="default: the config's feed.recordings")
    cross.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE",
                       help="the dry run's config (default: the shipped dry-run config)")
    cross.add_argument("--orders", metavar="CSV",
                       help="an exported orders.csv of that dry run (with --fills) instead "
                            "of running it")
    cross.add_argument("--fills", metavar="CSV", help="its exported fills.csv")
    cross.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    report = commands.add_parser("report", help="write the report of a state directory")
    report.add_argument("state_dir", metavar="STATE_DIR")
    report.add_argument("--out", required=True, metavar="DIR")

    export = commands.add_parser(
        "export", help="write a state directory's order log and fills as CSV (read-only: a "
                       "running instance's too; formats in mmdaemon/orderlog.py)")
    export.add_argument("state_dir", metavar="STATE_DIR")
    export.add_argument("--orders", metavar="FILE",
                        help="every order action sent and venue answer ('-': stdout)")
    export.add_argument("--fills", metavar="FILE", help="every journaled fill ('-': stdout)")
    export.add_argument("--config", metavar="FILE",
                        help="print prices and sizes by this config's instrument (default: "
                             "the one the journal recorded; they must agree)")

    record = commands.add_parser(
        "record", help="record the config's live feed to per-UTC-day gzip files in OUT"
    )
    record.add_argument("--config", required=True, metavar="FILE")
    record.add_argument("out", metavar="OUT", help="directory for <symbol>_<YYYYMMDD>.gz")

    sim = commands.add_parser("sim", help="serve recordings as a local Binance-compatible venue")
    sim.add_argument("recordings", nargs="+", metavar="RECORDING")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9443)
    sim.add_argument("--speed", default="1", help="1 = real time, N = N x faster, max")
    sim.add_argument("--symbol", default="BTCUSDT")
    sim.add_argument("--credentials", action="append", metavar="SOURCE",
                     help="an API key the sim accepts: 'env' (MMDAEMON_API_KEY/_SECRET, the "
                          "default) or a file with api_key and api_secret; repeat for several "
                          "accounts (each key is its own); none: order entry refuses all")
    sim.add_argument("--maker-fee-bps", default="0")
    sim.add_argument("--wait-for-subscriber", action="store_true",
                     help="start the tape when the first stream connection comes")

    for name, what in (("kill", "trip the kill switch (SIGUSR1)"),
                       ("rearm", "re-arm the kill switch (SIGUSR2)")):
        cmd = commands.add_parser(name, help=f"{what} of the running instance; with "
                                             "--global, of every instance of the desk")
        cmd.add_argument("--config", required=True, metavar="FILE")
        cmd.add_argument("--global", dest="global_", action="store_true",
                         help="through Redis ([firm] in the config): the latched desk-wide "
                              "kill key and its channel")
        if name == "kill":
            cmd.add_argument("--note", default="", help="why, stored with the latch")
    return parser


def _symbol(text: str) -> str:
    """``--symbol``: a venue symbol, in Binance's upper case whatever was typed."""
    if not (text.isascii() and text.isalnum()):
        raise argparse.ArgumentTypeError(f"expected a symbol of letters and digits such as "
                                         f"ETHUSDT, got {text!r}")
    return text.upper()


class UsageError(Exception):
    """Bad command-line input: the message is printed and the exit status is 2."""


def _speed_and_recordings(command: str, recordings: list[str], speed_text: str) -> float | None:
    """``--speed`` as a factor (None: max), once every recording is known to exist."""
    from mmdaemon.pace import parse_speed

    try:
        speed = parse_speed(speed_text)
    except ValueError as exc:
        raise UsageError(f"mmdaemon {command}: --speed: {exc}") from None
    missing = [p for p in recordings if not Path(p).is_file()]
    if missing:
        raise UsageError(f"mmdaemon {command}: no such recording: {missing[0]}")
    return speed


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`mmdaemon check-config | head`): nothing left to say to it;
        # stdout goes to /dev/null so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        early_signals.hold()


def version_text() -> str:
    """``mmdaemon --version``: the package, Python and which hot loops run."""
    from importlib.metadata import PackageNotFoundError, version

    from mmdaemon import speedups

    try:
        ours = version("mmdaemon")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "unknown (not installed)"
    return (f"mmdaemon {ours} (Python {sys.version.split()[0]}, hot loops: "
            f"{speedups.HOT_LOOPS})")


SERVICE_COMMANDS = ("run", "replay")
"""Commands that run the service: a signal during their start-up is kept for it."""


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command in SERVICE_COMMANDS:
        early_signals.install()  # the console script's earliest moment (see early_signals)
    else:
        early_signals.release()
    if args.command == "verify-book":
        # no instrument for the log's decimals: verify-book learns it from the data
        log.configure(args.log_level or "info", log_format=args.log_format)
        return verify_book(args.recordings, args.venue, args.json, args.symbol)
    if args.command == "sim":
        log.configure(args.log_level or "info", sys.stdout.buffer, log_format=args.log_format)
        return sim(args.recordings, args.host, args.port, args.speed, args.symbol,
                   args.credentials or ["env"], args.maker_fee_bps, args.wait_for_subscriber)
    if args.command == "report":
        log.configure(args.log_level or "info", log_format=args.log_format)
        return report(Path(args.state_dir), Path(args.out))
    if args.command == "export":
        from mmdaemon.orderlog import export_command

        instrument = None
        if args.config is not None:
            try:
                instrument = load_config(args.config).instrument.build()
            except (ConfigError, ValueError) as exc:
                print(f"mmdaemon export: config error: {exc}", file=sys.stderr)
                return 2
        return export_command(Path(args.state_dir), args.orders, args.fills, instrument,
                              args.config)
    if args.command == "replay" and args.venue == "lobster" and args.config == str(
        DEFAULT_CONFIG
    ):
        args.config = str(LOBSTER_CONFIG)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mmdaemon {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return check_config(config, args.config, args.price, args.recording, args.json)
    if args.command == "replay" and not args.recordings:
        args.recordings = list(config.feed.recordings)
        if not args.recordings:
            raise UsageError("mmdaemon replay: no recordings: give RECORDING... or set "
                             "feed.recordings in the config")
        missing = [p for p in args.recordings if not Path(p).is_file()]
        if missing:  # e.g. the shipped config, installed without the repository's data
            raise UsageError(f"mmdaemon replay: no such recording: {missing[0]} (named by "
                             f"feed.recordings in {args.config}; the bundled recordings come "
                             f"with the source repository, not the package): give "
                             f"RECORDING...")
    if args.command == "crosscheck":
        from mmdaemon.crosscheck import command as crosscheck

        # stdout carries the table; the dry run's log goes to stderr, warnings only
        log.configure("warning", sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        return crosscheck.main(Path(args.config), args.recordings, args.orders, args.fills,
                               args.json)
    level = args.log_level or config.logging.level  # the command line's, else the config's
    if args.command == "run":
        log.configure(level, sys.stdout.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        return run(config, Path(args.config), level, args.latency_out)
    if args.command == "record":
        log.configure(level, sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        return record(config, Path(args.out))
    if args.command == "replay":
        # stdout carries the result (summary); the log goes to stderr
        log.configure(level, sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        return replay(config, args.recordings, args.speed, args.state_dir, args.json,
                      Path(args.report) if args.report else None, args.clock, level)
    if args.global_:
        return global_switch(config, args.command, getattr(args, "note", ""),
                             args.log_format)
    return signal_instance(config, args.command,
                           signal.SIGUSR1 if args.command == "kill" else signal.SIGUSR2)


def _run_service(service: Service, progress: bool = False) -> None:
    import uvloop

    async def main() -> None:
        if not progress:
            await service.run()
            return
        from mmdaemon.progress import show_progress

        shower = asyncio.create_task(show_progress(service, sys.stderr))
        try:
            await service.run()
        finally:
            shower.cancel()
            await asyncio.gather(shower, return_exceptions=True)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    finally:
        _latch_kill_after_close(service)


def _latch_kill_after_close(service: Service) -> None:
    """A SIGUSR1 that reached the process after the service had closed its kill latch (the
    runner's teardown, a failed start): latched on disk all the same, as ``mmdaemon kill``
    does for a state directory no process holds. After this check the operator's signals
    stay blocked: one in the interpreter's last milliseconds is dropped, not latched (and
    ``mmdaemon kill`` latches it once the process is gone)."""
    from mmdaemon.latch import latch_kill_offline
    from mmdaemon.statedir import StateDirLocked

    early_signals.hold()  # from here to the exit a signal is dropped, never fatal
    if signal.SIGUSR1 not in early_signals.take() and signal.SIGUSR1 not in signal.sigpending():
        return
    try:
        path = latch_kill_offline(service.state_dir, "operator_kill_switch", time.time_ns())
    except (OSError, StateDirLocked) as exc:
        print(f"mmdaemon: a kill signal arrived as the service stopped and could not be "
              f"latched: {exc}", file=sys.stderr)
        return
    print(f"mmdaemon: a kill signal arrived as the service stopped: latched in {path}",
          file=sys.stderr)


def _metrics(service: Service, report_dir: Path | None, logger: Any) -> dict[str, Any]:
    """The article's metrics from the replay's journal; with ``report_dir`` the report too.

    Only the report path imports :mod:`mmdaemon.report` (and through it matplotlib, about
    half a second): the summary's metrics need nothing but :mod:`mmdaemon.analytics`."""
    from mmdaemon.analytics import compute_metrics
    from mmdaemon.journal_reader import load_journal, load_markouts
    from mmdaemon.market_hours import market_hours

    journal = service.state_dir / "journal.sqlite"
    config = service.config
    options: dict[str, Any] = {"horizons_s": config.report.markout_horizons_s,
                               "currency": service.engine.currency,
                               **market_hours(config.instrument.venue)}
    if report_dir is not None:
        from mmdaemon.report import write_report

        metrics: dict[str, Any] = write_report(
            journal, service.instrument, report_dir,
            max_spread_bps=config.report.max_spread_bps,
            inventory_soft_lots=config.risk.inventory_soft_lots,
            inventory_hard_lots=config.risk.inventory_hard_lots, **options)
        logger.info("report_written", path=str(report_dir / "report.html"))
        return metrics
    fills, samples = load_journal(journal)
    result: dict[str, Any] = compute_metrics(fills, samples, service.instrument,
                                             markouts=load_markouts(journal),
                                             max_spread_bps=config.report.max_spread_bps,
                                             **options)
    return result


def report(state_dir: Path, out: Path) -> int:
    """``mmdaemon report``: the report of the journal in ``state_dir``."""
    import sqlite3

    from mmdaemon.market_hours import market_hours
    from mmdaemon.markouts import DEFAULT_HORIZONS_S, quote_currency
    from mmdaemon.model import Instrument
    from mmdaemon.report import write_report

    journal = state_dir / "journal.sqlite"
    if not journal.is_file():
        print(f"mmdaemon report: no journal at {journal}", file=sys.stderr)
        return 2
    row = sqlite3.connect(f"file:{journal}?mode=ro", uri=True).execute(
        "SELECT value FROM state WHERE key = 'instrument'").fetchone()
    if row is None:
        print(f"mmdaemon report: {journal} names no instrument (written by an older version)",
              file=sys.stderr)
        return 2
    spec = orjson.loads(row[0])
    instrument = Instrument(spec["symbol"], spec["tick_size"], spec["lot_size"])
    venue = spec.get("venue", "")
    write_report(journal, instrument, out, **market_hours(venue),
                 currency=quote_currency(instrument.symbol, venue),
                 horizons_s=spec.get("markout_horizons_s", DEFAULT_HORIZONS_S),
                 max_spread_bps=spec.get("max_spread_bps", 10.0),
                 inventory_soft_lots=spec.get("inventory_soft_lots"),
                 inventory_hard_lots=spec.get("inventory_hard_lots"))
    print(f"report written to {out / 'report.html'}")
    return 0


def run(config: Config, config_path: Path | None = None, log_level: str | None = None,
        latency_out: Path | None = None) -> int:
    """``mmdaemon run``: the daemon, until its feed ends or it is told to stop; ``log_level``
    the log's level, when not the config's; ``latency_out`` where to write the latencies
    measured (at stop; a path that cannot take it is refused now, exit 2)."""
    from mmdaemon.daemon import Service
    from mmdaemon.exchange.latency import check_writable

    if latency_out is not None and (why := check_writable(latency_out)):
        print(f"mmdaemon run: --latency-out: {why}", file=sys.stderr)
        return 2

    logger = log.get_logger(instrument=config.instrument.symbol)
    try:
        service = Service(config, SystemClock(), logger, write_pid=True,
                          config_path=config_path, log_level=log_level,
                          latency_out=latency_out)
    except ValueError as exc:
        print(f"mmdaemon run: config error: {exc}", file=sys.stderr)
        return 2
    return _serve(service, logger)


def _serve(service: Service, logger: Any, progress: bool = False, replaying: bool = False) -> int:
    """Run a built service; 2 if its state directory is taken, the venue refuses it for a
    reason that restarting cannot fix (credentials, URL) or, ``replaying``, a recording
    cannot be read; 1 if it failed (``run`` on recordings too: it is left to systemd's
    restart policy like any feed that dies)."""
    from mmdaemon.exchange.base import VenueRefused
    from mmdaemon.journal import JournalRefused
    from mmdaemon.startup import StateDirUnusable
    from mmdaemon.statedir import StateDirLocked

    try:
        _run_service(service, progress)
    except (StateDirLocked, JournalRefused) as exc:  # a restart won't help: exit 2
        event = "state_dir_locked" if isinstance(exc, StateDirLocked) else "journal_refused"
        logger.error(event, error=str(exc))
        print(f"mmdaemon: {exc}", file=sys.stderr)
        return 2
    except StateDirUnusable as exc:  # may be passing (a full disk): systemd retries
        logger.error("state_dir_unusable", error=str(exc))
        print(f"mmdaemon: {exc}", file=sys.stderr)
        return 1
    except VenueRefused as exc:
        logger.error("venue_refused", error=str(exc))
        print(f"mmdaemon: the venue refused us: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        unreadable = _recording_error(exc) if replaying else None
        if unreadable is not None:  # unusable input, not a failure of the service
            logger.error("recording_unreadable", error=str(unreadable))
            print(f"mmdaemon replay: {unreadable}", file=sys.stderr)
            return 2
        logger.error("service_failed", error=repr(exc))
        return 1
    return int(service.exit_code)


def _recording_error(exc: BaseException) -> RecordingError | None:
    """The :class:`RecordingError` that ``exc`` is, or that is all ``exc`` holds (the
    service's TaskGroup raises its feed task's error inside an ExceptionGroup); else None."""
    while isinstance(exc, BaseExceptionGroup):
        if exc.split(RecordingError)[1] is not None:
            return None  # something else failed too
        exc = exc.exceptions[0]
    return exc if isinstance(exc, RecordingError) else None


def replay(config: Config, recordings: list[str], speed_text: str, state_dir: str | None,
           as_json: bool, report_dir: Path | None = None,
           event_clock: ReplayClock | None = None, log_level: str | None = None) -> int:
    """``mmdaemon replay``: the same service on recordings, paper exchange, then a summary;
    ``event_clock`` None runs on the config's ``feed.clock``; ``log_level`` the log's level,
    when not the config's."""
    from mmdaemon.daemon import Service

    speed = _speed_and_recordings("replay", recordings, speed_text)
    if config.exchange.adapter != "paper":
        # a dry run never trades: a live config replayed here must not touch the venue
        config = dataclasses.replace(config,
                                     exchange=dataclasses.replace(config.exchange,
                                                                  adapter="paper"))
    if config.firm.enabled:
        # nor the desk: its simulated position must not count in the firm's exposure
        config = dataclasses.replace(config,
                                     firm=dataclasses.replace(config.firm, enabled=False))
    logger = log.get_logger(instrument=config.instrument.symbol, mode="replay")
    if config.instrument.venue == "lobster":
        _check_lobster(recordings, config)
    with tempfile.TemporaryDirectory(prefix="mmdaemon-replay-") as tmp:
        try:
            service = Service(config, SystemClock(), logger, recordings=recordings,
                              speed=speed, event_clock=event_clock,
                              state_dir=Path(state_dir or tmp), log_level=log_level)
        except ValueError as exc:
            print(f"mmdaemon replay: config error: {exc}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        code = _serve(service, logger, progress=not as_json and sys.stderr.isatty(),
                      replaying=True)
        if code:
            return code
        market = service.engine.market
        if market.frames - market.undecodable - market.snapshots <= 0:
            # nothing of the instrument decoded (a symbol-less REST snapshot at most)
            lines = market.frames + market.malformed - market.undecodable
            logger.error("recording_unusable", recordings=recordings, lines=lines,
                         first_malformed=market.first_malformed)
            why = f" (first: {market.first_malformed})" if market.first_malformed else ""
            print(f"mmdaemon replay: {', '.join(recordings)}: no frame of "
                  f"{config.instrument.symbol} decoded in {lines} lines{why}", file=sys.stderr)
            return 2
        summary = service.summary(time.perf_counter() - start)
        summary["warnings"] = summary_warnings(summary)
        summary["metrics"] = _metrics(service, report_dir, logger)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        print(_replay_table(summary, config))
        if report_dir is not None:
            print(f"report: {report_dir / 'report.html'}")
    return 0


def _check_lobster(recordings: list[str], config: Config) -> None:
    """A LOBSTER pair is checked before the service starts (files readable, the trading date
    in their names), so a bad one is a usage error naming the file, not a failed task."""
    from mmdaemon.feed.lobster import read_lobster

    if len(recordings) != 2:
        raise UsageError(f"mmdaemon replay: a LOBSTER replay takes two files, MESSAGE_CSV "
                         f"ORDERBOOK_CSV; got {len(recordings)}")
    try:
        read_lobster(recordings[0], recordings[1], config.instrument.build())
    except (RecordingError, ValueError) as exc:
        raise UsageError(f"mmdaemon replay: {' '.join(recordings)}: {exc}") from None


REPORT_HEADLINES = ("spread_capture_pnl", "inventory_pnl", "sharpe", "max_drawdown",
                    "win_rate", "negative_markout_rate", "adverse_move_rate", "quote_uptime",
                    "two_sided_share", "quoted_spread_bps_mean", "order_to_trade", "fill_rate")
"""The report figures the people's summary shows; ``--json`` and ``--report`` have them all."""


def _replay_table(summary: dict[str, Any], config: Config) -> str:
    """The summary for people: money in the quote currency, sizes in the base currency,
    then the report's headline figures (markouts in bps of the mid at each horizon)."""
    money = ("cash", "realized_pnl", "unrealized_pnl", "fees", "total_pnl",
             "spread_capture_pnl", "inventory_pnl", "max_drawdown")
    scalars = {k: v for k, v in summary.items()
               if not isinstance(v, dict | list) and k != "first_malformed"}  # in a warning
    metrics = summary.get("metrics")
    if isinstance(metrics, dict):
        scalars.update((k, metrics[k]) for k in REPORT_HEADLINES if k in metrics)
        if "sharpe" in scalars:  # never a bare figure: n/a or not, with its interval count
            from mmdaemon.sharpe import sharpe_text

            scalars["sharpe"] = sharpe_text(metrics)
        for m in metrics.get("markouts", []):
            scalars[f"markout_{m['horizon_s']:g}s_bps"] = m["markout_bps"]
    width = max(map(len, scalars))
    rows = []
    for key, value in scalars.items():
        if key in money and isinstance(value, float):
            value = f"{value:,.6f}"
        elif isinstance(value, float):
            value = f"{value:,.8g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        rows.append(f"{key:<{width}}  {value}")
    unsendable = {k: v for k, v in summary.get("unsendable", {}).items() if v}
    rows += [f"{'unsendable ' + k:<{width}}  {v:,}" for k, v in unsendable.items()]
    deferred = unsendable.get(ORDER_RATE, 0)
    notes = ([f"note: {deferred:,} order actions waited for the order rate limit "
              f"(risk.max_orders_per_s, risk.order_burst); the next quote retries them"]
             if deferred and not _rate_starved(summary) else [])
    return "\n".join([f"dry run of {config.instrument.symbol} (paper exchange)", *rows,
                      "(every figure: --json, or --report DIR for the report with plots)",
                      *notes, *(f"WARNING: {w}" for w in summary["warnings"])])


def _rate_starved(summary: dict[str, Any]) -> bool:
    """The order rate limit held back more actions than went out."""
    return bool(summary["unsendable"][ORDER_RATE] > summary["orders"] + summary["amends"])


def summary_warnings(summary: dict[str, Any]) -> list[str]:
    """What a dry run's summary must not leave for the reader to notice: the run did less
    than it seems to (nothing quoted, nothing sent, quotes held back, frames lost)."""
    warnings = []
    if summary["quotes"] == 0:
        warnings.append("no quote was decided: the book never synced (no depth snapshot in "
                        "the recording, or none that fits the instrument)")
    elif summary["orders"] == 0:
        warnings.append(f"{summary['quotes']:,} quotes and not one order was sent")
    unsendable = {k: v for k, v in summary["unsendable"].items() if v and k != ORDER_RATE}
    if unsendable:
        warnings.append(f"{sum(unsendable.values()):,} quote sides or order actions could "
                        f"not become orders ({', '.join(unsendable)}): see the "
                        f"quote_unsendable and order_blocked log lines, and `mmdaemon "
                        f"check-config`")
    if _rate_starved(summary):
        warnings.append(f"the order rate limit held back {summary['unsendable'][ORDER_RATE]:,} "
                        f"order actions, more than the {summary['orders'] + summary['amends']:,}"
                        f" sent: risk.max_orders_per_s / risk.order_burst starve the quoting")
    if summary["malformed"]:
        warnings.append(f"{summary['malformed']:,} frames or lines did not decode (first: "
                        f"{summary['first_malformed']}): see frame_malformed in the log")
    if summary["gaps"]:
        warnings.append(f"{summary['gaps']:,} sequence gaps: no quotes until a later snapshot "
                        f"resynced the book")
    if summary["time_backsteps"]:
        warnings.append(f"{summary['time_backsteps']:,} frames were older than the frame "
                        f"before them (recordings out of order?): handled at the latest time")
    if summary["state"] != "ACTIVE":
        warnings.append(f"the run ended {summary['state']}")
    return warnings


def check_config(config: Config, path: str, price_text: str | None,
                 recordings: list[str] | None, as_json: bool) -> int:
    """``mmdaemon check-config``: 0 valid (warnings or not); a config that does not load
    never gets here (2). 2 also for a reference price or recording that cannot be used."""
    from mmdaemon.config_check import as_json as review_json
    from mmdaemon.config_check import render, review, sample_recording

    price: Decimal | None = None
    source = ""
    sample = None
    if price_text is not None:
        price = _reference_price(price_text, config)
        source = "--price"
    else:
        configured = recordings is None
        paths = recordings or [p for p in config.feed.recordings if Path(p).is_file()]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise UsageError(f"mmdaemon check-config: --recording: no such file: {missing[0]}")
        if paths:
            try:
                sample = sample_recording(paths, config)
            except (RecordingError, ValueError) as exc:
                text = str(exc)  # RecordingError names the file itself
                where = "" if paths[0] in text else f"{paths[0]}: "
                raise UsageError(f"mmdaemon check-config: {where}{text}") from None
            if sample.price is None:
                why = (f"; {sample.malformed:,} of its first {sample.frames:,} frames do not "
                       f"decode with this instrument (first: {sample.first_error})"
                       if sample.malformed else "")
                raise UsageError(f"mmdaemon check-config: no price in {' '.join(paths)}{why}")
            price = sample.price
            source = (f"first price of {sample.path}"
                      + (" (the config's feed.recordings)" if configured else ""))
    result = review(config, price, source, sample)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(review_json(path, result)) + b"\n")
    else:
        print(render(path, result))
    return 0


_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _reference_price(text: str, config: Config) -> Decimal:
    """``--price``: a plain positive decimal (quote currency), from one tick up to the
    largest price in ticks the core holds."""
    instrument = config.instrument.build()
    if _PLAIN_DECIMAL.fullmatch(text):
        price = Decimal(text)
        if instrument.tick_size <= price <= instrument.tick_size * MAX_UNITS:
            return price
    raise UsageError(f"mmdaemon check-config: --price: expected a plain decimal number in "
                     f"the quote currency, from one tick ({instrument.tick_size}) to "
                     f"{MAX_UNITS:,} ticks, got {text!r}")


def signal_instance(config: Config, command: str, sig: signal.Signals) -> int:
    """``mmdaemon kill``/``rearm``: send ``sig`` to the process that holds the lock on the
    config's state directory (:mod:`mmdaemon.statedir`), whatever the pid file says; the
    pid file is only cross-checked. 0 sent; 1 no instance is running there (the pid file,
    if any, is stale); 2 who holds the lock cannot be told from here."""
    from mmdaemon.daemon import PID_FILE
    from mmdaemon.statedir import LOCK_FILE, StateDirLocked, signal_holder

    state_dir = Path(config.state.dir)
    lock_path = state_dir / LOCK_FILE
    pid_path = state_dir / PID_FILE
    named: int | None = None
    try:
        named = int(pid_path.read_text().strip())
        pid_file = f"the pid file {pid_path} names pid {named}"
    except FileNotFoundError:
        pid_file = f"no pid file {pid_path}"
    except (OSError, ValueError) as exc:  # garbled: the lock decides anyway
        pid_file = f"unusable pid file {pid_path}: {exc}"
    try:
        pid = signal_holder(state_dir, sig)
    except (OSError, StateDirLocked) as exc:
        print(f"mmdaemon {command}: cannot tell which process holds {lock_path}: {exc} "
              f"({pid_file})", file=sys.stderr)
        return 2
    if pid is None:
        stale = ("no pid file" if pid_file.startswith("no pid file") else
                 f"stale pid file names pid {named}" if named is not None else pid_file)
        print(f"mmdaemon {command}: no instance is running on {state_dir} ({stale})",
              file=sys.stderr)
        if sig is signal.SIGUSR1:  # between runs, starting, restarting: the next start
            return _kill_offline(state_dir, command)
        return 1
    if pid == 0:
        print(f"mmdaemon {command}: {lock_path} is held by a process outside this pid "
              f"namespace: run the command where the instance runs", file=sys.stderr)
        return 2
    if named != pid:  # the lock decided; say what the pid file got wrong
        print(f"mmdaemon {command}: {pid_file}; pid {pid} holds {lock_path}", file=sys.stderr)
    print(f"sent {sig.name} to pid {pid}")
    return 0


def _kill_offline(state_dir: Path, command: str) -> int:
    """``mmdaemon kill`` with no instance running: latch the kill in the state directory,
    so the next start (systemd's restart, an instance still starting) is KILLED. Exit 1
    all the same: no process was signalled."""
    from mmdaemon.latch import latch_kill_offline
    from mmdaemon.statedir import StateDirLocked, signal_holder

    if not state_dir.is_dir():  # no instance ever ran here (a config for another host?)
        return 1
    try:
        path = latch_kill_offline(state_dir, "operator_kill_switch", time.time_ns())
    except StateDirLocked:  # an instance took the directory meanwhile: signal that one
        pid = signal_holder(state_dir, signal.SIGUSR1)
        if pid:
            print(f"sent SIGUSR1 to pid {pid} (it started meanwhile)")
            return 0
        print(f"mmdaemon {command}: {state_dir} is busy; the kill is not latched",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mmdaemon {command}: cannot latch the kill in {state_dir}: {exc}",
              file=sys.stderr)
        return 2
    print(f"mmdaemon {command}: the kill is latched in {path}: the next start is KILLED",
          file=sys.stderr)
    return 1


def global_switch(config: Config, command: str, note: str, log_format: str = "auto") -> int:
    """``mmdaemon kill --global`` / ``rearm --global``: set (or clear) the desk's latched
    kill key in Redis and publish it on the control channel. 0 done, 1 Redis unreachable
    or refused, 2 no usable ``[firm]`` section. ``log_format``: ``--log-format``."""
    from mmdaemon.exchange.credentials import CredentialsError, load_redis_password
    from mmdaemon.risk.firm import Keys
    from mmdaemon.risk.redis_bus import BUS_ERRORS, global_kill, global_rearm

    firm = config.firm
    if not firm.enabled:
        print(f"mmdaemon {command} --global: config error: firm.enabled: expected true (the "
              f"global switch lives in the firm risk bus's Redis)", file=sys.stderr)
        return 2
    # the log on stderr: stdout says what was done
    log.configure(config.logging.level, sys.stderr.buffer, log_format=log_format)
    logger = log.get_logger(command=f"{command} --global")
    keys = Keys(firm.namespace, firm.desk)
    try:
        password = load_redis_password(firm.password,
                                       allow_readable=firm.allow_readable_password)
    except CredentialsError as exc:
        print(f"mmdaemon {command} --global: {exc}", file=sys.stderr)
        return 2
    try:
        if command == "kill":
            receivers, sent_ns = asyncio.run(global_kill(firm, password, note))
            logger.warning("global_kill_set", key=keys.kill, channel=keys.channel,
                           receivers=receivers, note=note, sent_ns=sent_ns)
            print(f"global kill switch latched: {keys.kill} set, 'kill' published on "
                  f"{keys.channel} to {receivers} listening instance(s)")
        else:
            was_set, receivers = asyncio.run(global_rearm(firm, password))
            logger.warning("global_kill_cleared", key=keys.kill, channel=keys.channel,
                           receivers=receivers, was_set=was_set)
            print(f"global kill switch cleared: {keys.kill} "
                  f"{'deleted' if was_set else 'was not set'}, 'rearm' published on "
                  f"{keys.channel} to {receivers} listening instance(s) (each re-arms if the "
                  f"global switch killed it and no breaker holds)")
    except BUS_ERRORS as exc:
        logger.error("global_switch_failed", command=command, url=firm.redis_url,
                     error=repr(exc))
        print(f"mmdaemon {command} --global: Redis at {firm.redis_url} unreachable or "
              f"refused: {exc!r}; the switch is NOT confirmed", file=sys.stderr)
        return 1
    return 0


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
    """``mmdaemon record``: the live feed of ``config`` into ``out``; stops on SIGTERM/SIGINT."""
    from mmdaemon.feed.recorder import FrameWriter
    from mmdaemon.feed.websocket import Reconnected, WebsocketFeed
    from mmdaemon.wiring import feed_settings

    if not config.feed.url:
        print("mmdaemon record: config error: feed.url: expected the venue's websocket URL",
              file=sys.stderr)
        return 2
    logger = log.get_logger(command="record", instrument=config.instrument.symbol)
    writer = FrameWriter(out, config.instrument.symbol, report=_reporter(logger))
    feed = WebsocketFeed(feed_settings(config), logger)

    async def main(stop: asyncio.Event) -> None:
        async def consume() -> None:
            async for item in feed.frames():
                if isinstance(item, Reconnected):
                    continue  # the snapshot fetched after it is what a replay needs
                writer.write(*item)

        async def flusher() -> None:
            while True:  # a quiet feed still gets its last frames onto the disk
                await asyncio.sleep(writer.flush_interval_s)
                writer.flush()

        tasks = [asyncio.create_task(consume()), asyncio.create_task(flusher())]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([tasks[0], stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in (*tasks, stopper):
            task.cancel()
        failure = (await asyncio.gather(*tasks, stopper, return_exceptions=True))[0]
        if isinstance(failure, Exception):  # the writer failed: not a clean stop
            raise failure

    logger.info("record_started", out=str(out), url=config.feed.url)
    try:
        import uvloop

        uvloop.run(_until_signalled(main)())
    except (RecordingError, OSError) as exc:  # a day file it must not append to; the disk
        logger.error("record_failed", error=str(exc))
        print(f"mmdaemon record: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, RecordingError) else 1
    finally:
        writer.close()
        logger.info("record_stopped", frames=writer.frames, files=[str(p) for p in writer.files],
                    reconnects=feed.reconnects, snapshots=feed.snapshots)
    return 0


def sim(recordings: list[str], host: str, port: int, speed_text: str, symbol: str,
        credentials: list[str], maker_fee_bps: str, wait_for_subscriber: bool = False) -> int:
    """``mmdaemon sim``: serve ``recordings`` until SIGTERM/SIGINT."""
    from mmdaemon.exchange.credentials import CredentialsError, load_credentials
    from mmdaemon.exchange.fill_model import PaperVenue
    from mmdaemon.sim.orders import OrderEntry
    from mmdaemon.sim.server import SimVenue

    speed = _speed_and_recordings("sim", recordings, speed_text)
    instrument = BINANCE_SPOT_BTCUSDT
    if symbol != instrument.symbol:
        print(f"mmdaemon sim: --symbol: only {instrument.symbol} is known", file=sys.stderr)
        return 2
    logger = log.get_logger(command="sim")
    order_entry: OrderEntry | None = None
    try:
        # the fake venue's accounts: a path on the command line is relative to the working
        # directory, and the test keys need no guarding
        accounts = [load_credentials(source if source == "env" else str(Path(source).absolute()),
                                     allow_readable=True) for source in credentials]
        # matching on the sim's own clock: loopback is the latency, so the venue adds none
        order_entry = OrderEntry(instrument, PaperVenue(instrument, 0, maker_fee_bps, "0"),
                                 {c.api_key: c.secret for c in accounts},
                                 lambda: time.time_ns() // 1_000_000)
    except CredentialsError as exc:
        logger.warning("sim_market_data_only", reason=str(exc))
    except ValueError as exc:
        print(f"mmdaemon sim: {exc}", file=sys.stderr)
        return 2

    async def main(stop: asyncio.Event) -> None:
        async with SimVenue(recordings, instrument, speed=speed, clock=SystemClock(),
                            host=host, port=port, order_entry=order_entry,
                            wait_for_subscriber=wait_for_subscriber) as venue:
            logger.info("sim_listening", ws_url=venue.ws_url, rest_url=venue.rest_url,
                        streams=f"{venue.ws_url}/stream?streams=...",
                        raw_streams=f"{venue.ws_url}/ws", ws_api=f"{venue.ws_url}/ws-api/v3",
                        speed=speed or "max", order_entry=order_entry is not None)
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
        print(f"mmdaemon sim: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    logger.info("sim_stopped")
    return 0
