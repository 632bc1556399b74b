"""A sweep's runs on a Dask distributed cluster (``mmdaemon sweep --cluster ADDRESS``).

:class:`DaskExecutor` implements the :class:`~mmdaemon.sweep.executor.Executor` contract on
the workers of a running Dask scheduler: it connects on ``__enter__`` and disconnects on
``__exit__``, leaving the cluster running and holding nothing of ours.

What travels, and how often: the recordings once per :meth:`DaskExecutor.map`, broadcast to
every worker (``scatter(broadcast=True)``) before any task is submitted; each task then
carries only its own parameters and a reference to those copies. Each worker thread runs its
tasks in one local process of its own (a one-process
:class:`~mmdaemon.sweep.local.ProcessExecutor`, started with the recordings once), in that
process's main thread as a local sweep does, so a worker must be able to have children
(:data:`NOT_DAEMONIC`).

Why the rows are the same as on this machine: a run is a pure function of its task and the
recordings, so the only thing that can differ on a worker is the code. Every worker must run
the very mmdaemon this client runs (same version, same source: :func:`code_identity`); that
is checked before anything is submitted, and again inside every task for a worker that joins
later. A worker that dies mid-sweep costs its running task only: Dask reruns it on another
worker (a deterministic task gives the same row twice), and gives up on a task after it was
running on ``distributed.scheduler.allowed-failures`` workers that died (3 by default), which
fails the sweep naming that task.

``distributed`` is the optional extra ``cluster`` (``pip install 'mmdaemon[cluster]'``),
imported only when an executor connects.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import util
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import mmdaemon
from mmdaemon.commands.usage import UsageError
from mmdaemon.sweep.executor import Recording
from mmdaemon.sweep.local import ProcessExecutor

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")
R = TypeVar("R")

INSTALL = "pip install 'mmdaemon[cluster]'"
"""How to get ``distributed`` (said by every error about it missing)."""

_POLL_S = 1.0
"""How often (s) :meth:`DaskExecutor.map` looks at the cluster while no task finishes."""


class ClusterError(UsageError):
    """The cluster cannot run this sweep (``distributed`` missing, the scheduler unreachable,
    no worker, a worker with other code), found before any task is submitted. The message
    names the cluster and the fix; the CLI exits 2 on it, as on any unusable input."""


class ClusterLost(RuntimeError):
    """Every worker left the cluster during a sweep and none came back in time."""


class TaskFailed(RuntimeError):
    """A sweep task raised on a worker, or was lost with workers that died.

    ``index`` is the task's position in the list given to :meth:`DaskExecutor.map`; the
    worker's exception is the ``__cause__``."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@functools.cache
