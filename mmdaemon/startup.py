"""Opening an instance's state directory at start: the journal, then the kill latch.

Refused (:class:`~mmdaemon.journal.JournalRefused`, exit 2) for a journal that is locked,
corrupt or another instance's; :class:`StateDirUnusable` when the journal or the latch
cannot be written. Either way nothing has been sent, and nothing is left open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from mmdaemon.journal import JOURNAL_FILE, Journal, JournalUnavailable
from mmdaemon.latch import JOURNAL_KEY as LATCH_KEY
from mmdaemon.latch import KillLatch
from mmdaemon.records import Restored

FILLS_FROM_KEY = "fills_from"  # journal: the venue trade id this instance's fills follow
FUNDING_FROM_KEY = "funding_from"  # journal: the funding id this instance's payments follow
# seconds a starting instance waits for the state directory's lock: `mmdaemon kill` holds it
# for milliseconds when it latches a kill into a directory no instance holds
STATE_DIR_LOCK_WAIT_S = 2.0


class StateDirUnusable(RuntimeError):
    """The state directory cannot take the kill latch: the service must not start."""


class OpenState(NamedTuple):
    journal: Journal
    latch: KillLatch
    restored: Restored
    fills_after: int | None  # fills the venue reports above this trade id were missed
    funding_after: int | None  # funding above this id was booked while we were down


def open_state(state_dir: Path, durable: bool, identity: dict[str, str], wall_ns: int,
               then: Callable[[OpenState], None]) -> OpenState:
    """Open the journal (checked to be this instance's: ``identity``), restore it, open the
    kill latch, proving both can be written, and run ``then`` on them (the engine's restore,
    which writes too); anything failing closes both again."""
    try:
        journal = Journal(state_dir / JOURNAL_FILE, durable=durable,
                          lock_wait_s=STATE_DIR_LOCK_WAIT_S)
        latch: KillLatch | None = None
        try:
            journal.check_identity(identity, wall_ns)
            restored = journal.restore(wall_ns)
            latch = KillLatch.open(state_dir, journal.get(LATCH_KEY, "") == "1",
                                   restored.killed, restored.kill_reason, wall_ns)
            journal.put(LATCH_KEY, "1", wall_ns)
            state = OpenState(journal, latch, restored, _fills_after(journal, restored),
                              _funding_after(journal, restored))
            then(state)
            return state
        except BaseException:
            journal.close()
            if latch is not None:
                latch.close()
            raise
    except JournalUnavailable as exc:
        raise StateDirUnusable(str(exc)) from exc
    except sqlite3.OperationalError as exc:  # restoring writes too: a full disk
        raise StateDirUnusable(
            f"journal {state_dir / JOURNAL_FILE} cannot be written ({exc}): free space or "
            "fix the state directory's file system; nothing was sent") from exc
    except OSError as exc:  # the latch: a state directory we could not write a kill to
        raise StateDirUnusable(
            f"state directory {state_dir} cannot hold the kill latch ({exc}): nothing was "
            "sent") from exc


def _fills_after(journal: Journal, restored: Restored) -> int | None:
    """Fills the venue reports above this trade id were never journaled (missed while down);
    a journal with neither fills nor a starting point (new, or retired) takes the account's
    newest trade instead (None): an account's history is not this instance's."""
    fills_from = journal.get(FILLS_FROM_KEY, "")
    if not (restored.fills or fills_from):
        return None
    return max(max((f.exec_id for f in restored.fills), default=0), int(fills_from or 0))


def _funding_after(journal: Journal, restored: Restored) -> int | None:
    """Funding payments the venue booked above this id were never journaled (booked while
    we were down): the highest journaled payment's id, or the starting point the first
    start journaled; None for a journal with neither (the venue's newest payment is then
    the starting point: an account's history is not this instance's)."""
    funding_from = journal.get(FUNDING_FROM_KEY, "")
    if not (restored.funding or funding_from):
        return None
    return max(max((f.funding_id for f in restored.funding), default=0),
               int(funding_from or 0))
