"""The latency file on disk: read it (bounded), write it (atomically), check at start that
it can be written. The format and the model are :mod:`mmdaemon.exchange.latency`'s."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdaemon.exchange.latency import (
    MAX_FILE_BYTES,
    LatencyFileError,
    LatencyModel,
    LatencyRecorder,
    model_from,
    parse_latency_file,
)


def read_latency_file(path: Path) -> dict[str, list[int]]:
    """The samples by kind of a latency file; :class:`LatencyFileError` says what is wrong."""
    try:
        with open(path, "rb") as file:  # bounded: a device or a huge file is not read whole
            body = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise LatencyFileError(f"latency file {path}: cannot read it: {exc.strerror}") from None
    return parse_latency_file(body, path)


def build_model(constants_ns: Mapping[str, int], path: Path | None, seed: int) -> LatencyModel:
    """The model of the config: the file's samples (``path``, if any) over the constants."""
    return model_from(constants_ns, read_latency_file(path) if path is not None else {}, seed)


def write_latencies(recorder: LatencyRecorder, path: Path) -> None:
    """Write the file atomically (a temporary file renamed over ``path``); on failure
    nothing is left behind and the OSError says why."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(recorder.document())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def save(recorder: LatencyRecorder, path: Path, log: Any) -> bool:
    """:func:`write_latencies`, logged: False (``latency_file_not_written``, why) when it
    failed. A process killed outright (SIGKILL, a crash) writes nothing: the samples live
    in memory until the stop."""
    try:
        write_latencies(recorder, path)
    except OSError as exc:
        log.error("latency_file_not_written", path=str(path), error=str(exc))
        return False
    log.info("latency_file_written", path=str(path),
             **{f"{k}_samples": len(v) for k, v in recorder.samples.items()})
    return True


def check_writable(path: Path) -> str:
    """Why a latency file could not be written at ``path`` at stop, or "" (checked at start,
    so a run is not spent measuring for nothing)."""
    if path.is_dir():
        return f"{path} is a directory: give a file name"
    parent = path.parent
    if not parent.is_dir():
        return f"no directory {parent}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable by this user"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} exists and is not writable by this user"
    return ""
