"""``mmdaemon status`` and the confirmed ``mmdaemon kill``.

``status --config FILE [--json]`` asks the instance running on the config's state directory
over its control socket (:mod:`mmdaemon.control`); when none runs, it reads what the last
run left: the journal (read-only) and the kill latch. Exit status: 0 running; 3 stopped
(the status is the journal's; also when no instance ever ran there); 1 an instance holds
the state directory but does not answer (starting, stuck, or an older version without the
socket); 2 a config error (a state directory that is no directory, or one where an
instance of another instrument runs), or this user may not read the state directory or use
its socket (not root).

``kill --config FILE`` sends SIGUSR1 as before, then polls the control socket until the
instance reports the kill confirmed (:func:`mmdaemon.status.kill_confirmed`: KILLED,
latched and journaled, no open order by our count nor the venue's), and prints how long
that took from the moment before the signal (ms). Exit status: 0 confirmed; 1 not
confirmed within ``--timeout`` (what was missing is printed), or no instance runs (the
kill is latched on disk for the next start, as before: nothing to confirm; so it is when
the instance dies before confirming, so that its restart is KILLED); 2 as before.
``--no-wait`` keeps the old behaviour (0 once the signal is sent).

``kill --global`` sets the desk's kill key in Redis as before and then confirms *this
config's* instance only, if one runs here: other instances of the desk run elsewhere and
are confirmed each with its own ``status``/``kill`` where it runs.
"""

from __future__ import annotations

import signal
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from mmdaemon.config import Config
from mmdaemon.control import ControlBusy, ControlDenied, ControlUnavailable, request_status
from mmdaemon.journal import JOURNAL_FILE
from mmdaemon.journal_reader import load_status
from mmdaemon.latch import read_latch_since
from mmdaemon.markouts import quote_currency
from mmdaemon.provenance import PROVENANCE_KEY, run_versions
from mmdaemon.statedir import dir_holder
from mmdaemon.status import LatchView, StoppedFacts, kill_confirmed, render_text, stopped_status

EXIT_RUNNING, EXIT_UNANSWERED, EXIT_UNREADABLE, EXIT_STOPPED = 0, 1, 2, 3
POLL_S = 0.02  # between two status requests while a kill is confirmed


def status(config: Config, config_path: Path, as_json: bool) -> int:
    """``mmdaemon status``: print the instance's status; the exit status says whether it
    runs (see the module docstring)."""
    state_dir = Path(config.state.dir)

    def said(message: str, instance: str, code: int) -> int:
        """``message`` on stderr; with --json one object on stdout too (``instance``:
        stopped or unknown, ``error``: the message), so a script reads JSON either way."""
        print(f"mmdaemon status: {message}", file=sys.stderr)
        if as_json:
            sys.stdout.buffer.write(orjson.dumps(
                {"instance": instance, "error": message, "state_dir": str(state_dir)},
                option=orjson.OPT_SORT_KEYS) + b"\n")
        return code

    try:
        current = request_status(state_dir)
    except ControlBusy as exc:  # it runs and said so, but serves its most clients now
        return said(f"an instance runs on {state_dir}, but {exc}", "unknown",
                    EXIT_UNANSWERED)
    except ControlDenied as exc:  # not root: the unit's state directory is its user's
        return said(f"{exc}: run as root or as the instance's user (whether an instance "
                    f"runs there cannot be told from here)", "unknown", EXIT_UNREADABLE)
    except ControlUnavailable as exc:
        try:
            holder = dir_holder(state_dir)
        except OSError as why:  # a file, a broken mount: nobody can be said to hold it
            return said(f"cannot use the state directory {state_dir}: {why.strerror or why} "
                        f"(the config's [state] dir)", "unknown", EXIT_UNREADABLE)
        if holder is not None:
            who = f"pid {holder}" if holder else "a process this one cannot name"
            return said(f"{who} holds {state_dir} but does not answer on its control socket "
                        f"({exc}): still starting, stuck, or a version without `status`; see "
                        f"`systemctl status` and its log", "unknown", EXIT_UNANSWERED)
        try:
            current = _stopped(config, config_path)
        except (OSError, ValueError) as why:
            return said(f"no instance runs on {state_dir}, and its journal cannot be read: "
                        f"{why}", "stopped", EXIT_STOPPED)
    else:  # an instance runs there: this config's, or one its [state] dir points at wrongly
        mine = {"venue": config.instrument.venue, "symbol": config.instrument.symbol,
                "adapter": config.exchange.adapter}
        differ = [f"{key} {current.get(key)!r} (this config: {value!r})"
                  for key, value in mine.items() if current.get(key) != value]
        if differ:
            return said(f"the instance running on {state_dir} (pid {current.get('pid')}) is "
                        f"another instance: {', '.join(differ)}; whether this config's runs "
                        f"is not known (fix the config's [state] dir)", "unknown",
                        EXIT_UNREADABLE)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(current, option=orjson.OPT_SORT_KEYS) + b"\n")
    else:
        sys.stdout.write(render_text(current))
    return EXIT_RUNNING if current["instance"] == "running" else EXIT_STOPPED


