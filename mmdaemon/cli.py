"""``mmdaemon <command>``: the command-line entry point.

Exit status: 0 success, 1 a check failed (e.g. book mismatches), 2 unusable input or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config import Config, ConfigError, load_config
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.venues.binance import BinanceCodec, Market
from mmdaemon.verify import BookVerifier

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "dryrun.toml"

VENUES: dict[str, tuple[Market, Instrument]] = {
    "binance-spot": ("spot", BINANCE_SPOT_BTCUSDT),
    "binance-usdm": ("usdm", BINANCE_USDM_BTCUSDT),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdaemon", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info", choices=sorted(log.LEVELS))
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify-book",
        help="rebuild the book from a recording and compare it with the venue's bookTicker",
    )
    verify.add_argument("recordings", nargs="+", metavar="RECORDING")
    verify.add_argument("--venue", choices=sorted(VENUES), default="binance-spot")
    verify.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    run = commands.add_parser("run", help="run the daemon (logs: JSON lines on stdout)")
    run.add_argument("--config", required=True, metavar="FILE")

    replay = commands.add_parser(
        "replay", help="dry run: replay recordings through the daemon with the paper exchange"
    )
    replay.add_argument("recordings", nargs="+", metavar="RECORDING")
    replay.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE")
    replay.add_argument("--speed", default="max", help="1 = real time, N = N x faster, max")
    replay.add_argument("--state-dir", metavar="DIR",
                        help="keep the journal here (default: a temporary directory)")
    replay.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    for name, what in (("kill", "trip the kill switch (SIGUSR1)"),
                       ("rearm", "re-arm the kill switch (SIGUSR2)")):
        cmd = commands.add_parser(name, help=f"{what} of the running instance")
        cmd.add_argument("--config", required=True, metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "verify-book":
        log.configure(args.log_level)
        return verify_book(args.recordings, args.venue, args.json)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mmdaemon {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        log.configure(config.logging.level, sys.stdout.buffer)
        return run(config)
    if args.command == "replay":
        # stdout carries the result (summary); the log goes to stderr
        log.configure(config.logging.level if args.log_level == "info" else args.log_level,
                      sys.stderr.buffer)
        return replay(config, args.recordings, args.speed, args.state_dir, args.json)
    return signal_instance(config, signal.SIGUSR1 if args.command == "kill" else signal.SIGUSR2)


def _run_service(service: Any) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(service.run())


def run(config: Config) -> int:
    """``mmdaemon run``: the daemon, until its feed ends or it is told to stop."""
    from mmdaemon.daemon import Service

    logger = log.get_logger(instrument=config.instrument.symbol)
    try:
        service = Service(config, SystemClock(), logger, write_pid=True)
    except ValueError as exc:
        print(f"mmdaemon run: config error: {exc}", file=sys.stderr)
        return 2
    return _serve(service, logger)


def _serve(service: Any, logger: Any) -> int:
    """Run a built service; 2 if its state directory is taken, 1 if it failed."""
    from mmdaemon.journal import JournalLocked

    try:
        _run_service(service)
    except JournalLocked as exc:
        logger.error("state_dir_locked", error=str(exc))
        print(f"mmdaemon: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logger.error("service_failed", error=repr(exc))
        return 1
    return int(service.exit_code)


def replay(config: Config, recordings: list[str], speed_text: str, state_dir: str | None,
           as_json: bool) -> int:
    """``mmdaemon replay``: the same service on recordings, paper exchange, then a summary."""
    from mmdaemon.daemon import Service
    from mmdaemon.feed.replay import parse_speed

    try:
        speed = parse_speed(speed_text)
    except ValueError as exc:
        print(f"mmdaemon replay: --speed: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in recordings if not Path(p).is_file()]
    if missing:
        print(f"mmdaemon replay: no such recording: {missing[0]}", file=sys.stderr)
        return 2
    logger = log.get_logger(instrument=config.instrument.symbol, mode="replay")
    with tempfile.TemporaryDirectory(prefix="mmdaemon-replay-") as tmp:
        try:
            service = Service(config, SystemClock(), logger, recordings=recordings,
                              speed=speed, state_dir=Path(state_dir or tmp))
        except ValueError as exc:
            print(f"mmdaemon replay: config error: {exc}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        code = _serve(service, logger)
        if code:
            return code
        summary = service.summary(time.perf_counter() - start)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        print(_replay_table(summary, config))
    return 0


def _replay_table(summary: dict[str, Any], config: Config) -> str:
    """The summary for people: money in the quote currency, sizes in the base currency."""
    money = ("cash", "realized_pnl", "unrealized_pnl", "fees", "total_pnl")
    width = max(map(len, summary))
    rows = []
    for key, value in summary.items():
        if key in money:
            value = f"{value:,.6f}"
        elif isinstance(value, float):
            value = f"{value:,.8g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        rows.append(f"{key:<{width}}  {value}")
    return f"dry run of {config.instrument.symbol} (paper exchange)\n" + "\n".join(rows)


def signal_instance(config: Config, sig: signal.Signals) -> int:
    """Send ``sig`` to the instance whose pid file is in the config's state directory."""
    from mmdaemon.daemon import PID_FILE

    pid_path = Path(config.state.dir) / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
        # a pid file left by a crash may name an unrelated process by now
        if b"mmdaemon" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            raise ValueError(f"pid {pid} is not an mmdaemon process (stale pid file)")
        os.kill(pid, sig)
    except (OSError, ValueError) as exc:
        print(f"mmdaemon: cannot signal the instance via {pid_path}: {exc}", file=sys.stderr)
        return 2
    print(f"sent {sig.name} to pid {pid}")
    return 0


