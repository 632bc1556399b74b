"""``mmdaemon <command>``: the command-line entry point.

Exit status: 0 success, 1 a check failed (e.g. book mismatches), 2 unusable input or usage;
``status`` also 3: the instance is stopped (mmdaemon.commands.status).
"""

# This module parses the command line and dispatches; each command's body is in
# mmdaemon.commands, imported when that command runs (the others start sooner).

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdaemon import early_signals, log
from mmdaemon.commands.usage import UsageError
from mmdaemon.config import VENUES, ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.defaults import DRYRUN, LOBSTER, bundled_config

DEFAULT_CONFIG = bundled_config(DRYRUN)
LOBSTER_CONFIG = bundled_config(LOBSTER)


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


class _Version(argparse.Action):
    """``--version``: :func:`version_text` on stdout (exit 0), read only when asked for:
    the installed package's metadata is not every command's business."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdaemon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version, the Python and the hot loops in use, and exit")
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
    # extend: given twice, both lists count (store kept the last one alone, silently)
    replay.add_argument("--reference", action="extend", nargs="+", metavar="REF",
                        help="the reference feed's recordings, merged by receive time (needs "
                             "a [reference] section; default: its recordings)")
    replay.add_argument("--report", metavar="DIR",
                        help="write report.html with its plots to DIR after the replay")
    replay.add_argument("--cache", choices=("use", "off", "build"), default="use",
                        help="the recordings' decoded-event cache (docs/event-cache.md): "
                             "use it when valid (default), off: parse the recordings, "
                             "build: (re)build it when missing or stale, then use it")

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

    fit = commands.add_parser(
        "fit-microprice", help="fit Stoikov's micro-price table on recordings (their "
                               "bookTicker stream) for fair-value mode 'stoikov'")
    fit.add_argument("recordings", nargs="+", metavar="RECORDING")
    fit.add_argument("--config", required=True, metavar="FILE",
                     help="the instrument the table is for (venue, symbol, tick)")
    fit.add_argument("--out", required=True, metavar="TABLE.json", type=Path)
    fit.add_argument("--buckets", type=int, default=5,
                     help="imbalance buckets, odd, 1..21 (default 5)")
    fit.add_argument("--spreads", type=int, default=2,
                     help="spread states 1..K ticks, K 1..10 (default 2)")
    fit.add_argument("--max-move-ticks", type=int, default=1,
                     help="mid moves kept, in ticks (default 1, the paper's); larger "
                          "jumps are dropped and counted")

    cal = commands.add_parser(
        "calibrate", help="measure volatility, market-order intensity by depth (the A, k of "
                          "AS/GLFT) and spread/depth on recordings; print a TOML snippet")
    cal.add_argument("recordings", nargs="*", metavar="RECORDING",
                     help="default: the config's feed.recordings")
    cal.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE",
                     help="the instrument and clock (default: the shipped dry-run config)")
    cal.add_argument("--out", default="calibration", metavar="DIR", type=Path,
                     help="write DIR/calibration.html (default ./calibration)")
    cal.add_argument("--no-page", action="store_true", help="write no page")
    cal.add_argument("--sigma-interval-s", type=float, default=1.0,
                     help="the volatility's sampling interval, s of event time (default 1)")
    cal.add_argument("--min-arrivals", type=int, default=20,
                     help="the deepest depth fitted is still reached by this many market "
                          "orders (default 20)")
    cal.add_argument("--json", action="store_true", help="print one JSON object on stdout")

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

    sweep = commands.add_parser(
        "sweep", help="dry runs of many configurations (a grid or random search over config "
                      "keys) in parallel: runs.csv and sweep.html in --out (docs/sweep.md)")
    sweep.add_argument("recordings", nargs="+", metavar="RECORDING")
    sweep.add_argument("--config", required=True, metavar="BASE", type=Path,
                       help="the configuration the grid's keys are set in")
    sweep.add_argument("--grid", required=True, metavar="GRID.toml", type=Path,
                       help="[grid] values to combine, or a [random] search "
                            "(config/sweep-example.toml)")
    sweep.add_argument("--holdout", nargs="+", default=[], metavar="RECORDING",
                       help="re-run the best --top runs on these recordings")
    sweep.add_argument("--holdout-config", metavar="FILE", type=Path,
                       help="the holdout's base config (another instrument or venue), the "
                            "same keys set in it (default: --config)")
    sweep.add_argument("--out", default=Path("sweep"), metavar="DIR", type=Path,
                       help="where runs.csv and sweep.html go (default ./sweep)")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="worker processes (default: one per core)")
    sweep.add_argument("--objective", default="total_pnl", metavar="NAME[:max|:min]",
                       help="the column of runs.csv that ranks the runs (default total_pnl, "
                            "largest best)")
    sweep.add_argument("--require", action="append", default=[], metavar="NAME>=X|NAME<=X",
                       help="only runs meeting this count as best (repeatable), e.g. "
                            "'quote_uptime>=0.9' or 'fills>=50' (quoted): without one, the "
                            "best PnL is often a run that quoted too wide to trade")
    sweep.add_argument("--cache", choices=("build", "off"), default="build",
                       help="build the recordings' decoded-event cache once before the runs "
                            "(or use it if valid; the default), or off: every run parses "
                            "(docs/event-cache.md)")
    sweep.add_argument("--top", type=int, default=5, metavar="N",
                       help="how many best runs the holdout re-runs and the page emphasises "
                            "(default 5)")
    sweep.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sweep.add_argument("--cluster", metavar="ADDRESS",
                       help="run on this Dask scheduler (the 'cluster' extra) instead of "
                            "local processes")

    record = commands.add_parser(
        "record", help="record the config's live feed to per-UTC-day gzip files in OUT"
    )
    record.add_argument("--config", required=True, metavar="FILE")
    record.add_argument("out", metavar="OUT", help="directory for <symbol>_<YYYYMMDD>.gz "
                        "(a [reference] feed: in OUT/<venue>-<symbol>/)")

    sim = commands.add_parser("sim", help="serve recordings as a local Binance-compatible venue")
    sim.add_argument("recordings", nargs="+", metavar="RECORDING")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9443)
    sim.add_argument("--speed", default="1", help="1 = real time, N = N x faster, max")
    sim.add_argument("--symbol", type=_symbol, default=None,
                     help="the symbol to serve, of a recording with several (default: the "
                          "one its frames name)")
    sim.add_argument("--credentials", action="append", metavar="SOURCE",
                     help="an API key the sim accepts: 'env' (MMDAEMON_API_KEY/_SECRET, the "
                          "default) or a file with api_key and api_secret; repeat for several "
                          "accounts (each key is its own); none: order entry refuses all")
    sim.add_argument("--maker-fee-bps", default="0")
    sim.add_argument("--venue", choices=("binance-spot", "binance-usdm"), default="binance-spot",
                     help="the venue to be: binance-usdm serves USD-M futures recordings, "
                          "several symbols at once (one per file)")
    sim.add_argument("--balance", action="append", default=[], metavar="ASSET=AMOUNT",
                     help="a starting balance of every account, e.g. --balance BTC=1 "
                          "--balance USDT=100000 (none: 0, as a new Binance account; a "
                          "credentials file's balances table overrides it for its account; "
                          "binance-usdm: USDT only)")
    sim.add_argument("--funding-interval", metavar="DURATION",
                     help="binance-usdm: funding every DURATION of the sim's clock "
                          "(default 8h; 30s, 500ms)")
    sim.add_argument("--funding-rate", metavar="FRACTION",
                     help="binance-usdm: the funding rate, longs pay when positive "
                          "(default 0.0001)")
    sim.add_argument("--binance-routes", action="store_true",
                     help="binance-usdm: serve market data as Binance does since 2026-04-23, "
                          "depth and bookTicker only under /public, trades under /market, "
                          "nothing on the legacy /stream and /ws")
    sim.add_argument("--wait-for-subscriber", action="store_true",
                     help="start the tape when the first stream connection comes")
    sim.add_argument("--reference", action="extend", nargs="+", default=[],
                     metavar="RECORDING", help="also serve these recordings as a reference "
                     "venue's market data, on its own port, on the same replay clock")
    sim.add_argument("--reference-venue", choices=("binance-usdm", "binance-spot"),
                     default="binance-usdm")
    sim.add_argument("--reference-symbol", type=_symbol, default="BTCUSDT")
    sim.add_argument("--reference-port", type=int, default=9444)
    sim.add_argument("--reference-tick-size", metavar="PRICE",
                     help="the reference's price grid (known for BTCUSDT)")
    sim.add_argument("--reference-lot-size", metavar="SIZE",
                     help="the reference's size grid (known for BTCUSDT)")

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
            cmd.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                             help="how long to wait for the instance to confirm the kill "
                                  "(KILLED, latched, journaled, 0 open orders at the venue); "
                                  "exit 1 if it does not (default 10)")
            cmd.add_argument("--no-wait", action="store_true",
                             help="exit once the signal is sent, without confirmation")
    about = ("the instance's state, position, PnL, orders, kill latch (from the running "
             "instance, else from its journal); exit 0 running, 3 stopped, 1 not answering, "
             "2 config error or no permission to read its state directory")
    status = commands.add_parser("status", help=about, description=about)
    status.add_argument("--config", required=True, metavar="FILE")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _symbol(text: str) -> str:
    """``--symbol``: a venue symbol, in Binance's upper case whatever was typed."""
    if not (text.isascii() and text.isalnum()):
        raise argparse.ArgumentTypeError(f"expected a symbol of letters and digits such as "
                                         f"ETHUSDT, got {text!r}")
    return text.upper()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line ``argv`` (None: the process's own, ``sys.argv[1:]``, from the
    console script or ``python -m mmdaemon``, and the process ends when this returns);
    returns the exit status."""
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
        if argv is None:
            # The interpreter's shutdown runs full garbage collections over every object
            # still tracked, the imported modules' included: 30-50 ms of a 0.75 s replay,
            # to free memory the process is about to give back whole. Frozen, they are
            # left out of them; atexit handlers still run, the standard streams are still
            # flushed and the modules torn down. Only objects that nothing but a reference
            # cycle holds are not finalized: the command has closed what it wrote by now
            # (journal, output), and the OS closes any file left open.
            gc.freeze()


def version_text() -> str:
    """``mmdaemon --version``: the package, Python and which hot loops run."""
    from mmdaemon import speedups
    from mmdaemon.provenance import package_version

    return (f"mmdaemon {package_version()} (Python {sys.version.split()[0]}, hot loops: "
            f"{speedups.HOT_LOOPS})")


SERVICE_COMMANDS = ("run", "replay")
"""Commands that run the service: a signal during their start-up is kept for it."""
RULED_COMMANDS = ("run", "record", "replay", "calibrate", "fit-microprice", "crosscheck",
                  "check-config")
"""The commands whose instrument the venue's rules complete (mmdaemon.venue_rules)."""


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command in SERVICE_COMMANDS:
        early_signals.install()  # the console script's earliest moment (see early_signals)
    else:
        early_signals.release()
    if args.command == "verify-book":
        from mmdaemon.commands.recordings import verify_book

        # no instrument for the log's decimals: verify-book learns it from the data
        log.configure(args.log_level or "info", log_format=args.log_format)
        return verify_book(args.recordings, args.venue, args.json, args.symbol)
    if args.command == "sim":
        from mmdaemon.commands.recordings import reference_spec, sim
        from mmdaemon.commands.usage import speed_and_recordings

        if args.venue == "binance-usdm":
            from mmdaemon.commands.usdm_sim import usdm_sim

            if args.reference:
                raise UsageError("mmdaemon sim: --reference: only with --venue binance-spot")
            log.configure(args.log_level or "info", sys.stdout.buffer,
                          log_format=args.log_format)
            return usdm_sim(args.recordings, args.host, args.port,
                            speed_and_recordings("sim", args.recordings, args.speed),
                            args.credentials or ["env"], args.maker_fee_bps,
                            args.wait_for_subscriber, args.balance,
                            args.funding_interval or "8h", args.funding_rate or "0.0001",
                            args.binance_routes)
        if args.funding_interval or args.funding_rate:
            raise UsageError("mmdaemon sim: --funding-interval, --funding-rate: only with "
                             "--venue binance-usdm (spot has no funding)")
        if args.binance_routes:
            raise UsageError("mmdaemon sim: --binance-routes: only with --venue binance-usdm "
                             "(spot's routes did not change)")
        reference = reference_spec(args.reference, args.reference_venue, args.reference_symbol,
                                   args.reference_port, args.reference_tick_size,
                                   args.reference_lot_size) if args.reference else None
        log.configure(args.log_level or "info", sys.stdout.buffer, log_format=args.log_format)
        return sim(args.recordings, args.host, args.port, args.speed, args.symbol,
                   args.credentials or ["env"], args.maker_fee_bps, args.wait_for_subscriber,
                   reference, args.balance)
    if args.command == "report":
        from mmdaemon.commands.results import report

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
    if args.command == "sweep":
        from mmdaemon.sweep.command import SweepArgs
        from mmdaemon.sweep.command import sweep as run_sweep

        if args.workers is not None and args.workers < 1:
            raise UsageError(f"mmdaemon sweep: --workers: expected at least 1, got "
                             f"{args.workers}")
        return run_sweep(SweepArgs(
            args.config, args.grid, tuple(args.recordings), tuple(args.holdout),
            args.holdout_config, args.out, args.workers, args.objective, args.top, args.json,
            args.cluster, args.log_level or "error", version_text(),
            tuple(args.require), args.cache != "off"))
    if args.command == "replay" and args.venue == "lobster" and args.config == str(
        DEFAULT_CONFIG
    ):
        args.config = str(LOBSTER_CONFIG)
    from mmdaemon.venue_rules import RulesUnavailable, log_rules, save, settle

    try:
        config = load_config(args.config)
        # the instrument's rules: the venue's (live) or saved beside the recordings
        recordings = getattr(args, "recordings", None) or getattr(args, "recording", None)
        # a live config stating every grid is checked by the service itself (it waits out
        # a venue that is down, HALTED): only the grids left out are needed before it
        settled = settle(config, recordings or (), live=args.command == "record"
                         or not config.instrument.complete()) \
            if args.command in RULED_COMMANDS else None
    except ConfigError as exc:
        print(f"mmdaemon {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    except RulesUnavailable as exc:
        print(f"mmdaemon {args.command}: {exc}", file=sys.stderr)
        return 1
    if settled is not None:
        config = settled.config
    if args.command == "check-config":
        from mmdaemon.commands.check_config import check_config

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
    if args.command == "fit-microprice":
        from mmdaemon.commands.fit_microprice import fit_microprice

        log.configure(args.log_level or "warning", sys.stderr.buffer,
                      log_format=args.log_format)
        return fit_microprice(config, args.recordings, args.out, args.buckets, args.spreads,
                              args.max_move_ticks)
    if args.command == "calibrate":
        from mmdaemon.commands.calibrate import calibrate

        log.configure(args.log_level or "warning", sys.stderr.buffer,
                      log_format=args.log_format)
        return calibrate(config, args.config, args.recordings or list(config.feed.recordings),
                         None if args.no_page else args.out, args.json,
                         args.sigma_interval_s, args.min_arrivals)
    if args.command == "crosscheck":
        from mmdaemon.crosscheck import command as crosscheck

        # stdout carries the table; the dry run's log goes to stderr, warnings only
        log.configure("warning", sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        return crosscheck.main(Path(args.config), args.recordings, args.orders, args.fills,
                               args.json)
    level = args.log_level or config.logging.level  # the command line's, else the config's
    if args.command == "run":
        from mmdaemon.commands.run import run

        log.configure(level, sys.stdout.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        log_rules(log.get_logger(instrument=config.instrument.symbol), settled)
        return run(config, Path(args.config), level, args.latency_out,
                   check_rules=settled is not None and settled.rules is None)
    if args.command == "record":
        from mmdaemon.commands.recordings import record

        log.configure(level, sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        try:  # the rules a replay of the recording reads: none saved, nothing recorded
            saved = save(settled, Path(args.out))
        except OSError as exc:  # as record's own disk failures: exit 1
            print(f"mmdaemon record: cannot save the venue's exchangeInfo in {args.out}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
        log_rules(log.get_logger(command="record"), settled, saved)
        return record(config, Path(args.out))
    if args.command == "replay":
        from mmdaemon.commands.run import replay

        # stdout carries the result (summary); the log goes to stderr
        log.configure(level, sys.stderr.buffer, log_format=args.log_format,
                      instrument=config.instrument.build())
        log_rules(log.get_logger(mode="replay"), settled)
        return replay(config, args.recordings, args.speed, args.state_dir, args.json,
                      Path(args.report) if args.report else None, args.clock, level,
                      args.reference, args.config, args.cache)
    if args.command == "status":
        from mmdaemon.commands.status import status

        return status(config, Path(args.config), args.json)
    if args.command == "kill":
        from mmdaemon.commands.status import kill

        if not 0 < args.timeout < float("inf"):
            raise UsageError(f"mmdaemon kill: --timeout: expected a number of seconds > 0, "
                             f"got {args.timeout}")
        return kill(config, args.timeout, not args.no_wait, args.global_, args.note,
                    args.log_format)
    from mmdaemon.commands.operator import global_switch, signal_instance

    if args.global_:
        return global_switch(config, args.command, getattr(args, "note", ""),
                             args.log_format)
    return signal_instance(config, args.command,
                           signal.SIGUSR1 if args.command == "kill" else signal.SIGUSR2)
