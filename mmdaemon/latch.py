"""The kill latch: one fixed-size record in a file beside the journal, flipped in place.

Why a file of its own, when the journal (SQLite) also keeps the kill: a kill must be on disk
*before* it is announced, and the usual reason to kill is that something is failing, the
disk among them. SQLite needs free space to commit anything (its WAL grows), so on a full
disk the journal cannot record the kill at all. This file is created and fsynced at start
with its final size, and every later change overwrites the same :data:`RECORD_SIZE` bytes at
offset 0 and ``fdatasync``\\ s them: no block is allocated after start, so a full disk
cannot refuse it (on a copy-on-write file system such as btrfs or ZFS an overwrite still
needs space: keep the state directory on ext4, xfs or tmpfs).

If even that write fails (an I/O error, a file system gone read-only), the latch file is
*removed*: unlinking needs no space either, and a state directory whose journal says a
latch was created but which has no latch file starts KILLED. If both fail the caller must
stop trading and exit non-zero (:class:`LatchNotPersisted`).

The record is fail-closed: only a record that parses, has the right size and checksum and
says ``armed`` lets the daemon quote; anything else (torn, truncated, edited, unreadable)
reads as killed, with the reason saying which.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from mmdaemon.records import LatchNotPersisted, LatchState
from mmdaemon.statedir import lock_state_dir

LATCH_FILE = "kill.latch"
RECORD_SIZE = 512
"""Bytes of the record: one disk sector, written at offset 0 in a single ``pwrite``."""

MAGIC = "mmdaemon kill latch v1"
JOURNAL_KEY = "kill_latch"
"""The journal's note that this state directory has had a latch file since then."""


def encode(state: LatchState, ts_ns: int) -> bytes:
    """The record for ``state`` at ``ts_ns`` (wall clock, ns): exactly RECORD_SIZE bytes."""
    reason = " ".join(state.reason.split())  # one line, whatever the reason held
    body = (f"{MAGIC}\nstate={'killed' if state.killed else 'armed'}\n"
            f"reason={reason}\nts_ns={ts_ns}\n")
    raw = body.encode("utf-8", "replace")
    # the reason is free text: cut it rather than let the record outgrow its sector
    room = RECORD_SIZE - 16  # "crc=xxxxxxxx\n" and the final newline
    if len(raw) > room:
        raw = raw[: room - 1] + b"\n"
    raw += f"crc={zlib.crc32(raw):08x}\n".encode()
    return raw.ljust(RECORD_SIZE - 1, b" ") + b"\n"


def decode(record: bytes) -> LatchState:
    """Read a record; anything but a whole, intact ``armed`` record reads as killed."""
    if len(record) != RECORD_SIZE:
        return LatchState(True, f"latch_unreadable: {len(record)} bytes, not {RECORD_SIZE}")
    body, sep, tail = record.rpartition(b"crc=")  # the last: a reason may hold "crc="
    crc = tail[:8]
    if not sep or not crc or f"{zlib.crc32(body):08x}".encode() != crc:
        return LatchState(True, "latch_unreadable: checksum mismatch (torn or edited)")
    lines = body.decode("utf-8", "replace").splitlines()
    fields = dict(line.partition("=")[::2] for line in lines[1:])
    if not lines or lines[0] != MAGIC or fields.get("state") not in ("armed", "killed"):
        return LatchState(True, "latch_unreadable: not a kill latch record")
    if fields["state"] == "armed":
        return LatchState(False, "")
    return LatchState(True, fields.get("reason", "") or "killed")


