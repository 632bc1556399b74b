"""A non-editable install is a working product.

``make dist`` (the release the runbook installs) builds the sdist, the wheel from it (so
the sdist is proven complete too) and ``requirements.txt``, the locked runtime dependencies
with their hashes. The wheel is installed into a fresh virtual environment in a temporary
directory with exactly those dependencies; then the installed ``mmdaemon`` runs from
another directory: ``--version``, ``check-config`` of its shipped config, and the dry run of
the bundled recording, which must give the pinned result.

Everything runs offline (``UV_OFFLINE=1``) from uv's cache, which ``make test`` filled when
it installed the lock: no network. The runbook installs ``requirements.txt`` with pip, which
needs an index; here uv installs the same locked versions from its cache, and the test
checks that the venv holds exactly what ``requirements.txt`` pins. uv is the one the
Makefile bootstraps (``MMDAEMON_UV``), else ``uv`` on the PATH; without one the test skips
with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import PIN, REPO, SPOT_FILES, UNPINNED_FIELDS


def _uv() -> str:
    uv = os.environ.get("MMDAEMON_UV") or shutil.which("uv")
    if not uv or not Path(uv).is_file():
        candidate = REPO / ".tools" / "bin" / "uv"
        if not candidate.is_file():
            pytest.skip("uv not found (MMDAEMON_UV, PATH or .tools/bin/uv): `make test` "
                        "bootstraps it; the wheel test installs offline from its cache")
        uv = str(candidate)
    return uv


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the installed venv's bin directory, the wheel) of a fresh install."""
    uv = _uv()
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",
                                                            "UV_PROJECT_ENVIRONMENT")}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_OFFLINE="1")
    if shutil.which("make") is None:
        pytest.skip("make is not installed: `make dist` builds the release")
    dist = tmp / "dist"
    built = run("make", "-C", REPO, "dist", f"DIST={dist}", f"UV={uv}", env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("mmdaemon-*.whl"))
    assert next(dist.glob("mmdaemon-*.tar.gz")).is_file()
    venv = tmp / "venv"
    made = run(uv, "venv", "--offline", "--python", sys.executable, venv, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    # the locked runtime dependencies (hash-checked, from the cache), then the wheel alone
    deps = run(uv, "sync", "--frozen", "--offline", "--no-dev", "--no-install-project",
               cwd=REPO, env={**env, "UV_PROJECT_ENVIRONMENT": str(venv)})
    assert deps.returncode == 0, deps.stderr[-3000:]
    python = venv / "bin" / "python"
    ours = run(uv, "pip", "install", "--offline", "--no-deps", "--python", python, wheel,
               env=env)
    assert ours.returncode == 0, ours.stderr[-3000:]
    frozen = run(uv, "pip", "freeze", "--python", python, env=env)
    installed_now = {line for line in frozen.stdout.splitlines()
                     if not line.startswith("mmdaemon")}
    assert installed_now == pinned_here(dist / "requirements.txt")
    yield venv / "bin", wheel


def pinned_here(requirements: Path) -> set[str]:
    """``name==version`` of every requirement whose marker holds on this machine; each
    must carry its hashes."""
    from packaging.requirements import Requirement

    blocks = re.split(r"\n(?=[A-Za-z])", requirements.read_text().split("\n", 2)[2])
    pinned = set()
    for block in blocks:
        assert "--hash=sha256:" in block, block
        requirement = Requirement(block.split("\\")[0].strip())
        if requirement.marker is None or requirement.marker.evaluate():
            pinned.add(f"{requirement.name}{requirement.specifier}")
    return pinned


def test_the_wheel_carries_the_configs_and_the_licence(installed: tuple[Path, Path]) -> None:
    _, wheel = installed
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    for config in ("dryrun.toml", "sim.toml", "example-live.toml", "lobster-amzn.toml",
                   "dryrun-stoikov.toml", "stoikov-btcusdt-spot.json"):
        assert f"mmdaemon/configs/{config}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".dist-info/licenses/NOTICE") for n in names)
    assert b"License-Expression: MIT" in metadata
    assert not any(n.endswith(".gz") for n in names)  # the recordings are not redistributed


def test_version_from_the_installed_command(installed: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    bin_dir, _ = installed
    proc = run(bin_dir / "mmdaemon", "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert proc.stdout.startswith(f"mmdaemon {version} (Python ")


def test_check_config_of_the_shipped_config(installed: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    bin_dir, _ = installed
    proc = run(bin_dir / "mmdaemon", "check-config", "--recording", SPOT_FILES[0], "--json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["config"].endswith("site-packages/mmdaemon/configs/dryrun.toml")
    assert result["derived"]["order size"] == "100,000 lots = 0.001 base = 61.84 quote"
    # the shipped config names the repository's recordings, which the wheel leaves out
    assert {w["key"] for w in result["warnings"]} == {"feed.recordings[0]",
                                                      "feed.recordings[1]"}


def test_the_installed_dry_run_gives_the_pinned_result(installed: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    bin_dir, _ = installed
    proc = run(bin_dir / "mmdaemon", "replay", *SPOT_FILES, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads(proc.stdout)
    pinned = orjson.loads(PIN.read_bytes())
    pinned.pop("journal_fills")
    for key in UNPINNED_FIELDS:
        summary.pop(key)
        pinned.pop(key, None)
    assert summary == pinned
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_the_installed_replay_without_recordings_names_what_is_missing(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, _ = installed
    proc = run(bin_dir / "mmdaemon", "replay", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mmdaemon replay: no such recording: ")
    assert "btcusdt_20240808.gz" in proc.stderr and "feed.recordings" in proc.stderr
    assert "come with the source repository, not the package" in proc.stderr


def test_the_runbooks_venv_switch_runs_and_a_moved_venv_would_not(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    """deploy/README.md installs each version in a venv of its own and points the unit's
    ``.venv`` at it with a symlink, because a venv's scripts name their interpreter by its
    absolute path: a renamed venv's ``mmdaemon`` cannot start."""
    bin_dir, _ = installed
    venv = bin_dir.parent
    link = tmp_path / ".venv"
    link.symlink_to(venv)
    switched = run(link / "bin" / "mmdaemon", "--version", cwd=tmp_path)
    assert switched.returncode == 0 and switched.stdout.startswith("mmdaemon ")
    moved = tmp_path / "moved"
    venv.rename(moved)
    try:
        with pytest.raises(FileNotFoundError):  # exec finds no interpreter at the old path
            run(moved / "bin" / "mmdaemon", "--version", cwd=tmp_path)
    finally:
        moved.rename(venv)
    runbook = (REPO / "deploy" / "README.md").read_text()
    assert "ln -sfn venv-$V /opt/mmdaemon/.venv" in runbook
    assert "ln -sfn venv-$N /opt/mmdaemon/.venv" in runbook
    assert "mv /opt/mmdaemon/.venv" not in runbook


def test_the_runbooks_launcher_link_runs_the_venvs_python(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    """The unit runs ``.venv/bin/mmdaemond``: the wheel carries the launcher, the runbook
    links it into the venv's bin/ from ``--launcher-path``, and through the ``.venv``
    symlink it starts that venv's mmdaemon."""
    bin_dir, wheel = installed
    with zipfile.ZipFile(wheel) as whl:
        assert "mmdaemon/mmdaemond" in whl.namelist()
    runbook = (REPO / "deploy" / "README.md").read_text()
    step = ('ln -sf "$(/opt/mmdaemon/venv-$V/bin/mmdaemon --launcher-path)" '
            "/opt/mmdaemon/venv-$V/bin/mmdaemond")
    assert step in runbook
    where = run(bin_dir / "mmdaemon", "--launcher-path", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    launcher = Path(where.stdout.strip())
    assert launcher.is_file() and "site-packages/mmdaemon" in str(launcher)
    (bin_dir / "mmdaemond").unlink(missing_ok=True)
    (bin_dir / "mmdaemond").symlink_to(launcher)
    link = tmp_path / ".venv"
    link.symlink_to(bin_dir.parent)
    proc = run(link / "bin" / "mmdaemond", "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("mmdaemon ")
    # the interpreter it ran is the venv's: mmdaemon imports from its site-packages
    proc = run(link / "bin" / "mmdaemond", "--launcher-path", cwd=tmp_path)
    assert Path(proc.stdout.strip()).resolve() == launcher.resolve()
