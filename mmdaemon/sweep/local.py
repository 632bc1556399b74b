"""The sweep's executor on this machine: a pool of worker processes, one per core by default.

Each worker is a long-lived process: it imports mmdaemon once, receives the recordings
once (when it starts, as its initializer's arguments) and writes them to its temporary
directory once (:func:`~mmdaemon.sweep.executor.materialize`), then runs task after task.
Workers are forked from multiprocessing's fork server, which imports the task function's
module once for all of them; they are never forked from the caller, whose threads
(the pool's own) make ``fork`` unsafe.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import util
from types import TracebackType
from typing import Any, Self, TypeVar

from mmdaemon.sweep.executor import Recording, materialize

T = TypeVar("T")
R = TypeVar("R")

PRELOAD = ["mmdaemon.sweep.runner", "mmdaemon.commands.run", "mmdaemon.daemon",
           "mmdaemon.analytics", "mmdaemon.journal_reader"]
"""Modules the fork server imports once, so that no worker pays for them (a dry run's
whole import, about a third of a second)."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


# per worker process: the recordings it was started with
_SHIPPED: list[Sequence[Recording]] = []


def _start_worker(recordings: Sequence[Recording]) -> None:
    """A worker's first act: keep the recordings and write them to disk, once, with their
    directories removed when the worker exits (multiprocessing runs the finalizer)."""
    _SHIPPED[:] = [recordings]
    for path in materialize(recordings):
        util.Finalize(None, shutil.rmtree, args=(path.parent,), kwargs={"ignore_errors": True},
                      exitpriority=1)


def _call(fn: Callable[[T, Sequence[Recording]], R], task: T) -> R:
    return fn(task, _SHIPPED[0])


class ProcessExecutor:
    """Runs a sweep's tasks in ``workers`` processes of this machine (default: every core
    this process may use). The pool starts at the first :meth:`map` (the recordings
    come with it) and serves the next maps too while their recordings are the same
    (a map with other recordings starts a new pool); it stops at ``__exit__``."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers: expected at least 1 process, got {workers}")
        self._workers = workers or available_cores()
        self._pool: ProcessPoolExecutor | None = None
        self._shipped: tuple[str, ...] = ()

    @property
    def workers(self) -> int:
        """How many tasks run at once: the worker processes."""
        return self._workers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._pool is not None:
            # running tasks finish (a dry run stops at its end); queued ones are dropped
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _pool_for(self, recordings: Sequence[Recording]) -> ProcessPoolExecutor:
        identity = tuple(r.sha256 for r in recordings)
        if self._pool is None or identity != self._shipped:
            self._stop()
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context,
                                             initializer=_start_worker,
                                             initargs=(tuple(recordings),))
            self._shipped = identity
        return self._pool

    def map(self, fn: Callable[[T, Sequence[Recording]], R], tasks: Sequence[T],
            recordings: Sequence[Recording],
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        """``fn(task, recordings)`` for every task, in the worker processes; the results
        in task order. ``on_result`` is called here as each finishes; an exception in
        ``fn`` (or a worker that died) is raised as a RuntimeError naming the task, once
        the other running tasks are done (queued ones are dropped)."""
        if not tasks:
            return []
        pool = self._pool_for(recordings)
        index: dict[Future[R], int] = {pool.submit(_call, fn, task): i
                                       for i, task in enumerate(tasks)}
        results: list[Any] = [None] * len(tasks)
        try:
            for future in as_completed(index):
                i = index[future]
                try:
                    results[i] = future.result()
                except Exception as exc:
                    raise RuntimeError(f"sweep task {i} failed: {exc!r}") from exc
                if on_result is not None:
                    on_result(i, results[i])
        except BaseException:
            for future in index:
                future.cancel()
            raise
        return results
