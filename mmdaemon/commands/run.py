"""``mmdaemon run`` and ``mmdaemon replay``: build a :class:`~mmdaemon.daemon.Service` on the
live venue or on recordings with the paper exchange, serve it until it stops, and say how
it ended (exit status; a replay's summary)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from mmdaemon import early_signals, log
from mmdaemon.clock import SystemClock
from mmdaemon.commands.results import replay_metrics, replay_table, summary_warnings
from mmdaemon.commands.usage import UsageError, speed_and_recordings
from mmdaemon.config import Config, ConfigError
from mmdaemon.feed.event_cache import CacheMode, for_config
from mmdaemon.feed.recording import RecordingError
from mmdaemon.pace import ReplayClock
from mmdaemon.venue_rules import RulesRefused, settle

if TYPE_CHECKING:  # imported where a command runs it: the other commands start sooner
    from mmdaemon.daemon import Service


def _run_service(service: Service, progress: bool = False) -> None:
    import uvloop

    async def main() -> None:
        if not progress:
            await service.run()
            return
        from mmdaemon.progress import show_progress

        shower = asyncio.create_task(show_progress(service, sys.stderr, clock=service.clock))
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
        path = latch_kill_offline(service.state_dir, "operator_kill_switch",
                                  service.clock.wall_ns())
    except (OSError, StateDirLocked) as exc:
        print(f"mmdaemon: a kill signal arrived as the service stopped and could not be "
              f"latched: {exc}", file=sys.stderr)
        return
    print(f"mmdaemon: a kill signal arrived as the service stopped: latched in {path}",
          file=sys.stderr)


def run(config: Config, config_path: Path | None = None, log_level: str | None = None,
        latency_out: Path | None = None, check_rules: bool = False) -> int:
    """``mmdaemon run``: the daemon, until its feed ends or it is told to stop; ``log_level``
    the log's level, when not the config's; ``latency_out`` where to write the latencies
    measured (at stop; a path that cannot take it is refused now, exit 2); ``check_rules``
    a live service checks its config against the venue's exchangeInfo before order entry
    (:func:`mmdaemon.venue_rules.check_live`)."""
    from mmdaemon.daemon import Service
    from mmdaemon.exchange.latency_file import check_writable

    if latency_out is not None and (why := check_writable(latency_out)):
        print(f"mmdaemon run: --latency-out: {why}", file=sys.stderr)
        return 2

    from mmdaemon.provenance import provenance

    logger = log.get_logger(instrument=config.instrument.symbol)
    try:
        service = Service(config, SystemClock(), logger, write_pid=True,
                          config_path=config_path, log_level=log_level,
                          latency_out=latency_out, check_rules=check_rules,
                          provenance=provenance(config, config_path, mode="run",
                                                recordings=config.feed.recordings))
    except ValueError as exc:
        print(f"mmdaemon run: config error: {exc}", file=sys.stderr)
        return 2
    return _serve(service, logger)


def _serve(service: Service, logger: Any) -> int:
    """Run a built service (see :func:`_serve_quietly`), saying on stderr why it failed."""
    outcome = _serve_quietly(service, logger)
    if outcome.told:
        print(outcome.why, file=sys.stderr)
    return outcome.code


class Outcome(NamedTuple):
    """How a service run ended: ``code`` its exit status, ``why`` what went wrong ("" when
    nothing did) and ``told`` whether the operator reads ``why`` on stderr (a service that
    failed on its own is in the log alone: ``service_failed``)."""

    code: int
    why: str = ""
    told: bool = True


def _serve_quietly(service: Service, logger: Any, progress: bool = False,
                   replaying: bool = False) -> Outcome:
    """Run a built service and say how it ended: 2 if its state directory is taken, the
    venue refuses it for a reason that restarting cannot fix (credentials, URL) or,
    ``replaying``, a recording cannot be read; 1 if it failed (``run`` on recordings too:
    it is left to systemd's restart policy like any feed that dies)."""
    from mmdaemon.exchange.base import VenueRefused
    from mmdaemon.journal import JournalRefused
    from mmdaemon.startup import StateDirUnusable
    from mmdaemon.statedir import StateDirLocked

    try:
        _run_service(service, progress)
    except (StateDirLocked, JournalRefused) as exc:  # a restart won't help: exit 2
        event = "state_dir_locked" if isinstance(exc, StateDirLocked) else "journal_refused"
        logger.error(event, error=str(exc))
        return Outcome(2, f"mmdaemon: {exc}")
    except StateDirUnusable as exc:  # may be passing (a full disk): systemd retries
        logger.error("state_dir_unusable", error=str(exc))
        return Outcome(1, f"mmdaemon: {exc}")
    except RulesRefused as exc:  # the config, not the venue, is wrong
        logger.error("instrument_rules_refused", error=str(exc))
        return Outcome(2, f"mmdaemon run: config error: {exc}")
    except VenueRefused as exc:
        logger.error("venue_refused", error=str(exc))
        return Outcome(2, f"mmdaemon: the venue refused us: {exc}")
    except Exception as exc:
        unreadable = _recording_error(exc) if replaying else None
        if unreadable is not None:  # unusable input, not a failure of the service
            logger.error("recording_unreadable", error=str(unreadable))
            return Outcome(2, f"mmdaemon replay: {unreadable}")
        logger.error("service_failed", error=repr(exc))
        return Outcome(1, f"the service failed: {exc!r}", told=False)
    code = int(service.exit_code)
    return Outcome(code, f"the service stopped with exit status {code}" if code else "",
                   told=False)


def _recording_error(exc: BaseException) -> RecordingError | None:
    """The :class:`RecordingError` that ``exc`` is, or that is all ``exc`` holds (the
    service's TaskGroup raises its feed task's error inside an ExceptionGroup); else None."""
    while isinstance(exc, BaseExceptionGroup):
        if exc.split(RecordingError)[1] is not None:
            return None  # something else failed too
        exc = exc.exceptions[0]
    return exc if isinstance(exc, RecordingError) else None


class DryRunFailed(Exception):
    """A dry run that gave no summary: ``code`` the exit status (1 failed, 2 unusable input)
    and ``why`` what went wrong; ``told`` whether ``replay`` shows ``why`` on stderr (a
    service that failed on its own is in the log alone)."""

    def __init__(self, code: int, why: str, told: bool = True) -> None:
        super().__init__(why)
        self.code, self.why, self.told = code, why, told


def replay(config: Config, recordings: list[str], speed_text: str, state_dir: str | None,
           as_json: bool, report_dir: Path | None = None,
           event_clock: ReplayClock | None = None, log_level: str | None = None,
           reference: list[str] | None = None, config_path: str = "the config",
           cache: CacheMode = "use") -> int:
    """``mmdaemon replay``: :func:`dry_run`, then its summary on stdout (a table, or one
    JSON object with ``as_json``)."""
    try:
        summary = dry_run(config, recordings, speed_text, state_dir,
                          progress=not as_json and sys.stderr.isatty(), report_dir=report_dir,
                          event_clock=event_clock, log_level=log_level, reference=reference,
                          config_path=config_path, cache=cache)
    except DryRunFailed as exc:
        if exc.told:
            print(exc.why, file=sys.stderr)
        return exc.code
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        print(replay_table(summary, config))
        if report_dir is not None:
            print(f"report: {report_dir / 'report.html'}")
    return 0


def dry_run(config: Config, recordings: list[str], speed_text: str = "max",
            state_dir: str | None = None, *, progress: bool = False,
            report_dir: Path | None = None, event_clock: ReplayClock | None = None,
            log_level: str | None = None, reference: list[str] | None = None,
            config_path: str = "the config", whole: bool = False,
            cache: CacheMode = "use", cache_path: Path | None = None) -> dict[str, Any]:
    """A dry run: the service on ``recordings`` with the paper exchange (whatever the
    config's adapter; never in the desk's firm-wide risk), in ``state_dir`` (None: a
    temporary directory, removed after). The one replay path: ``mmdaemon replay`` and
    each run of ``mmdaemon sweep`` come through here.

    Returns the summary (the service's, its ``warnings``, and the journal's ``metrics``;
    with ``report_dir`` the report is written there too). ``event_clock`` None runs on
    the config's ``feed.clock``; ``log_level`` the log's level, when not the config's;
    ``reference`` the reference feed's recordings (None: the config's
    ``[reference].recordings``), merged with ``recordings`` by time; ``progress`` shows
    the progress line on stderr; ``whole`` makes a run stopped before the end of its
    recordings (SIGTERM/SIGINT to the process) a failure rather than the figures of the
    part it read (a sweep's rows must each cover the whole recordings). Raises
    :class:`UsageError` for bad input found before the start, :class:`DryRunFailed` when
    the run gives no summary."""
    from mmdaemon.daemon import Service
    from mmdaemon.provenance import IN_SUMMARY, provenance

    reference = reference_recordings(config, reference, config_path)
    speed = speed_and_recordings("replay", recordings + reference, speed_text)
    try:  # the rules saved beside the recordings (a sweep's runs come here alone)
        config = settle(config, recordings).config
    except ConfigError as exc:
        raise DryRunFailed(2, f"mmdaemon replay: config error: {exc}") from None
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
    # the config as the service runs it (a paper adapter), the file as it was read
    produced = provenance(config, config_path, mode="replay", recordings=recordings,
                          reference=reference)
    events = for_config(config, recordings, reference, event_clock, cache, logger, cache_path)
    with tempfile.TemporaryDirectory(prefix="mmdaemon-replay-") as tmp:
        try:
            service = Service(config, SystemClock(), logger, recordings=recordings,
                              speed=speed, event_clock=event_clock,
                              state_dir=Path(state_dir or tmp), log_level=log_level,
                              reference=reference, provenance=produced, event_cache=events)
        except ValueError as exc:
            raise DryRunFailed(2, f"mmdaemon replay: config error: {exc}") from None
        start_ns = service.clock.monotonic_ns()
        outcome = _serve_quietly(service, logger, progress=progress, replaying=True)
        if outcome.code:
            raise DryRunFailed(outcome.code, outcome.why, outcome.told)
        market = service.snapshot().market
        if whole and not service.feed_finished:
            raise DryRunFailed(1, f"stopped (SIGTERM or SIGINT to its process) after "
                                  f"{market.frames:,} frames, before the end of its "
                                  f"recordings: no figures for part of them")
        if market.frames - market.undecodable - market.snapshots <= 0:
            # nothing of the instrument decoded (a symbol-less REST snapshot at most)
            lines = market.frames + market.malformed - market.undecodable
            logger.error("recording_unusable", recordings=recordings, lines=lines,
                         first_malformed=market.first_malformed)
            why = f" (first: {market.first_malformed})" if market.first_malformed else ""
            symbol = config.instrument.symbol
            if f", expected '{symbol}'" in market.first_malformed:  # the codec's words
                why += ": check the config's instrument.symbol"
            raise DryRunFailed(2, f"mmdaemon replay: {', '.join(recordings)}: no frame of "
                                  f"{symbol} decoded in {lines} lines{why}")
        summary = service.summary((service.clock.monotonic_ns() - start_ns) / 1e9)
        summary.update((key, produced[key]) for key in IN_SUMMARY)
        summary["warnings"] = summary_warnings(summary)
        summary["metrics"] = replay_metrics(service, report_dir, logger)
    return summary


def reference_recordings(config: Config, given: list[str] | None, config_path: str) -> list[str]:
    """The reference feed's recordings of a replay: ``given`` (``--reference``), else the
    config's ``[reference].recordings``; [] without a ``[reference]`` section. A usage error
    (exit 2) when ``--reference`` has no section to say what the feed is, or the section
    has no recordings to replay."""
    if config.reference is None:
        if given:
            raise UsageError(f"mmdaemon replay: --reference needs a [reference] section in "
                             f"{config_path} saying what the reference feed is: venue "
                             f"(binance-spot or binance-usdm), symbol, tick_size and lot_size "
                             f"(see config/dryrun-reference.toml)")
        return []
    paths = list(given) if given else list(config.reference.recordings)
    if not paths:
        raise UsageError(f"mmdaemon replay: no reference recordings: give --reference REF... "
                         f"or set reference.recordings in {config_path} (the [reference] "
                         f"section names a live feed only)")
    return paths


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