def verify_book(paths: list[str], venue: str, as_json: bool) -> int:
    """Run the book verification over ``paths``; see :mod:`mmdaemon.verify`."""
    logger = log.get_logger(command="verify-book")
    market, instrument = VENUES[venue]
    verifier = BookVerifier(BinanceCodec(instrument, market), report=_reporter(logger))
    try:
        for item in read_recording(paths):
            if type(item) is tuple:
                verifier.on_frame(*item)
            else:
                verifier.on_malformed(item)  # type: ignore[arg-type]
    except RecordingError as exc:
        logger.error("recording_unreadable", error=str(exc))
        print(f"mmdaemon verify-book: {exc}", file=sys.stderr)
        return 2
    summary = verifier.summary()
    if summary["frames"] == 0:
        logger.error("recording_empty", paths=paths)
        print("mmdaemon verify-book: no frames in the recording(s)", file=sys.stderr)
        return 2
    summary["venue"] = venue
    summary["instrument"] = instrument.symbol
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        print(_human_summary(summary, instrument))
    return 0 if summary["ok"] else 1


def _reporter(logger: Any) -> Any:
    def report(event: str, **fields: Any) -> None:
        logger.warning(event, **fields)

    return report


def _human_summary(s: dict[str, Any], instrument: Instrument) -> str:
    def px(ticks: int | None) -> str:
        return "-" if ticks is None else instrument.price_str(ticks)

    verdict = "OK" if s["ok"] else "FAILED"
    return (
        f"verify-book {verdict}: {s['frames']} frames, {s['depth_updates']} diffs applied, "
        f"{s['trades']} trades, {s['tickers']} tickers\n"
        f"  compared {s['compared']} bookTickers: {s['mismatches']} mismatches "
        f"({s['not_comparable']} not comparable)\n"
        f"  gaps {s['gaps']}, resyncs {s['resyncs']}, crossed {s['crossed']}, "
        f"malformed {s['malformed']}\n"
        f"  final book: {px(s['best_bid'])} / {px(s['best_ask'])} at update "
        f"{s['last_update_id']} ({'synced' if s['synced_at_end'] else 'NOT synced'})"
    )
