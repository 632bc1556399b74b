"""Shared test fixtures: where the real recordings are; each test's kind, from its folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPOT_FILES = [
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz",
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240809.gz",
]
# the pinned dry run (tests/process/test_dry_run_pin.py) and what it leaves out: the
# wall-clock figures, and what produced the run (the version, this checkout's paths)
PIN = REPO / "tests" / "data" / "dry_run_pin.json"
UNPINNED_FIELDS = ("wall_s", "frames_per_s", "version", "config", "feed")
SHARED_DATA = REPO.parent / "shared" / "data"
USDM_FILE = SHARED_DATA / "binance-usdm-btcusdt" / "btcusdt_20240808.gz"

TESTS = Path(__file__).resolve().parent
# the folder is the kind and the marker (pyproject.toml): unit (pure: no server, no
# subprocess), integration (real components in one process: loopback servers in the test's
# loop, SQLite files, the sim in-process), process (subprocesses, real signals, servers in
# other processes). tests/systemd has its own marker and its own make target.
KINDS = ("unit", "integration", "process")
OWN_MARKER = ("systemd",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with the kind of its folder, so that ``-m unit`` selects tests/unit;
    a test file outside those folders is refused, or ``-m`` would leave it out unseen."""
    astray: set[str] = set()
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # not under tests/ (e.g. a test file named on the command line)
            continue
        if folder in KINDS:
            item.add_marker(folder)
        elif folder not in OWN_MARKER:
            astray.add(str(item.path.relative_to(REPO)))
    if astray:
        raise pytest.UsageError(
            f"test files outside tests/unit, tests/integration and tests/process: "
            f"{', '.join(sorted(astray))}: move each (git mv) into the folder of its kind "
            f"(README, Testing)")


@pytest.fixture
def usdm_file() -> Path:
    """The USD-M futures recording; only in ../shared (it is not shipped in the repo)."""
    if not USDM_FILE.exists():
        pytest.skip(f"{USDM_FILE} not present: the futures recording lives in ../shared only")
    return USDM_FILE


@pytest.fixture(scope="session", autouse=True)
def recordings_left_as_found() -> Iterator[None]:
    """No test leaves a decoded-event cache beside the bundled or shared recordings: a later
    replay of them would read the cache instead of parsing, so which path a test exercised
    would depend on the order the tests ran in (tests that want a cache make copies)."""
    folders = [REPO / "data", SHARED_DATA]
    before = {p for folder in folders for p in folder.rglob("*.mmevents")}
    yield
    left = {p for folder in folders for p in folder.rglob("*.mmevents")} - before
    assert not left, f"tests left decoded-event caches beside the recordings: {sorted(left)}"
