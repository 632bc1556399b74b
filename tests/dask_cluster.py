"""A real Dask cluster on 127.0.0.1 for the tests: a ``dask scheduler`` and ``dask worker``
processes (one process, one thread each, under the usual nanny), started and stopped here.

Readiness is polled (the scheduler file, then the workers registered), never slept for.
Workers start in the repository (``PYTHONPATH``), so the test modules' own task functions
can be unpickled there as they are in the test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from distributed import Client

from mmdaemon.sweep.cluster import NOT_DAEMONIC
from tests.conftest import REPO
from tests.helpers import wait_for

NOT_DAEMONIC_KEY = NOT_DAEMONIC.split("=")[0]


class DaskCluster:
    """A scheduler on a free loopback port and the workers added by :meth:`add_worker`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}  # name -> its nanny
        scheduler_file = self.dir / "scheduler.json"
        self._spawn("scheduler", [
            "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
            "--no-dashboard", "--scheduler-file", str(scheduler_file)], {})
        self.address: str = wait_for(lambda: _address(scheduler_file), timeout=60,
                                     what="the dask scheduler's address")

    def _spawn(self, name: str, argv: list[str],
               env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        # a session of its own: what it starts (a worker's process, its sweep's forkserver
        # and pool) is stopped with it, even after a test killed the process in between
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), **env}, start_new_session=True)
        self.procs.append(proc)
        return proc

    def add_workers(self, *names: str, env: Mapping[str, str] | None = None,
                    preload: str | None = None) -> None:
        """Start a worker (one process, one thread) called each of ``names`` and wait until
        the scheduler lists them all; ``env`` is added to their environment (which
        starts them able to have child processes, as the sweep needs)."""
        for name in names:
            argv = ["distributed.cli.dask_worker", self.address, "--name", name,
                    "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
            if preload is not None:
                argv += ["--preload", preload]
            self.workers[name] = self._spawn(
                f"worker-{name}", argv, {NOT_DAEMONIC_KEY: "False", **(env or {})})
        wait_for(lambda: set(names) <= self.worker_addresses().keys(), timeout=60,
                 what=f"dask workers {names} registered")

    def worker_addresses(self) -> dict[str, str]:
        """Name -> address of every worker the scheduler lists now."""
        with Client(self.address, timeout=10, set_as_default=False) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): address for address, w in info.items()}

    def stop(self) -> None:
        """SIGTERM the workers, then the scheduler (a worker whose scheduler went first
        waits to reconnect); SIGKILL what is left after 20 s, and whatever each started
        that outlived it (a forkserver whose worker was killed stays, idle, for good)."""
        for proc in reversed(self.procs):  # the scheduler is the first started
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # nothing of it left: fine
                os.killpg(proc.pid, signal.SIGKILL)


def _address(scheduler_file: Path) -> str | None:
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None  # not written yet, or half written


@pytest.fixture(scope="module", name="cluster")
def two_worker_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """``cluster``: a scheduler and two workers ("a", "b") for a test module, stopped after
    it (a module imports this function to have the fixture)."""
    running = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        running.add_workers("a", "b")
        yield running
    finally:
        running.stop()
