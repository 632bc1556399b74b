"""The atheris harnesses in ``fuzz/`` (codec, config, recording), each run briefly as its own
process, when atheris is installed; the derandomized Hypothesis suite of the same decoders is
tests/unit/test_fuzz.py."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FUZZ_DIR = REPO / "fuzz"
HARNESSES = ["fuzz_codec.py", "fuzz_config.py", "fuzz_recording.py"]


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install atheris; it needs a prebuilt wheel or "
    "clang/libFuzzer for this Python): the atheris harnesses in fuzz/ are not run",
)
@pytest.mark.parametrize("harness", HARNESSES)
def test_atheris_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    """Each harness, seeded with its corpus from the real recording, survives 3000 runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(FUZZ_DIR / harness), "-runs=3000", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],  # seeded by the harness
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # libFuzzer stops at the first check after -runs is reached: a mutation batch can end a
    # few runs beyond it ("Done 3018 runs"), as Python's hash seed varies the coverage path
    done = re.search(r"^Done (\d+) runs", proc.stderr, re.M)
    assert "seeded" in proc.stderr and done and int(done[1]) >= 3000, proc.stderr[-2000:]
