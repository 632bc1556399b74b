"""``mmdaemon <command>``: the command-line entry point.

Exit status: 0 success, 1 a check failed (e.g. book mismatches), 2 unusable input or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from mmdaemon import log
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.venues.binance import BinanceCodec, Market
from mmdaemon.verify import BookVerifier

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.configure(args.log_level)
    if args.command == "verify-book":
        return verify_book(args.recordings, args.venue, args.json)
    raise AssertionError(args.command)  # argparse rejects unknown commands


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
