"""On the bundled recording Avellaneda-Stoikov quotes near its own spread (#17 item 6): the
adverse-selection widening acts on evidence only (its rules, hand-built:
tests/unit/test_adverse_evidence.py)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import SPOT_FILES
from tests.helpers import write_config


def test_avellaneda_stoikov_quotes_near_its_own_spread_on_the_recording(tmp_path: Path) -> None:
    """AS at gamma = 1e-4 (kappa 2e-3 per tick, tau 1 s) on the bundled dry run: the
    always-on widening made it quote 3.85 bps; its own spread is
    gamma sigma^2 tau + (2 / gamma) ln(1 + gamma / kappa), about 1.62 bps here."""
    gamma, kappa = 1e-4, 2e-3
    config = write_config(tmp_path, {"strategy.skew": {"mode": "avellaneda_stoikov",
                                                       "gamma": gamma,
                                                       "kappa_per_tick": kappa}})
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
         str(config), "--state-dir", str(tmp_path / "state"), "--json"],
        capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = orjson.loads(proc.stdout)["metrics"]
    mark_ticks = metrics["final_mark"] / 0.01
    # the sigma-free part of the model's spread, bps of the mark: a floor under any quote
    model_bps = 2 / gamma * math.log1p(gamma / kappa) / mark_ticks * 1e4
    assert 1.55 < model_bps < 1.60
    quoted = metrics["quoted_spread_bps_mean"]
    # the volatility term and rounding outward add a few hundredths; the widening, when
    # the evidence calls for it, a few more; 3.85 bps before
    assert model_bps < quoted < model_bps + 0.2, quoted