class KillLatch:
    """The open latch file of one state directory (see the module docstring).

    Invariant: while open, the file exists with RECORD_SIZE bytes that were fsynced, or a
    kill has removed it (:attr:`removed`).
    """

    def __init__(self, path: Path, fd: int, state: LatchState) -> None:
        self.path = path
        self._fd = fd
        self.state = state
        self.removed = False

    @classmethod
    def open(cls, state_dir: Path, created_before: bool, journal_killed: bool,
             journal_reason: str, now_ns: int) -> KillLatch:
        """Open (or create) the latch of ``state_dir`` and prove it can be written.

        ``created_before``: the journal says this directory had a latch file already, so
        a missing file means a kill removed it (or someone did): killed. A directory that
        never had one (new, or from a version before the latch file) gets one holding the
        journal's kill state. The current record is written back in place and synced, so a
        file system that cannot take the write fails here, before any order, not at the
        moment of a kill. Raises OSError when it cannot be opened, created or written.
        """
        path = state_dir / LATCH_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if created_before:
                state = LatchState(True, "latch_missing: the kill latch file was removed "
                                         "(a kill that could not be written, or by hand)")
            else:
                state = LatchState(journal_killed, journal_reason if journal_killed else "")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            latch = cls(path, fd, state)
            try:
                latch._write(state, now_ns)
                _sync_dir(state_dir)
            except OSError:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            return latch
        try:
            record = os.pread(fd, RECORD_SIZE + 1, 0)
            state = decode(record)
            if journal_killed and not state.killed:
                # a kill the journal kept but the latch missed (written by an older
                # version, or the latch was restored from a backup): the kill wins
                state = LatchState(True, journal_reason or "killed")
            latch = cls(path, fd, state)
            if len(record) != RECORD_SIZE:
                os.ftruncate(fd, RECORD_SIZE)
            latch._write(state, now_ns)
        except OSError:
            os.close(fd)
            raise
        return latch

    def set(self, killed: bool, reason: str, now_ns: int) -> None:
        """Latch (``killed``) or clear the kill, on disk before this returns.

        A kill that cannot be written removes the file instead (the next start reads a
        missing latch as killed); :class:`LatchNotPersisted` if that fails too. Clearing
        never falls back: a re-arm that cannot be written raises OSError and the latch
        stays killed.
        """
        state = LatchState(killed, reason if killed else "")
        if self.removed:
            if killed:
                self.state = state
                return  # already reads as killed at the next start
            raise OSError(f"{self.path} was removed by a kill: restart to re-create it")
        try:
            self._write(state, now_ns)
        except OSError as exc:
            if not killed:
                raise
            try:
                self.path.unlink()
                _sync_dir(self.path.parent)
            except OSError as unlink_exc:
                raise LatchNotPersisted(
                    f"cannot write {self.path} ({exc}) nor remove it ({unlink_exc})"
                ) from exc
            self.removed = True
        self.state = state

    def close(self) -> None:
        os.close(self._fd)

    def _write(self, state: LatchState, now_ns: int) -> None:
        record = encode(state, now_ns)
        written = os.pwrite(self._fd, record, 0)
        if written != RECORD_SIZE:
            raise OSError(f"short write to {self.path}: {written} of {RECORD_SIZE} bytes")
        os.fdatasync(self._fd)


def read_latch(state_dir: Path) -> LatchState | None:
    """The latch of ``state_dir`` without opening it for writing (``status``, tests);
    None if there is no latch file."""
    try:
        return decode((state_dir / LATCH_FILE).read_bytes())
    except FileNotFoundError:
        return None


def read_latch_since(state_dir: Path) -> tuple[LatchState, int | None] | None:
    """:func:`read_latch` with the time the record was last written (its ``ts_ns``: the
    daemon's event time, wall time on a live feed), None when the record is unreadable (it
    reads as killed all the same); None if there is no latch file (``status``)."""
    try:
        record = (state_dir / LATCH_FILE).read_bytes()
    except FileNotFoundError:
        return None
    state = decode(record)
    if state.reason.startswith("latch_unreadable"):
        return state, None
    fields = dict(line.partition("=")[::2] for line in record.decode("utf-8", "replace")
                  .splitlines()[1:])
    ts = fields.get("ts_ns", "")
    return state, int(ts) if ts.isdigit() else None


def _sync_dir(directory: Path) -> None:
    """fsync a directory, so a file created or removed in it stays so after a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latch_kill_offline(state_dir: Path, reason: str, now_ns: int) -> Path:
    """Latch the kill of a state directory no process holds (``mmdaemon kill`` between
    runs, a kill signal that reached a process after its service had closed): under the
    state directory's lock, so no instance starts meanwhile; the next start is KILLED.
    Raises :class:`~mmdaemon.statedir.StateDirLocked` if an instance holds it after all,
    OSError if the latch cannot be written. Returns the latch's path."""
    with lock_state_dir(state_dir):
        latch = KillLatch.open(state_dir, created_before=True, journal_killed=True,
                               journal_reason=reason, now_ns=now_ns)
        try:
            latch.set(True, reason, now_ns)
        finally:
            latch.close()
        return latch.path
