"""Where a sweep's runs execute: the contract between the sweep and its executors.

A sweep is a list of picklable tasks and one function that runs a task against the
recordings. An :class:`Executor` runs that function for every task, in parallel wherever
it has room (processes on this machine, or the workers of a cluster), and returns the
results **in task order** whatever the order they finished in, so the same tasks give the
same rows. The recordings travel once per executor (not once per task) as
:class:`Recording` values; a worker turns them back into files with :func:`materialize`,
once per worker process.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Recording:
    """One recording file as shipped to a worker: its file name (kept: the codec and the
    report read it) and its bytes, exactly as on disk (gzip included)."""

    name: str
    data: bytes

    @classmethod
    def read(cls, path: Path) -> Recording:
        """The recording at ``path``."""
        return cls(path.name, path.read_bytes())

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes: the file's identity on a worker."""
        return hashlib.sha256(self.data).hexdigest()


# per worker process: digest -> the file written for it, so each recording lands once
_MATERIALIZED: dict[str, Path] = {}


def materialize(recordings: Sequence[Recording]) -> list[Path]:
    """The paths of ``recordings`` on this machine, written to a temporary directory the
    first time a process sees each (by content), reused after. Same order as given."""
    paths = []
    for rec in recordings:
        digest = rec.sha256
        path = _MATERIALIZED.get(digest)
        if path is None or not path.exists():
            folder = Path(tempfile.mkdtemp(prefix="mmdaemon-sweep-"))
            path = folder / rec.name
            path.write_bytes(rec.data)
            _MATERIALIZED[digest] = path
        paths.append(path)
    return paths


class Executor(Protocol):
    """Runs ``fn(task, recordings)`` for every task and returns the results in task order.

    Used as a context manager: ``__enter__`` starts (or connects to) the workers and
    ``__exit__`` stops them (or disconnects, leaving a cluster running).

    ``on_result(index, result)`` is called in the caller's thread as each task finishes
    (any order), for a progress bar; an exception raised by ``fn`` propagates from
    :meth:`map` naming the task's index."""

    def map(self, fn: Callable[[T, Sequence[Recording]], R], tasks: Sequence[T],
            recordings: Sequence[Recording],
            on_result: Callable[[int, R], None] | None = None) -> list[R]: ...

    @property
    def workers(self) -> int:
        """How many tasks can run at once (processes or the cluster's worker threads)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
