"""A journal that cannot be written fails closed: KILLED, logged, orders pulled, exit 1."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from tests.helpers import write_config
from tests.recorder import Recorder


class BreakJournalAfterFirstFill(Recorder):
    """Logs like the recorder; after the first fill, the journal's database goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.service: Service | None = None

    def _log(self, event: str, **fields: Any) -> None:
        super()._log(event, **fields)
        if event == "fill" and self.service is not None and len(self.named("fill")) == 1:
            self.service.journal._db.close()  # the file system under it failed

    info = warning = error = debug = _log


def test_journal_write_failure_kills_and_pulls_quotes(tmp_path: Path) -> None:
    log = BreakJournalAfterFirstFill()
    service = Service(load_config(write_config(tmp_path)), SystemClock(), log, speed=None)
    log.service = service
    # the failure surfaces from run() (through the task group): the process exits 1
    with pytest.raises(ExceptionGroup) as raised:
        asyncio.run(service.run())
    assert raised.group_contains(sqlite3.ProgrammingError)
    assert service.exit_code == 1
    failed = log.named("journal_write_failed")
    assert failed and "closed database" in failed[0]["error"]
    trip = log.named("kill_switch_tripped")
    assert trip and trip[0]["reason"] == "journal_write_failed"
    assert service.engine.risk.state.value == "KILLED"
    # the fill that could not be journaled was not counted either: nothing acted on it
    assert service.engine.position.fills == 1
    assert service.exchange.open_order_count() == 0
    assert log.named("stopped")[-1]["open_orders"] == 0


class BreakJournalWhenActive(Recorder):
    """After the first ACTIVE, the journal's database goes away: the next periodic write
    (report samples) fails, with no fill involved."""

    def __init__(self) -> None:
        super().__init__()
        self.service: Service | None = None

    def _log(self, event: str, **fields: Any) -> None:
        super()._log(event, **fields)
        first_active = event == "state_changed" and fields.get("new") == "ACTIVE"
        if first_active and self.service and not self.named("journal_write_failed"):
            self.service.journal._db.close()

    info = warning = error = debug = _log


def test_a_failed_periodic_write_also_ends_the_run_with_exit_1(tmp_path: Path) -> None:
    log = BreakJournalWhenActive()
    service = Service(load_config(write_config(tmp_path, {"feed": {"speed": "1"}})),
                      SystemClock(), log)
    log.service = service
    asyncio.run(asyncio.wait_for(service.run(), 60))  # paced: it would run 10 minutes
    assert service.exit_code == 1
    assert service.engine.risk.state.value == "KILLED"
    failed = log.named("journal_write_failed")
    assert len(failed) == 1 and failed[0]["during"] in {"samples", "state", "pnl_peak"}
    assert log.named("service_stopping")[0]["reason"] == "journal_write_failed"
    assert log.named("stopped")[-1]["exit_code"] == 1
    assert service.exchange.open_order_count() == 0
