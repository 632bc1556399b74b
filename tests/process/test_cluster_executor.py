"""DaskExecutor against a real local Dask cluster: a scheduler and two worker processes
started here on 127.0.0.1, and the bundled recording shipped to them.

The task functions are this module's own (the workers import it from the repository, as
they would import mmdaemon's). Waiting is polling: a task that must finish last or be
running when its worker is killed waits for a gate file the test creates."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from mmdaemon.sweep.cluster import ClusterError, DaskExecutor, TaskFailed, WrongCode, _run_task
from mmdaemon.sweep.executor import Recording, materialize
from tests.conftest import REPO, SPOT_FILES
from tests.dask_cluster import DaskCluster, two_worker_cluster  # noqa: F401 (fixture)
from tests.helpers import wait_for
from tests.process.test_record_sim_cli import free_port

RECORDING = Recording.read(SPOT_FILES[0])
_HELD: list[Sequence[Recording]] = []  # on a worker: every task's recordings, kept alive


def _square(task: int, recordings: Sequence[Recording]) -> int:
    return task * task


def _where(task: tuple[int, str], recordings: Sequence[Recording]
           ) -> tuple[int, int, str, str]:
    """Which process ran the task, which copy of the recording it was given (its bytes
    object: held, so no later copy can reuse the id), the file materialize gave, and that
    file's digest. Task 0 waits for the gate."""
    if task[0] == 0:
        _wait_for_gate(Path(task[1]))
    _HELD.append(recordings)
    path = materialize(recordings)[0]
    return (os.getpid(), id(recordings[0].data), str(path),
            hashlib.sha256(path.read_bytes()).hexdigest())


def _wait_for_gate(gate: Path) -> None:
    deadline = time.monotonic() + 60
    while not gate.exists():
        assert time.monotonic() < deadline, f"{gate} never appeared"
        time.sleep(0.01)  # the poll interval


def _first_gated(task: tuple[int, str], recordings: Sequence[Recording]) -> int:
    """Task 0 waits for the gate (the test opens it once another task finished)."""
    index, gate = task
    if index == 0:
        _wait_for_gate(Path(gate))
    return index * 10


def _fails_at_three(task: int, recordings: Sequence[Recording]) -> int:
    if task == 3:
        raise ValueError(f"no row for {task}")
    return task


def _started_then_gated(task: tuple[int, str], recordings: Sequence[Recording]) -> str:
    """Marks that it started (task and process), waits for the gate; the result depends on
    the task and the recording only."""
    index, folder = task
    (Path(folder) / f"started-{index}-{os.getpid()}").touch()
    _wait_for_gate(Path(folder) / "gate")
    return f"{index}:{recordings[0].sha256}"


def _recordings_held(dask_worker: Any) -> int:
    """How many recordings a Dask worker holds in its data store."""
    return sum(isinstance(value, Recording) for value in dask_worker.data.values())


def _scheduler_tasks(dask_scheduler: object) -> int:
    return len(dask_scheduler.tasks)  # type: ignore[attr-defined]


