"""The state directory's lock: one process per state directory, and which process that is.

An instance holds two things for as long as it runs, both released when it closes them or
dies (a crash or SIGKILL leaves the files but no lock):

- ``flock(LOCK_EX)`` on the state *directory* itself (a descriptor of the directory): this
  is the exclusivity. A directory holding files cannot be unlinked, so, unlike a lock file,
  nobody can delete it from under a running instance and let a second one in on the same
  journal.
- ``<state_dir>/lock``, with ``flock(LOCK_EX)`` (what versions before this module take,
  so an older instance still keeps this one out) and a POSIX record lock (``fcntl``
  write lock, whole file) on one open file description. The record lock is only for
  *identification*: another process asks with ``F_GETLK`` and the kernel answers with the
  holder's pid, translated into the asker's pid namespace.

``mmdaemon kill``/``rearm`` (:func:`signal_holder`) signal a process only when the kernel
names it as the holder of both: the record lock (``F_GETLK``) and the directory's flock
(``/proc/locks``, which lists each flock with its owner's pid and the inode it is on). A
record lock alone (a stranger's, or one on a lock file recreated after the instance's was
deleted) is never enough, and a directory held while nobody holds the lock file's record
lock is an instance that cannot be confirmed, never "no instance". The pid file is only
cross-checked by the caller, and never a name on a command line.

The catch of record locks: they belong to the process and go away when the process closes
*any* descriptor of the file. So this module is the only code that opens the lock file, it
opens it once per process while holding it (a second attempt in the holding process is
refused on the directory before the file is opened), and :func:`lock_holder` answers for
the holding process itself without opening it. A deleted lock file is not recreated: the
instance stays exclusive through the directory; restarting it restores the file.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from mmdaemon.clock import Clock, SystemClock

LOCK_FILE = "lock"
PID_FILE = "mmdaemon.pid"  # written by a running instance; only ever cross-checked


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

    def __init__(self, state_dir: Path, dir_fd: int, dir_key: tuple[int, int], fd: int,
                 key: tuple[int, int]) -> None:
        self.state_dir = state_dir
        self._dir_fd = dir_fd
        self._dir_key = dir_key
        self._fd = fd
        self._key = key

    def close(self) -> None:
        """Release the lock (each kind goes with its descriptor). Idempotent."""
        if self._fd >= 0:
            _held.pop(self._key, None)
            _held_dirs.pop(self._dir_key, None)
            os.close(self._fd)
            os.close(self._dir_fd)
            self._fd = self._dir_fd = -1

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# the locks this process holds, by the lock file's (st_dev, st_ino): another open+close
# of such a file here would silently drop its record lock
_held: dict[tuple[int, int], StateDirLock] = {}
# the same locks by the directory's (st_dev, st_ino): a second attempt here is refused on
# the directory, before the lock file is opened
_held_dirs: dict[tuple[int, int], StateDirLock] = {}

POLL_S = 0.01  # between attempts of lock_state_dir(wait_s=...)


class _Busy(Exception):
    """Held by another process: worth another attempt while waiting."""


def lock_state_dir(state_dir: Path, wait_s: float = 0.0, clock: Clock | None = None,
                   pause: Callable[[float], None] = time.sleep) -> StateDirLock:
    """Take ``state_dir``'s lock (creating the directory and the lock file if need be), or
    raise :class:`StateDirLocked` naming the holder's pid.

    ``wait_s`` (seconds, >= 0): how long another process's hold is waited out, trying
    again every :data:`POLL_S` seconds (never a blocking lock); 0, one attempt. The lock is
    held by ``mmdaemon kill`` for a few milliseconds when it latches a kill into a state
    directory that no instance holds, so a starting instance waits. A hold by this very
    process is refused at once. The wait is measured on ``clock``'s monotonic time (the
    system's by default); ``pause(seconds)`` waits between attempts (a blocking sleep by
    default)."""
    if not 0.0 <= wait_s < float("inf"):
        raise ValueError(f"wait_s: expected a finite number of seconds >= 0, got {wait_s!r}")
    state_dir.mkdir(parents=True, exist_ok=True)
    monotonic_ns = (clock or SystemClock()).monotonic_ns
    deadline = monotonic_ns() + round(wait_s * 1e9)
    while True:
        try:
            return _try_lock(state_dir)
        except _Busy as exc:
            if monotonic_ns() >= deadline:
                raise StateDirLocked(str(exc)) from None
        pause(POLL_S)


def _try_lock(state_dir: Path) -> StateDirLock:
    """One attempt of :func:`lock_state_dir`: the directory first, then the lock file."""
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst = os.fstat(dir_fd)
        if (dst.st_dev, dst.st_ino) in _held_dirs:
            raise StateDirLocked(f"{state_dir} is in use by this process already "
                                 f"(pid {os.getpid()})")
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _dir_flock_pid(dst)
            who = f" (pid {owner})" if owner else ""
            raise _Busy(f"{state_dir} is in use by another mmdaemon process{who}") from None
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            # EWOULDBLOCK from flock, EACCES or EAGAIN from lockf: held elsewhere (an older
            # version, which takes no directory lock). Closing fd drops no record lock of
            # ours: this process holds none on this file (its directory is not ours).
            try:
                holder = _holder(fd)
            finally:
                os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise _Busy(f"{state_dir} is in use by another mmdaemon process{who}") from None
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        os.close(dir_fd)
        raise
    st = os.fstat(fd)
    lock = StateDirLock(state_dir, dir_fd, (dst.st_dev, dst.st_ino), fd,
                        (st.st_dev, st.st_ino))
    _held[lock._key] = lock
    _held_dirs[lock._dir_key] = lock
    return lock


def lock_holder(state_dir: Path) -> int | None:
    """The pid of the process holding the record lock on ``state_dir``'s lock file; None if
    no process holds it (no lock file, or one left by an instance that is gone, or one
    recreated after the instance's was deleted). 0: held by a process outside this pid
    namespace, which cannot be named from here. Raises OSError when the lock file cannot
    be read (permissions): that says nothing about whether an instance runs. Says nothing
    about the directory's lock either: see :func:`dir_holder`."""
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


def dir_holder(state_dir: Path) -> int | None:
    """The pid of the process holding the flock on the directory ``state_dir`` (the
    exclusivity); None if nobody holds it (or there is no such directory); 0 if it is held
    by a process this one cannot name (outside this pid namespace, or no ``/proc/locks``).

    Whether it is held is asked of the lock itself: a ``LOCK_NB`` attempt, released at once
    when it succeeds (a starting instance waits such a moment out: ``wait_s``). Who holds
    it comes from ``/proc/locks``. Raises OSError when the directory cannot be opened."""
    try:
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        dst = os.fstat(dir_fd)
        if (dst.st_dev, dst.st_ino) in _held_dirs:
            return os.getpid()
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _dir_flock_pid(dst)
        return None  # nobody held it; closing the descriptor lets go of ours
    finally:
        os.close(dir_fd)


def _dir_flock_pid(st: os.stat_result) -> int:
    """The pid ``/proc/locks`` gives for the flock on the file ``st`` describes; 0 if none
    is listed (the kernel leaves out locks of processes outside the reader's pid namespace)
    or the list cannot be read."""
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as listing:
            for line in listing:
                # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:260072 0 EOF"; waiters have "->"
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return 0


def signal_holder(state_dir: Path, sig: signal.Signals, attempts: int = 3) -> int | None:
    """Send ``sig`` to the instance holding ``state_dir`` and return its pid; None if no
    process holds the directory's lock, 0 if the holder is outside this pid namespace
    (nothing sent).

    The holder is the process the kernel names as holding both the lock file's record lock
    and the directory's flock; it is pinned with a pidfd and confirmed as both *after* the
    pidfd is open, so a holder that exits and whose pid is reused in between is never
    signalled. When no process can be confirmed ``attempts`` times in a row (the lock
    changes hands; a record lock held by a process without the directory's lock; a
    directory held while nobody holds its lock file's record lock), nothing is sent and
    :class:`StateDirLocked` says why.
    """
    path = state_dir / LOCK_FILE
    why = ""
    for _ in range(attempts):
        pid = lock_holder(state_dir)
        if pid is None:
            owner = dir_holder(state_dir)
            if owner is None:
                return None
            who = f"pid {owner}" if owner else "a process this one cannot name"
            why = (f"{state_dir} is held by {who}, but nobody holds the record lock on its "
                   f"lock file {path} (deleted or replaced?), so it cannot be confirmed as "
                   f"an mmdaemon instance: nothing sent")
            continue
        if pid == 0:
            return pid
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # gone since: look again
            continue
        try:
            if lock_holder(state_dir) != pid:
                why = f"the lock on {state_dir} changed hands {attempts} times"
                continue
            owner = dir_holder(state_dir)
            if owner != pid:
                who = ("nobody" if owner is None else f"pid {owner}" if owner else
                       "a process this one cannot name")
                why = (f"pid {pid} holds a record lock on {path} but {who} holds the "
                       f"directory {state_dir}: pid {pid} is not the instance, nothing sent")
                continue
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                continue
            return pid
        finally:
            os.close(pidfd)
    raise StateDirLocked(why or f"the lock on {state_dir} changed hands {attempts} times "
                                f"while signalling its holder: try again")


def _holder(fd: int) -> int | None:
    """Who holds a conflicting record lock on the whole file open as ``fd``."""
    query = _Flock(l_type=fcntl.F_WRLCK, l_whence=os.SEEK_SET, l_start=0, l_len=0, l_pid=0)
    answer = _Flock.from_buffer_copy(fcntl.fcntl(fd, fcntl.F_GETLK, bytes(query)))
    if answer.l_type == fcntl.F_UNLCK:
        return None
    return max(int(answer.l_pid), 0)