def code_identity() -> str:
    """This process's mmdaemon: its version and a digest of its Python source, e.g.
    ``"0.1.0 (source 3fa2c1d9e0ab)"``. Equal identities run the same code, hence give the
    same rows; the version alone would not tell two working trees of one release apart."""
    root = Path(mmdaemon.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{mmdaemon.__version__} (source {digest.hexdigest()[:12]})"


class WrongCode(RuntimeError):
    """Raised inside a task on a worker whose mmdaemon is not the client's."""


# per Dask worker thread: the local process its tasks run in
_LOCAL = threading.local()


NOT_DAEMONIC = "DASK_DISTRIBUTED__WORKER__DAEMON=False"
"""The environment a worker under a nanny needs to start the local process of its tasks
(a nanny's worker is a daemonic process by default, which may have no children)."""


def _daemonic() -> bool:
    return multiprocessing.current_process().daemon


def _local_pool() -> ProcessExecutor:
    """This worker thread's one-process :class:`ProcessExecutor`, started at its first task
    and stopped when the worker's process exits (multiprocessing runs the finalizer)."""
    pool: ProcessExecutor | None = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = ProcessExecutor(1).__enter__()
        util.Finalize(pool, pool.__exit__, args=(None, None, None), exitpriority=1)
    return pool


def _run_task(fn: Callable[[T, Sequence[Recording]], R], task: T,
              recordings: Sequence[Recording], expected: str) -> R:
    """One task on a worker: the same check as before submitting (a worker may have joined
    since), then ``fn`` in this worker thread's local process, in its main thread as in a
    local sweep: Dask runs tasks in threads, and a dry run installs signal handlers, which
    only a main thread may. The local process receives ``recordings`` (the worker's
    broadcast copies) once, when it starts, and writes them to disk once."""
    ours = code_identity()
    if ours != expected:
        raise WrongCode(f"this worker runs mmdaemon {ours}, the client {expected}")
    pool = _local_pool()
    try:
        return pool.map(fn, [task], recordings)[0]
    except RuntimeError as exc:  # "sweep task 0 failed": the local index, not the sweep's
        failure = exc.__cause__ or exc
    if isinstance(failure, BrokenProcessPool):  # the local process died
        _LOCAL.pool = None  # the next task starts another
        pool.__exit__(None, None, None)
    # raised out of the except block: an error inside the one it caused is a cycle that
    # Dask cannot send back to the client
    raise failure


def check_identities(found: dict[str, object], expected: str, address: str) -> None:
    """Refuse a cluster any of whose workers cannot run the sweep as this client would.

    ``found`` maps each worker's address to what :func:`code_identity` returned there (or
    the exception it raised: no mmdaemon at all); ``expected`` is the client's."""
    if not found:
        raise ClusterError(f"mmdaemon sweep: the Dask scheduler at {address} has no "
                           f"workers: start some (`dask worker {address}`) and run again")
    for worker, identity in sorted(found.items()):
        if isinstance(identity, BaseException):
            raise ClusterError(
                f"mmdaemon sweep: worker {worker} of {address} cannot run mmdaemon "
                f"({identity}): install mmdaemon {expected} there (the same wheel as this "
                f"client)")
        if identity != expected:
            raise ClusterError(
                f"mmdaemon sweep: worker {worker} of {address} runs mmdaemon {identity}, "
                f"this client mmdaemon {expected}: install the same mmdaemon on every worker "
                f"(other code would give other rows)")


class DaskExecutor:
    """Runs a sweep's tasks on the workers of the Dask scheduler at ``address``
    (``tcp://host:port``), results in task order.

    ``connect_timeout_s`` (seconds) bounds reaching the scheduler, waiting for a first
    worker, and how long the sweep waits with no worker left before giving up."""

    def __init__(self, address: str, *, connect_timeout_s: float = 10.0) -> None:
        if connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0 seconds, got {connect_timeout_s}")
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self._client: Client | None = None

    def __enter__(self) -> Self:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ClusterError(f"mmdaemon sweep: --cluster {self.address} needs Dask "
                               f"distributed, which is not installed: {INSTALL}") from exc
        try:
            client = Client(self.address, timeout=self.connect_timeout_s,
                            set_as_default=False)
        except (ValueError, TypeError) as exc:
            raise ClusterError(f"mmdaemon sweep: --cluster {self.address!r} is not a Dask "
                               f"scheduler address ({exc}): give tcp://HOST:PORT") from exc
        except OSError as exc:  # nothing listening, or no answer in time
            raise ClusterError(
                f"mmdaemon sweep: cannot reach the Dask scheduler at {self.address} within "
                f"{self.connect_timeout_s:g} s ({exc}): start one (`dask scheduler`) or "
                f"fix --cluster") from exc
        self._client = client
        try:
            self._check_workers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def workers(self) -> int:
        """The cluster's worker threads now (workers may come and go during a sweep)."""
        return sum(self._connected().nthreads().values())

    def map(self, fn: Callable[[T, Sequence[Recording]], R], tasks: Sequence[T],
            recordings: Sequence[Recording],
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        """``fn(task, recordings)`` for every task on the cluster, in task order.

        ``fn`` and the tasks must be picklable and ``fn`` importable on the workers (a
        function of the installed mmdaemon). ``on_result(index, result)`` runs in this
        thread as each task finishes. A task that raises fails the sweep with
        :class:`TaskFailed` naming its index; the tasks still running are cancelled."""
        client = self._connected()
        self._check_workers()
        if not tasks:
            return []
        expected = code_identity()
        shipped = client.scatter(list(recordings), broadcast=True, hash=True)
        batch = uuid.uuid4().hex[:12]
        futures = [client.submit(_run_task, fn, task, shipped, expected, pure=False,
                                 key=f"mmdaemon-sweep-{batch}-{i}")
                   for i, task in enumerate(tasks)]
        index = {future.key: i for i, future in enumerate(futures)}
        finished: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
        for future in futures:
            future.add_done_callback(finished.put)  # runs in the client's thread
        results: dict[int, R] = {}
        no_workers_since: float | None = None
        try:
            while len(results) < len(tasks):
                try:
                    future = finished.get(timeout=_POLL_S)
                except queue.Empty:
                    no_workers_since = self._still_worked(no_workers_since, len(results),
                                                          len(tasks))
                    continue
                i = index[future.key]
                if future.status != "finished":
                    raise self._failure(i, future)
                results[i] = future.result()
                if on_result is not None:
                    on_result(i, results[i])
        finally:
            # ours no more: the scheduler forgets the tasks still queued and, once no
            # client holds them, the broadcast copies
            client.cancel([*futures, *shipped])
        return [results[i] for i in range(len(tasks))]

    def _connected(self) -> Client:
        if self._client is None:
            raise RuntimeError("DaskExecutor used outside its `with` block")
        return self._client

    def _check_workers(self) -> None:
        """Wait for a first worker, then refuse if any worker's mmdaemon is not ours."""
        client = self._connected()
        try:
            client.wait_for_workers(1, timeout=self.connect_timeout_s)
        except TimeoutError:
            raise ClusterError(
                f"mmdaemon sweep: the Dask scheduler at {self.address} has had no worker "
                f"for {self.connect_timeout_s:g} s: start some (`dask worker "
                f"{self.address}`) and run again") from None
        found: dict[str, Any] = client.run(code_identity, on_error="return")
        check_identities(found, code_identity(), self.address)
        daemonic = sorted(w for w, yes in client.run(_daemonic).items() if yes)
        if daemonic:
            raise ClusterError(
                f"mmdaemon sweep: worker {daemonic[0]} of {self.address} is a daemonic "
                f"process, which cannot start the process its runs need: start the workers "
                f"with {NOT_DAEMONIC} in their environment (or `dask worker --no-nanny`)")

    def _still_worked(self, since: float | None, done: int, total: int) -> float | None:
        """When no worker has been left for ``connect_timeout_s``, give up: Dask would
        wait for one forever. Returns when the cluster was first seen empty (None: not)."""
        if self._connected().nthreads():
            return None
        now = time.monotonic()
        if since is not None and now - since > self.connect_timeout_s:
            raise ClusterLost(
                f"every worker left the Dask scheduler at {self.address} ({done} of {total} "
                f"tasks done; no worker for {self.connect_timeout_s:g} s): start workers and "
                f"run the sweep again")
        return now if since is None else since

    def _failure(self, index: int, future: Future[Any]) -> BaseException:
        """What to raise for a task that did not finish."""
        if future.status == "cancelled":
            return TaskFailed(index, f"sweep task {index} was cancelled by the Dask scheduler "
                                     f"at {self.address} (restarted, or lost the recordings "
                                     f"with every worker holding them): run the sweep again")
        exc = future.exception()
        if type(exc).__name__ == "KilledWorker":
            message = (f"sweep task {index} was running on workers that died, too often for "
                       f"Dask to try again (distributed.scheduler.allowed-failures): {exc}")
        elif isinstance(exc, WrongCode):
            message = (f"sweep task {index} landed on a worker of {self.address} that joined "
                       f"after the check: {exc}; install the same mmdaemon on every worker")
        else:
            message = f"sweep task {index} raised {type(exc).__name__}: {exc}"
        failed = TaskFailed(index, message)
        failed.__cause__ = exc
        return failed