def test_results_come_in_task_order_and_on_result_as_tasks_finish(
        cluster: DaskCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    seen: list[int] = []

    def on_result(index: int, result: int) -> None:
        seen.append(index)
        gate.touch()  # task 0 ends after this one: they finish out of order

    tasks = [(i, str(gate)) for i in range(8)]
    with DaskExecutor(cluster.address) as executor:
        assert executor.workers == 2
        results = executor.map(_first_gated, tasks, [RECORDING], on_result)
    assert results == [i * 10 for i in range(8)]
    assert seen[0] != 0 and sorted(seen) == list(range(8))


def test_the_recordings_reach_each_worker_once_not_once_per_task(
        cluster: DaskCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    held: list[dict[str, int]] = []

    def on_result(index: int, row: tuple[int, int, str, str]) -> None:
        if not held:  # the sweep under way (task 0 waits for the gate)
            with Client(cluster.address, timeout=10, set_as_default=False) as client:
                held.append(client.run(_recordings_held))
        gate.touch()

    with DaskExecutor(cluster.address) as executor:
        rows = executor.map(_where, [(i, str(gate)) for i in range(16)], [RECORDING],
                            on_result)
    # each worker holds one copy, broadcast before the tasks (none inside a task)
    assert held == [dict.fromkeys(cluster.worker_addresses().values(), 1)]
    by_process: dict[int, set[tuple[int, str]]] = {}
    for pid, copy, path, digest in rows:
        assert digest == RECORDING.sha256
        by_process.setdefault(pid, set()).add((copy, path))
    # and each process that runs tasks: one copy of the bytes, one file, for all its tasks
    assert all(len(copies) == 1 for copies in by_process.values()), by_process
    assert {Path(path).name for _, _, path, _ in rows} == {SPOT_FILES[0].name}


def test_a_raising_task_fails_the_sweep_naming_its_index_and_leaves_nothing_behind(
        cluster: DaskCluster) -> None:
    with DaskExecutor(cluster.address) as executor:
        with pytest.raises(TaskFailed, match=r"sweep task 3 raised ValueError: no row for 3"
                           ) as failed:
            executor.map(_fails_at_three, list(range(8)), [RECORDING])
        assert failed.value.index == 3
        assert isinstance(failed.value.__cause__, ValueError)
        # released while still connected (the error's traceback holds map's futures): the
        # other tasks and the recordings
        with Client(cluster.address, timeout=10, set_as_default=False) as client:
            wait_for(lambda: client.run_on_scheduler(_scheduler_tasks) == 0, timeout=30,
                     what="the scheduler holding no task or recording of ours")
        # the executor is still usable after a failed sweep
        assert executor.map(_square, [1, 2, 3], [RECORDING]) == [1, 4, 9]


def test_a_worker_killed_mid_sweep_costs_a_rerun_not_the_sweep(tmp_path: Path) -> None:
    running = DaskCluster(tmp_path / "dask")
    try:
        running.add_workers("a", "b")
        tasks = [(i, str(tmp_path)) for i in range(6)]
        outcome: list[list[str]] = []
        with DaskExecutor(running.address) as executor:
            sweep = threading.Thread(target=lambda: outcome.append(
                executor.map(_started_then_gated, tasks, [RECORDING])))
            sweep.start()
            wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2, timeout=60,
                     what="both workers running a task")
            with Client(running.address, timeout=10, set_as_default=False) as client:
                victim = min(client.run(os.getpid).values())  # a Dask worker process
            os.kill(victim, signal.SIGKILL)  # as the OOM killer would: its nanny restarts it
            (tmp_path / "gate").touch()
            sweep.join(timeout=120)
            assert not sweep.is_alive()
        assert outcome == [[f"{i}:{RECORDING.sha256}" for i in range(6)]]
        # the task the dead worker was running started once more, elsewhere
        assert len(list(tmp_path.glob("started-*"))) == len(tasks) + 1
    finally:
        running.stop()


def test_a_worker_with_another_mmdaemon_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(REPO / "mmdaemon", other / "mmdaemon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "mmdaemon" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "9.9.9"'))
    running = DaskCluster(tmp_path / "dask")
    try:
        running.add_workers("same")
        running.add_workers("other", env={"PYTHONPATH": f"{other}{os.pathsep}{REPO}"})
        odd = running.worker_addresses()["other"]
        with pytest.raises(ClusterError) as refused, DaskExecutor(running.address):
            pass
        message = str(refused.value)
        assert f"worker {odd} of {running.address} runs mmdaemon 9.9.9 (source " in message
        assert "this client mmdaemon 0.1.0 (source " in message
    finally:
        running.stop()


def test_a_worker_without_mmdaemon_is_refused_naming_it(tmp_path: Path) -> None:
    # a worker whose Python cannot import mmdaemon, made by a preload module that hides it
    # (a real environment without it would need a second installation of distributed)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "hide_mmdaemon.py").write_text(
        "import sys\n\n\nclass Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mmdaemon':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n\n\n"
        "sys.meta_path.insert(0, Hide())\n")
    running = DaskCluster(tmp_path / "dask")
    try:
        running.add_workers("bare", env={"PYTHONPATH": str(hide)}, preload="hide_mmdaemon")
        bare = running.worker_addresses()["bare"]
        refusal = (rf"worker {bare} of {running.address} cannot run mmdaemon \(.*No module "
                   r"named 'mmdaemon.*\): install mmdaemon 0\.1\.0 \(source \w+\) there")
        with pytest.raises(ClusterError, match=refusal), DaskExecutor(running.address):
            pass
    finally:
        running.stop()


def test_an_unreachable_scheduler_is_named_with_the_timeout() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ClusterError, match=rf"cannot reach the Dask scheduler at {address} "
                       r"within 1\.5 s"), DaskExecutor(address, connect_timeout_s=1.5):
        pass


def test_a_task_on_a_worker_with_other_code_refuses_to_run() -> None:
    # the guard inside every task, for a worker that joined after the check
    with pytest.raises(WrongCode, match=r"this worker runs mmdaemon 0\.1\.0 \(source \w+\), "
                       r"the client 9\.9\.9"):
        _run_task(_square, 3, [], "9.9.9 (source 000000000000)")

