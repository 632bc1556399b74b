"""The dry run's result is pinned: optimisations must not change behaviour.

``tests/data/dry_run_pin.json`` holds the ``mmdaemon replay --json`` summary of the bundled
recording with the shipped ``config/dryrun.toml`` (everything but the wall-clock fields and
the provenance: version, config and feed),
and every journaled fill. A change to it must be a deliberate behaviour change: regenerate
with ``MMDAEMON_REPIN=1 .venv/bin/python -m pytest tests/process/test_dry_run_pin.py`` and explain
the difference in the commit.

The run is made twice: with the compiled hot loops (when they are built) and with
``MMDAEMON_PURE_PYTHON=1``, so both give the pinned result.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmdaemon import speedups
from tests.conftest import PIN, REPO, SPOT_FILES, UNPINNED_FIELDS


@pytest.mark.parametrize("pure_python", [False, True], ids=["compiled", "pure-python"])
def test_dry_run_summary_and_fills_are_pinned(tmp_path: Path, pure_python: bool) -> None:
    if not pure_python and speedups.compiled is None:
        pytest.skip("the compiled hot loops are not built here (no C compiler at install)")
    env = {k: v for k, v in os.environ.items() if k != "MMDAEMON_PURE_PYTHON"}
    if pure_python:
        env["MMDAEMON_PURE_PYTHON"] = "1"
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
         str(REPO / "config" / "dryrun.toml"), "--state-dir", str(state), "--json"],
        capture_output=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads(proc.stdout)
    for key in UNPINNED_FIELDS:
        summary.pop(key)
    db = sqlite3.connect(state / "journal.sqlite")
    summary["journal_fills"] = [list(r) for r in db.execute(
        "SELECT exec_key, order_id, side, price, size, fee, maker, ts_ns FROM fills ORDER BY seq")]
    db.close()
    if os.environ.get("MMDAEMON_REPIN") == "1":
        PIN.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                        + b"\n")
    pinned = orjson.loads(PIN.read_bytes())
    assert len(summary["journal_fills"]) == summary["fills"] > 0
    changed = {k: (pinned.get(k), summary.get(k)) for k in pinned.keys() | summary.keys()
               if pinned.get(k) != summary.get(k)}
    assert not changed, f"the dry-run result changed (pinned, now): {changed}"
