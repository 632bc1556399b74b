"""bench/wire_floor.py's floor client against bench/lean_venue.py (real processes on
127.0.0.1, a slice of the bundled recording at ten times its pace): the floor it measures
is real, one sample per order frame it wrote, each between the kernel's receive stamp and
the write, and the stand-in answered every request. The figures themselves are the
benchmark's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvloop

from bench import wire, wire_floor
from tests.conftest import SPOT_FILES

LINES = 400  # of the bundled recording: 18 depth frames, about 0.4 s at speed 10
SPEED = 10.0


def floor_run(tmp: Path, work_us: int, poll: bool, every: int) -> dict[str, Any]:
    if not SPOT_FILES[0].exists():
        pytest.skip(f"{SPOT_FILES[0]} not present: the bundled recording is needed")
    recording = tmp / "slice.gz"
    wire._slice(LINES, recording)
    return uvloop.run(wire_floor.run_floor(tmp, recording, SPEED, 0, work_us, poll, every))


def assert_every_order_timed_and_answered(run: dict[str, Any], orders: int) -> None:
    assert run["complete"] and run["depth_frames"] == run["depth_frames_expected"]
    assert run["writes"] == run["orders"] == len(run["samples_ns"]) == orders > 0
    assert run["not_open"] == 0 and run["buffered_writes"] == 0  # each write went out at once
    assert all(0 < ns < run["duration_ns"] for ns in run["samples_ns"])
    assert run["min_us"] <= run["p50_us"] <= run["p99_us"] <= run["max_us"]
    assert run["stamp"] == "kernel"
    # the stand-in read every request and answered each without a refusal
    venue = run["venue"]
    assert venue["requests_by_method"] == {"order.place": 1, "order.cancelReplace": orders}
    assert venue["refused"] == {} and venue["protocol_errors"] == 0
    assert run["answers_ok"] == orders and run["answers_refused"] == 0
    assert venue["finished"] and venue["open_orders"] == 1  # floor-1, replaced by itself


def test_the_floor_client_times_one_order_per_depth_frame_and_each_is_answered(
        tmp_path: Path) -> None:
    run = floor_run(tmp_path, work_us=0, poll=False, every=1)
    assert run["depth_frames_expected"] == 18
    assert_every_order_timed_and_answered(run, orders=18)
    assert run["messages"] > run["depth_frames"]  # trades and bookTicker read and dropped
    assert run["spins"] == 0 and run["burn_iterations"] == 0


def test_the_floor_client_burning_cpu_and_busy_polling_still_times_every_order(
        tmp_path: Path) -> None:
    run = floor_run(tmp_path, work_us=60, poll=True, every=2)
    assert_every_order_timed_and_answered(run, orders=9)  # every second depth frame
    assert run["burn_iterations"] > 0 and run["burn_cpu_us"] is not None
    assert run["spins"] > run["messages"]  # the loop turned without sleeping between them
