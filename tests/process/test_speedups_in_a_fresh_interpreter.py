"""The compiled hot loops (mmdaemon/_speedups.c) where only a fresh interpreter can tell:
the environment switch read at import, and a call that could hang. The in-process
comparisons with the Python twins are tests/unit/test_speedups.py and
tests/unit/test_speedups_match_python.py; ``make sanitize`` runs this file with them, its
interpreters inheriting the sanitized build (fuzz/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmdaemon import speedups

pytestmark = pytest.mark.skipif(
    speedups.compiled is None,
    reason="the compiled hot loops are not built here (no C compiler or Python headers at "
    "install, or MMDAEMON_PURE_PYTHON is set): only the Python code runs",
)


def test_the_environment_switch_turns_them_off() -> None:
    code = ("from mmdaemon import speedups; from mmdaemon.book import SIDE, BookSide; "
            "print(speedups.compiled is None, SIDE is BookSide)")
    env = {**os.environ, "MMDAEMON_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    env["MMDAEMON_PURE_PYTHON"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# ---- F6: a huge ``most`` (top region bound) ---------------------------------------------------
#
# Side_new reserves most + 1 keys up front. region_reserve() doubles a Py_ssize_t ``cap``
# until it reaches ``n``: for n > 2**62 the doubling overflows (UBSan: signed integer
# overflow at region_reserve; with CPython's -fwrapv it becomes 0 and the loop never ends),
# and most + 1 overflows for most = 2**63 - 1 (UBSan at Side_new). The reference keeps no
# array of that size: any most works. Run in a subprocess, the hang being the finding.

@pytest.mark.parametrize("most", ["2**40", "2**62"])
def test_a_huge_region_bound_neither_hangs_nor_fails(most: str) -> None:
    code = ("from mmdaemon import speedups; from mmdaemon.book import BookSide\n"
            f"py = BookSide(1, 1, 1, {most}); py.update([(1, 1)])\n"
            f"c = speedups.compiled.BookSide(1, 1, 1, {most}); c.update([(1, 1)])\n"
            "print(c.top(1) == py.top(1))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"BookSide(1, 1, 1, {most}) did not return in 15 s")
    assert proc.returncode == 0 and proc.stdout.split() == ["True"], proc.stderr[-1000:]
