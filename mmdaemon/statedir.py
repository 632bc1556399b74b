"""The state directory's lock: one process per state directory, and which process that is.

An instance holds ``<state_dir>/lock`` for as long as it runs, with two locks on one open
file description:

- ``flock(LOCK_EX)`` keeps a second instance out. It belongs to the open file, so nothing
  else the process does can drop it, and versions before this module take the same lock.
- a POSIX record lock (``fcntl(F_SETLK)``, write, whole file) names the holder: another
  process asks with ``F_GETLK`` and the kernel answers with the holder's pid, translated
  into the asker's pid namespace. This is what ``mmdaemon kill``/``rearm`` go by: the pid
  file is only cross-checked, and never a name on a command line.

Both die with the process (a crash or SIGKILL leaves the file but no lock), so a lock file
nobody holds means no instance. The catch of record locks: they belong to the process and
go away when the process closes *any* descriptor of the file. So this module is the only
code that opens the lock file, it opens it once per process while holding it, and
:func:`lock_holder` answers for the holding process itself without opening it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
from pathlib import Path

LOCK_FILE = "lock"


class StateDirLocked(Exception):
    """Another process (or this one, through another handle) holds the state directory."""


class _Flock(ctypes.Structure):
    """``struct flock`` (Linux; off_t is 64 bits in any Python build, which enables large
    files): ctypes lays it out with the C alignment."""

    _fields_ = (("l_type", ctypes.c_short), ("l_whence", ctypes.c_short),
                ("l_start", ctypes.c_int64), ("l_len", ctypes.c_int64),
                ("l_pid", ctypes.c_int))


class StateDirLock:
    """The held lock on one state directory; :meth:`close` (or process exit) releases it."""

    def __init__(self, state_dir: Path, fd: int, key: tuple[int, int]) -> None:
        self.state_dir = state_dir
        self._fd = fd
        self._key = key

    def close(self) -> None:
        """Release the lock (both kinds go with the descriptor). Idempotent."""
        if self._fd >= 0:
            _held.pop(self._key, None)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# the locks this process holds, by the lock file's (st_dev, st_ino): another open+close
# of such a file here would silently drop its record lock
_held: dict[tuple[int, int], StateDirLock] = {}


def lock_state_dir(state_dir: Path) -> StateDirLock:
    """Take ``state_dir``'s lock (creating the directory and the lock file if need be), or
    raise :class:`StateDirLocked` naming the holder's pid. Never blocks."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if (st.st_dev, st.st_ino) in _held:
            raise StateDirLocked(f"{state_dir} is in use by this process already "
                                 f"(pid {os.getpid()})")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        # EWOULDBLOCK from flock, EACCES or EAGAIN from lockf: held elsewhere. Closing fd
        # drops no record lock of ours: this process holds none on this file (checked).
        try:
            holder = _holder(fd)
        finally:
            os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise StateDirLocked(f"{state_dir} is in use by another mmdaemon process{who}"
                             ) from None
    except BaseException:
        os.close(fd)
        raise
    st = os.fstat(fd)
    lock = StateDirLock(state_dir, fd, (st.st_dev, st.st_ino))
    _held[lock._key] = lock
    return lock


def lock_holder(state_dir: Path) -> int | None:
    """The pid of the process holding ``state_dir``'s lock; None if no process holds it (no
    lock file, or one left by an instance that is gone). 0: held by a process outside this
    pid namespace, which cannot be named from here. Raises OSError when the lock file
    cannot be read (permissions): that says nothing about whether an instance runs."""
    path = state_dir / LOCK_FILE
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if (st.st_dev, st.st_ino) in _held:  # ours: F_GETLK would not report our own lock
        return os.getpid()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # F_GETLK needs no write access
    try:
        return _holder(fd)
    finally:
        os.close(fd)


def signal_holder(state_dir: Path, sig: signal.Signals, attempts: int = 3) -> int | None:
    """Send ``sig`` to the process holding ``state_dir``'s lock and return its pid; None if
    nobody holds it, 0 if the holder is outside this pid namespace (nothing sent).

    The holder is pinned with a pidfd and confirmed as the holder *after* the pidfd is
    open, so a holder that exits and whose pid is reused in between is never signalled.
    A lock that changes hands ``attempts`` times in a row raises :class:`StateDirLocked`.
    """
    for _ in range(attempts):
        pid = lock_holder(state_dir)
        if not pid:
            return pid
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # gone since: look again
            continue
        try:
            if lock_holder(state_dir) != pid:
                continue
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                continue
            return pid
        finally:
            os.close(pidfd)
    raise StateDirLocked(f"the lock on {state_dir} changed hands {attempts} times while "
                         f"signalling its holder: try again")


def _holder(fd: int) -> int | None:
    """Who holds a conflicting record lock on the whole file open as ``fd``."""
    query = _Flock(l_type=fcntl.F_WRLCK, l_whence=os.SEEK_SET, l_start=0, l_len=0, l_pid=0)
    answer = _Flock.from_buffer_copy(fcntl.fcntl(fd, fcntl.F_GETLK, bytes(query)))
    if answer.l_type == fcntl.F_UNLCK:
        return None
    return max(int(answer.l_pid), 0)