def _holder(state_dir: Path) -> int | None:
    """Who holds the state directory (None: nobody; 0: unnameable)."""
    try:
        return dir_holder(state_dir)
    except OSError:
        return 0


def _stopped(config: Config, config_path: Path) -> dict[str, Any]:
    """A stopped instance's status from its journal and latch. Raises OSError when the
    journal cannot be read (FileNotFoundError without one; SQLite's errors are turned into
    OSError naming the file), ValueError when a value in it does not parse."""
    import sqlite3

    state_dir = Path(config.state.dir)
    inst = config.instrument.build()
    try:
        journal = load_status(state_dir / JOURNAL_FILE)
    except sqlite3.Error as exc:
        raise OSError(f"{state_dir / JOURNAL_FILE}: {exc}") from None
    _same_instance(journal.state.get("identity"), {
        "venue": config.instrument.venue, "symbol": inst.symbol,
        "tick_size": format(inst.tick_size, "f"), "lot_size": format(inst.lot_size, "f"),
        "adapter": config.exchange.adapter, "instance": config.firm.instance},
        state_dir / JOURNAL_FILE)
    read = read_latch_since(state_dir)
    latch = LatchView(False, "", None) if read is None else LatchView(
        read[0].killed, read[0].reason, read[1])
    return stopped_status(StoppedFacts(
        inst.symbol, config.instrument.venue, config.exchange.adapter,
        quote_currency(inst.symbol, config.instrument.venue, config.firm.quote_asset),
        inst.tick_size,
        inst.lot_size, journal.fills, journal.funding, journal.last_mid_x2,
        journal.state.get("trading_state", ""), journal.state.get("killed", "0") == "1",
        journal.state.get("kill_reason", ""), journal.last_record_ns, latch,
        run_versions(config_path, _produced(journal.state.get(PROVENANCE_KEY)))))


def _same_instance(stored: str | None, mine: dict[str, str], path: Path) -> None:
    """Raise ValueError when the journal at ``path`` recorded an identity (``stored``, JSON)
    that differs from this config's (``mine``): its fills are in another instrument's ticks
    and lots, and shown in this config's they would be wrong figures (a start would refuse
    that journal too, :meth:`mmdaemon.journal.Journal.check_identity`). The account is not
    compared: telling it needs the credentials."""
    try:
        theirs = orjson.loads(stored) if stored else {}
    except orjson.JSONDecodeError:
        raise ValueError(f"{path}: its identity record is not JSON") from None
    if not isinstance(theirs, dict):
        raise ValueError(f"{path}: its identity record is not a JSON object")
    differ = [f"{key} {theirs[key]!r} (this config: {value!r})"
              for key, value in mine.items() if key in theirs and not _same(theirs[key], value)]
    if differ:
        raise ValueError(f"{path} belongs to another instance: {', '.join(differ)}; its "
                         f"figures are not this config's (a start would refuse it too)")


def _same(theirs: object, mine: str) -> bool:
    """One identity field alike: sizes by value (``1E-8`` is ``0.00000001``), the rest as
    text."""
    try:
        return Decimal(str(theirs)) == Decimal(mine)
    except ArithmeticError:  # not a number (InvalidOperation): a name
        return str(theirs) == mine


