"""Shared test fixtures: where the real recordings are."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPOT_FILES = [
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz",
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240809.gz",
]
SHARED_DATA = REPO.parent / "shared" / "data"
USDM_FILE = SHARED_DATA / "binance-usdm-btcusdt" / "btcusdt_20240808.gz"


@pytest.fixture
def usdm_file() -> Path:
    """The USD-M futures recording; only in ../shared (it is not shipped in the repo)."""
    if not USDM_FILE.exists():
        pytest.skip(f"{USDM_FILE} not present: the futures recording lives in ../shared only")
    return USDM_FILE
