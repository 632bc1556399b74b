"""bench/tick_bounds.py's what-if variants change what a frame costs, never what the dry run
decides: the same frames quote, the appending stand-in receives every fill the journal
would have, and a variant it does not know is refused. Each run times the mmdaemon of the
checkout it names, or fails. The figures are the benchmark's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tick_bounds
from tests.conftest import SPOT_FILES

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "tick_bounds.py"


def needs_the_recording() -> None:
    if not all(p.exists() for p in SPOT_FILES):
        pytest.skip(f"{SPOT_FILES[0].parent} not present: the bundled recording is needed")


def test_every_variant_times_the_same_frames_as_the_service_itself() -> None:
    needs_the_recording()
    base = tick_bounds.child_run(REPO, "base")
    varied = tick_bounds.child_run(REPO, "append+nolog+big")
    assert len(base) == len(varied) > 100  # the same frames caused actions
    assert all(ns > 0 for ns in base + varied)


def test_the_appending_stand_in_takes_each_fill_once(tmp_path: Path) -> None:
    class FillLike:
        def __init__(self, exec_id: int) -> None:
            self.exec_id, self.order_id, self.side, self.price = exec_id, 7, 1, 59_000_00
            self.size, self.fee, self.maker, self.ts_ns, self.mid_x2 = 3, -1, True, 5, 0

    record_fill = tick_bounds._appending(tmp_path / "fills.bin")
    assert [record_fill(FillLike(i)) for i in (1, 2, 1, 3)] == [True, True, False, True]
    written = (tmp_path / "fills.bin").read_bytes()
    assert len(written) == 3 * tick_bounds.FILL_RECORD.size
    assert [r[0] for r in tick_bounds.FILL_RECORD.iter_unpack(written)] == [1, 2, 3]


def test_a_run_times_the_mmdaemon_of_the_checkout_it_names(tmp_path: Path) -> None:
    needs_the_recording()
    other = tmp_path / "other"
    shutil.copytree(REPO / "mmdaemon", other / "mmdaemon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert tick_bounds.child_run(other, "base")  # its own copy: timed
    # a directory without an mmdaemon of its own would time this checkout's: refused
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="ran the mmdaemon of"):
        tick_bounds.child_run(tmp_path / "empty", "base")


def test_an_unknown_variant_is_refused_with_the_known_ones_named() -> None:
    done = subprocess.run([sys.executable, str(BENCH), ".:fast"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "unknown variant in 'fast'" in done.stderr and "append" in done.stderr
