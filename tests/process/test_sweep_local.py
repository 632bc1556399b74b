"""The local executor (mmdaemon/sweep/local.py) keeps the executor contract with real worker
processes: results in task order, every result reported once, the recordings written once
per worker and reused by all its tasks, a failing task named by its index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from mmdaemon.sweep.executor import Recording, materialize
from mmdaemon.sweep.local import ProcessExecutor


def where(task: int, recordings: Sequence[Recording]) -> tuple[int, int, str, bytes]:
    """The task, the worker's pid, where its recordings are and what the first holds."""
    if task < 0:
        raise ValueError(f"task {task} refused")
    (path,) = materialize(recordings)
    return task, os.getpid(), str(path), path.read_bytes()


def test_results_come_in_task_order_and_each_worker_writes_the_recordings_once(
        tmp_path: Path) -> None:
    recording = Recording("day.gz", b"1723161253937085768 {}\n")
    seen: list[int] = []
    with ProcessExecutor(2) as executor:
        results = executor.map(where, list(range(40)), [recording],
                               on_result=lambda i, _r: seen.append(i))
        assert executor.workers == 2
    assert [task for task, *_ in results] == list(range(40))
    assert sorted(seen) == list(range(40))
    pids = {pid for _, pid, _, _ in results}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    # one file per worker, shared by all its tasks, holding the recording's bytes
    for pid in pids:
        paths = {path for _, p, path, _ in results if p == pid}
        assert len(paths) == 1 and Path(next(iter(paths))).name == "day.gz"
    assert all(data == recording.data for *_, data in results)
    # the workers are gone, and their copies of the recordings with them
    assert not any(Path(path).exists() for _, _, path, _ in results)


def test_a_failing_task_is_named_by_its_index() -> None:
    with ProcessExecutor(2) as executor, pytest.raises(RuntimeError,
                                                       match=r"^sweep task 3 failed: "
                                                             r"ValueError\('task -1 refused'\)"):
        executor.map(where, [0, 1, 2, -1, 4], [Recording("a.gz", b"x")])


def test_a_map_with_other_recordings_gives_the_tasks_those() -> None:
    with ProcessExecutor(1) as executor:
        first = executor.map(where, [0], [Recording("a.gz", b"first")])
        second = executor.map(where, [0], [Recording("a.gz", b"second")])
    assert first[0][3] == b"first" and second[0][3] == b"second"


def test_workers_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="workers: expected at least 1 process, got 0"):
        ProcessExecutor(0)
