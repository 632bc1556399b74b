"""bench/tick_bounds.py's what-if variants change what a frame costs, never what the dry run
decides: the same frames quote, the appending stand-in receives every fill the journal
would have, and a variant it does not know is refused. The figures are the benchmark's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench import tick_bounds
from tests.conftest import SPOT_FILES

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "tick_bounds.py"


def child_run(variant: str) -> list[int]:
    out = subprocess.run([sys.executable, str(BENCH), "child", str(REPO), variant],
                         capture_output=True, check=True, timeout=120).stdout
    samples: list[int] = orjson.loads(out.splitlines()[-1])
    return samples


def test_every_variant_times_the_same_frames_as_the_service_itself() -> None:
    if not all(p.exists() for p in SPOT_FILES):
        pytest.skip(f"{SPOT_FILES[0].parent} not present: the bundled recording is needed")
    base = child_run("base")
    varied = child_run("append+nolog+big")
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


def test_an_unknown_variant_is_refused_with_the_known_ones_named() -> None:
    done = subprocess.run([sys.executable, str(BENCH), ".:fast"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "unknown variant in 'fast'" in done.stderr and "append" in done.stderr