def _produced(text: str | None) -> dict[str, Any] | None:
    """The last run's provenance as its journal kept it; None if none or unreadable."""
    try:
        produced = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None
    return produced if isinstance(produced, dict) else None


def kill(config: Config, timeout_s: float, wait: bool, global_: bool, note: str,
         log_format: str) -> int:
    """``mmdaemon kill [--global]``: the switch, then (unless ``wait`` is False) its
    confirmation by this config's instance (see the module docstring)."""
    from mmdaemon.commands.operator import global_switch, signal_instance

    state_dir = Path(config.state.dir)
    started = time.monotonic()
    if global_:
        code = global_switch(config, "kill", note, log_format)
        if code or not wait:
            return code
        pid = _holder(state_dir)
        if pid is None:
            print(f"mmdaemon kill --global: no instance of this config runs here "
                  f"({state_dir}): nothing to confirm locally; each instance of the desk "
                  f"confirms with `mmdaemon status` where it runs")
            return 0
    else:
        code = signal_instance(config, "kill", signal.SIGUSR1)
        if code or not wait:
            return code
        pid = _holder(state_dir)
    return _confirm(state_dir, pid, started, timeout_s)


def _confirm(state_dir: Path, pid: int | None, started: float, timeout_s: float) -> int:
    """Poll the instance on ``state_dir`` until it confirms the kill or ``timeout_s``
    seconds after ``started`` (monotonic) have passed."""
    deadline = started + timeout_s
    last: dict[str, Any] | None = None
    why = "no answer yet"
    while True:
        try:
            last = request_status(state_dir, timeout_s=max(0.05, deadline - time.monotonic()))
            if kill_confirmed(last):
                took_ms = (time.monotonic() - started) * 1000
                print(f"kill confirmed in {took_ms:.0f} ms: pid {last['pid']} is KILLED "
                      f"({last['reason']}), latched in the kill latch and the journal; open "
                      f"orders: ours 0, at the venue 0")
                return 0
            why = _missing(last)
        except ControlUnavailable as exc:
            why = str(exc)
            if _holder(state_dir) is None:
                print(f"mmdaemon kill: NOT confirmed: the instance (pid {pid}) stopped before "
                      f"confirming the kill ({why}); `mmdaemon status` shows what its journal "
                      f"and latch say", file=sys.stderr)
                return _latch_for_restart(state_dir)
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)  # the poll interval of a command-line wait, not a fixed delay
    print(f"mmdaemon kill: NOT confirmed within {timeout_s:g} s by pid {pid}: {why}; the "
          f"signal was sent: check the venue (`mmdaemon status`, the log)", file=sys.stderr)
    return 1


def _latch_for_restart(state_dir: Path) -> int:
    """The instance is gone without confirming a kill, perhaps without having handled the
    signal at all (hung, then ended by the watchdog or the OOM killer): latch the kill on
    disk unless it is, so that systemd's restart is KILLED rather than quoting. 1 (nothing
    was confirmed), 2 if the kill could not be latched."""
    from mmdaemon.commands.operator import kill_offline

    read = read_latch_since(state_dir)
    if read is not None and read[0].killed:
        print(f"mmdaemon kill: the kill latch in {state_dir} is set: the next start is KILLED",
              file=sys.stderr)
        return 1
    return kill_offline(state_dir, "kill") or 1  # 0: a new instance was signalled instead


def _missing(s: dict[str, Any]) -> str:
    """What a status still lacks for :func:`~mmdaemon.status.kill_confirmed`."""
    orders = s.get("open_orders") or {}
    latch = s.get("kill_latch") or {}
    gaps = [] if s.get("state") == "KILLED" else [f"state is {s.get('state')}"]
    gaps += [] if latch.get("latched") else ["the kill latch is not set"]
    gaps += [] if s.get("kill_journaled") else ["the journal does not say killed"]
    gaps += [] if orders.get("ours") == 0 else [f"{orders.get('ours')} orders open by our count"]
    venue = orders.get("venue")
    gaps += [] if venue == 0 else [
        "open orders at the venue unknown (order entry has not reached the venue yet: "
        "see `venue_status` in the log)" if venue is None else
        f"{venue} orders open at the venue"]
    return ", ".join(gaps) or "not confirmed"
