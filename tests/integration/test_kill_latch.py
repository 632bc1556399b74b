"""The kill latch file: fail-closed reading, in-place writes, removal as the last resort,
and what the service does with it (a kill persisted before it is announced; a latch that
cannot be written stops the process)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.latch import (
    LATCH_FILE,
    RECORD_SIZE,
    KillLatch,
    decode,
    encode,
    read_latch,
)
from mmdaemon.records import LatchNotPersisted, LatchState
from tests.helpers import first_lines, write_config
from tests.recorder import Recorder


def test_records_round_trip_and_anything_damaged_reads_killed() -> None:
    armed = encode(LatchState(False, ""), 1)
    killed = encode(LatchState(True, "operator_kill_switch"), 2)
    assert len(armed) == len(killed) == RECORD_SIZE
    assert decode(armed) == LatchState(False, "")
    assert decode(killed) == LatchState(True, "operator_kill_switch")
    # torn (half old, half new), truncated, edited by hand, empty, zeros: all killed
    torn = killed[:40] + armed[40:]
    edited = armed.replace(b"state=armed", b"state=armeD")
    for bad in (torn, armed[:100], edited, b"", b"\0" * RECORD_SIZE):
        state = decode(bad)
        assert state.killed and state.reason.startswith("latch_unreadable"), bad[:40]
    # a reason is one line, cut to fit, and cannot forge the checksum field
    long = encode(LatchState(True, "x\ncrc=00000000 " + "y" * 2000), 3)
    assert len(long) == RECORD_SIZE and decode(long).killed
    assert "\n" not in decode(long).reason


def test_a_new_directory_gets_an_armed_latch_and_a_missing_one_later_reads_killed(
    tmp_path: Path
) -> None:
    latch = KillLatch.open(tmp_path, created_before=False, journal_killed=False,
                           journal_reason="", now_ns=1)
    latch.close()
    assert read_latch(tmp_path) == LatchState(False, "")
    assert (tmp_path / LATCH_FILE).stat().st_size == RECORD_SIZE
    (tmp_path / LATCH_FILE).unlink()
    latch = KillLatch.open(tmp_path, created_before=True, journal_killed=False,
                           journal_reason="", now_ns=2)
    latch.close()
    state = read_latch(tmp_path)
    assert state is not None and state.killed and state.reason.startswith("latch_missing")


def test_a_journal_kill_from_before_the_latch_file_carries_over(tmp_path: Path) -> None:
    # a state directory of an older version: no latch file, the journal says killed
    latch = KillLatch.open(tmp_path, created_before=False, journal_killed=True,
                           journal_reason="max_loss", now_ns=1)
    latch.close()
    assert read_latch(tmp_path) == LatchState(True, "max_loss")


def test_a_kill_that_cannot_be_written_removes_the_file_and_then_gives_up(
    tmp_path: Path
) -> None:
    latch = KillLatch.open(tmp_path, False, False, "", 1)
    path = tmp_path / LATCH_FILE
    # the file can no longer be written through its descriptor (EBADF from the kernel)
    os.close(latch._fd)
    latch._fd = os.open(path, os.O_RDONLY)
    latch.set(True, "operator_kill_switch", 2)
    assert latch.removed and not path.exists() and latch.state.killed
    latch.close()
    # ... and when the file cannot be removed either (a directory in its place)
    latch = KillLatch.open(tmp_path, True, False, "", 3)
    os.close(latch._fd)
    latch._fd = os.open(path, os.O_RDONLY)
    path.rename(tmp_path / "moved")
    path.mkdir()
    with pytest.raises(LatchNotPersisted, match="nor remove it"):
        latch.set(True, "operator_kill_switch", 4)
    latch.close()


def test_rearm_never_falls_back_to_removing_the_file(tmp_path: Path) -> None:
    latch = KillLatch.open(tmp_path, False, True, "operator_kill_switch", 1)
    os.close(latch._fd)
    latch._fd = os.open(tmp_path / LATCH_FILE, os.O_RDONLY)
    with pytest.raises(OSError):
        latch.set(False, "", 2)
    latch.close()
    assert read_latch(tmp_path) == LatchState(True, "operator_kill_switch")


class KillOnFirstOrder(Recorder):
    """Trips the kill switch (as SIGUSR1 would) at the first fill."""

    def __init__(self, break_latch: bool) -> None:
        super().__init__()
        self.service: Service | None = None
        self.break_latch = break_latch
        self.tripped = False

    def _log(self, event: str, **fields: Any) -> None:
        super()._log(event, **fields)
        s = self.service
        if event == "fill" and s and not self.tripped:  # orders rest at the (paper) venue
            self.tripped = True
            asyncio.get_running_loop().call_soon(self._trip, s)  # as a signal would

    def _trip(self, s: Service) -> None:
        if self.break_latch:  # the latch can be neither written nor removed
            os.close(s.latch._fd)
            s.latch._fd = os.open(s.latch.path, os.O_RDONLY)
            s.latch.path.rename(s.latch.path.with_name("moved"))
            s.latch.path.mkdir()
        s.kill("operator_kill_switch")

    info = warning = error = debug = _log


def _service(tmp_path: Path, log: KillOnFirstOrder) -> Service:
    rec = first_lines(tmp_path / "slice.gz", 60_000)
    config = load_config(write_config(tmp_path, {"feed": {"recordings": [str(rec)]}}))
    service = Service(config, SystemClock(), log, speed=None)
    log.service = service
    return service


def test_the_kill_is_on_disk_before_the_state_says_killed(tmp_path: Path) -> None:
    log = KillOnFirstOrder(break_latch=False)
    service = _service(tmp_path, log)
    seen: list[LatchState | None] = []
    transition = service.engine._on_transition

    def spy(old: Any, new: Any, reason: str, values: dict[str, Any]) -> None:
        if new.value == "KILLED":
            seen.append(read_latch(service.state_dir))  # what a crash right now would find
        transition(old, new, reason, values)

    service.engine._on_transition = spy  # type: ignore[method-assign]
    asyncio.run(service.run())
    assert log.tripped
    assert seen == [LatchState(True, "operator_kill_switch")]
    assert service.exit_code == 0 and service.engine.risk.state.value == "KILLED"


def test_a_kill_that_reaches_no_disk_cancels_everything_and_exits_1(tmp_path: Path) -> None:
    log = KillOnFirstOrder(break_latch=True)
    service = _service(tmp_path, log)
    asyncio.run(service.run())
    assert log.tripped and service.engine.counters.orders > 0
    failed = log.named("kill_latch_failed")
    assert failed and "nor remove it" in failed[0]["error"]
    assert service.engine.risk.state.value == "KILLED"
    assert service.exit_code == 1
    assert service.exchange.open_order_count() == 0
    assert log.named("stopped")[-1]["exit_code"] == 1
