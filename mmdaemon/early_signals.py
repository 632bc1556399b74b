"""Signals that arrive before the service can act on them: kept, then replayed in order.

The operator's signals (kill SIGUSR1, re-arm SIGUSR2, stop SIGTERM/SIGINT, reload SIGHUP)
would, by default, kill a process that has not yet installed a handler: a kill switch
flipped during start-up would end the process *without* latching the kill, and the next
start would quote. So, from the first instruction:

- ``mmdaemond`` (mmdaemon/_launcher.c, what the systemd unit runs) blocks these signals
  before it execs Python: the kernel keeps them pending across ``exec``;
- :func:`install` (first thing in ``python -m mmdaemon`` and in the console script's
  ``main``) records them with a Python handler, then unblocks them;
- the service, once its journal and latch are open and its own handlers are in place,
  replays what was recorded (:func:`take`) through those handlers: an early SIGUSR1
  latches the kill before anything is sent, an early SIGTERM ends the run cleanly (exit 0)
  with the latch as it is.

When the service stops, its handlers go and :func:`handover` records again at once: a kill
that arrives while the service closes is latched before its kill latch closes, and one
that arrives later still is latched by the command on its way out
(:mod:`mmdaemon.commands.run`); a late SIGTERM is dropped (the process is leaving anyway).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

CAUGHT: tuple[signal.Signals, ...] = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM,
                                      signal.SIGINT, signal.SIGHUP)
"""The operator's signals: kill, re-arm, stop (systemd's and a terminal's), reload."""

_pending: list[signal.Signals] = []
_installed = False  # install() has run in this process (and release() has not)


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signal.Signals(signum))


def install() -> None:
    """Record the operator's signals from now on, and let through any the launcher held.

    Main thread only (Python's rule for signal handlers)."""
    global _installed
    _installed = True
    for sig in CAUGHT:
        signal.signal(sig, _record)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)


def handover(remove_handlers: Callable[[], object]) -> None:
    """Take the signals back from the service: ``remove_handlers`` (an event loop's
    removal restores the default action), then record again, with the signals blocked in
    between so none meets the default. Only where :func:`install` ran (a command): an
    in-process caller such as a test keeps its own dispositions."""
    if not _installed:
        remove_handlers()
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
    remove_handlers()
    install()


def take() -> list[signal.Signals]:
    """The signals recorded so far, in arrival order; the record starts empty again."""
    taken = _pending[:]
    del _pending[: len(taken)]
    return taken


def release() -> None:
    """Default dispositions again, and any signal recorded so far raised anew: for the
    commands that are no service (``check-config``, ``verify-book``, ...), where Ctrl-C
    and SIGTERM must simply end the process as usual."""
    global _installed
    _installed = False
    for sig in CAUGHT:
        signal.signal(sig, signal.default_int_handler if sig is signal.SIGINT
                      else signal.SIG_DFL)
    for sig in take():
        signal.raise_signal(sig)


def hold() -> None:
    """On the way out of a process that ran :func:`install`: block the operator's signals.

    The interpreter's shutdown puts default handlers back before the process ends, and a
    signal in that window would end it by the signal instead of its exit status; blocked,
    it is dropped with the process (the service has stopped: nothing is left to do)."""
    if _installed:
        signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)


def launcher_path() -> Path | None:
    """The built ``mmdaemond`` launcher of this installation (package data), or None
    where it was not built (no C compiler, not Linux)."""
    path = Path(__file__).with_name("mmdaemond")
    return path if path.is_file() else None
