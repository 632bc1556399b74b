"""Installs are exactly the lock: uv.lock must hold what pyproject.toml asks for.

``make test`` (and so CI) starts with ``uv lock --check`` and installs with ``uv sync
--locked``; both stop when pyproject.toml and uv.lock disagree. These tests run that check
on a copy of the two files (offline: a dependency that is not in the lock at all is a local
wheel made here, so the check fails for the mismatch, not for want of a network).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.process.test_wheel_install import _uv

PROJECT_FILES = ("pyproject.toml", "uv.lock", "setup.py", "README.md", "LICENSE", "NOTICE")


def copy_project(dest: Path) -> Path:
    dest.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(REPO / name, dest / name)
    return dest


def check(project: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=project,
                          capture_output=True, text=True, timeout=120,
                          env={**env, "UV_PYTHON_DOWNLOADS": "never"})


def local_wheel(dest: Path, name: str = "notlocked", version: str = "1.0") -> Path:
    """A minimal valid wheel of a package no index has (so no lock can hold it)."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": b"",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                      f"Version: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = dest / f"{dist}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as whl:
        for member, data in files.items():
            whl.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        whl.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_the_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    proc = check(copy_project(tmp_path / "project"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("table", ["dependencies", "dev"])
def test_a_dependency_missing_from_the_lock_fails_the_check(tmp_path: Path, table: str) -> None:
    project = copy_project(tmp_path / "project")
    wheel = local_wheel(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    opening = "dependencies = [\n" if table == "dependencies" else "dev = [\n"
    assert text.count(opening) == 1
    pyproject.write_text(text.replace(opening, f'{opening}    "notlocked @ {wheel.as_uri()}",\n'))
    proc = check(project)
    assert proc.returncode != 0
    assert "needs to be updated" in proc.stderr, proc.stderr


def test_a_changed_range_the_lock_does_not_satisfy_fails_the_check(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    pyproject = project / "pyproject.toml"
    locked = re.search(r'name = "orjson"\nversion = "([^"]+)"', (project / "uv.lock").read_text())
    assert locked is not None
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"orjson>=3.10"', f'"orjson<{locked[1]}"'))
    assert check(project).returncode != 0


def test_make_test_checks_the_lock_and_installs_only_from_it() -> None:
    """The CI command's path: ``make test`` runs the check first, and the install refuses
    to re-resolve (``--locked``)."""
    makefile = (REPO / "Makefile").read_text()
    test_rule = re.search(r"^test: (.*)$", makefile, re.M)
    assert test_rule is not None and test_rule[1].split()[0] == "lock-check"
    assert re.search(r"^lock-check: .*\n\t@?\$\(UV\) lock --check \|\| \{", makefile, re.M)
    assert "$(UV) sync --locked" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
