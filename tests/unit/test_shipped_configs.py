"""Every config shipped in config/ loads: a promise of the README's config table (the
sweep's grid files beside them are tested in test_sweep_grid.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mmdaemon.config_file import load_config

CONFIGS = sorted(path for path in (Path(__file__).resolve().parents[2] / "config").glob("*.toml")
                 if not {"grid", "random"} & tomllib.loads(path.read_text()).keys())


def test_the_shipped_configs_are_found() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.instrument.symbol
