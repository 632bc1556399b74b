"""pytest plugin of ``make sanitize`` (``-p sanitized_build``): the session fails at once
unless ``mmdaemon._speedups`` is the instrumented build named by ``MMDAEMON_SPEEDUPS_SO``
and the AddressSanitizer runtime is in the process, so the tests cannot quietly run the
normal build instead."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest


def loaded_build() -> str:
    """The path of the sanitized build in use; raises if anything else is in use."""
    from mmdaemon import _speedups, speedups

    wanted = os.path.realpath(os.environ["MMDAEMON_SPEEDUPS_SO"])
    if os.path.realpath(_speedups.__file__) != wanted or speedups.compiled is not _speedups:
        raise RuntimeError(f"mmdaemon._speedups is {_speedups.__file__} (speedups.compiled "
                           f"{speedups.compiled}), not {wanted}")
    maps = Path("/proc/self/maps").read_text()
    if wanted not in maps or not re.search(r"libclang_rt\.asan|libasan", maps):
        raise RuntimeError(f"{wanted} or the ASan runtime is not mapped in this process")
    return wanted


def pytest_sessionstart(session: pytest.Session) -> None:
    path = loaded_build()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"sanitized build in use: {path}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    loaded_build()
