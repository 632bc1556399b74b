"""`mmdaemon calibrate` on the real recordings (bundled spot, shared USD-M), its snippet
pasted into a config, its page, bad input refused; online GLFT calibration replayed."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.helpers import dryrun_dict, gz_lines, to_toml, write_gz

ONLINE = REPO / "config" / "dryrun-glft-online.toml"


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=300)


def test_calibrate_spot_prints_a_snippet_that_configures_glft_and_writes_the_page(
        tmp_path: Path) -> None:
    proc = mmdaemon("calibrate", *map(str, SPOT_FILES), "--out", str(tmp_path / "cal"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "ticks/sqrt(s)" in text and "at the touch (0.5 ticks)" in text
    snippet = text[text.index("Set in the config:") + 18:text.index("\npage:")]
    pasted = tomllib.loads(snippet)
    # the shipped dry-run config quotes in linear mode: the snippet says A and k need GLFT
    assert "skew mode is 'linear', which uses neither A nor k" in snippet
    a, k = pasted["strategy"]["skew"]["glft_a_per_s"], pasted["strategy"]["skew"][
        "kappa_per_tick"]
    assert 1.0 < a < 4.0 and 1e-3 < k < 4e-3  # the review's hftbacktest fit: 1.09, 2.9e-3
    # pasted into a GLFT config, it is a valid config that quotes with those values
    data = dryrun_dict()
    data["strategy"]["class"] = "glft"
    data["strategy"]["skew"] = {"gamma": 0.001, **pasted["strategy"]["skew"]}
    data["strategy"]["volatility"].update(pasted["strategy"]["volatility"])
    data["state"]["dir"] = str(tmp_path / "state")
    config = tmp_path / "glft.toml"
    config.write_text(to_toml(data))
    check = mmdaemon("check-config", str(config), "--json")
    assert check.returncode == 0, check.stderr
    page = (tmp_path / "cal" / "calibration.html").read_text()
    for div in ("intensity", "volatility", "spread"):
        assert f'id="{div}"' in page
    assert page.count("plotly.js v") == 1 and "<script src=" not in page  # offline


def test_calibrate_json_states_every_figure_with_its_sample_size(tmp_path: Path) -> None:
    proc = mmdaemon("calibrate", *map(str, SPOT_FILES), "--json", "--no-page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = orjson.loads(proc.stdout)
    fit, vol, book = result["intensity"], result["volatility"], result["book"]
    assert fit["ok"] and fit["market_orders"] < fit["trades"]  # sweeps merged
    assert fit["points"] >= 3 and 0.9 < fit["r2_log"] <= 1
    assert fit["touch"]["observed_per_s"] > 3 * fit["touch"]["fitted_per_s"]
    assert vol["samples"] > 600 and vol["interval_s"] == 1.0
    assert 300 < vol["ticks_per_sqrt_s"] < 1200
    assert book["events"] > 1000 and 0.9 < book["spread_ticks"]["share_1_tick"] <= 1
    assert book["depth_lots"]["samples"] == 2 * book["events"]
    assert result["instrument"]["quote_currency"] == "USDT"


def test_the_fit_agrees_with_an_independent_computation_from_the_raw_frames() -> None:
    """The same estimator written again from the frames' JSON with numpy: book from the
    snapshot and diffs, mid before each trade, market orders by (trade time, side)."""
    from decimal import Decimal

    proc = mmdaemon("calibrate", str(SPOT_FILES[0]), "--json", "--no-page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = orjson.loads(proc.stdout)["intensity"]
    tick = Decimal("0.01")
    bids: dict[int, str] = {}
    asks: dict[int, str] = {}
    synced, last_u, mid2 = False, 0, 0
    orders: dict[tuple[int, bool], int] = {}
    first = last = 0
    held: list[dict[str, object]] = []

    def apply(diff: dict[str, Any]) -> None:
        nonlocal last_u
        if diff["u"] <= last_u:
            return
        for side, rows in ((bids, diff["b"]), (asks, diff["a"])):
            for p, q in rows:
                price = int(Decimal(p) / tick)
                if Decimal(q) == 0:
                    side.pop(price, None)
                else:
                    side[price] = q
        last_u = diff["u"]

    with gzip.open(SPOT_FILES[0], "rt") as f:
        for line in f:
            ts, _, frame = line.partition(" ")
            msg = json.loads(frame)
            data = msg.get("data", msg)
            if "lastUpdateId" in data:
                bids = {int(Decimal(p) / tick): q for p, q in data["bids"]}
                asks = {int(Decimal(p) / tick): q for p, q in data["asks"]}
                synced, last_u = True, data["lastUpdateId"]
                for diff in held:  # diffs that came before it, as the venue's rules say
                    apply(diff)
                held = []
            elif data.get("e") == "depthUpdate":
                if synced:
                    apply(data)
                else:
                    held.append(data)
            elif data.get("e") == "trade" and mid2:
                price2 = 2 * int(Decimal(data["p"]) / tick)
                buy = not data["m"]  # the buyer was not the maker: it took
                depth2 = price2 - mid2 if buy else mid2 - price2
                key = (data["T"], buy)
                orders[key] = max(orders.get(key, depth2), depth2)
                continue
            else:
                continue
            if synced and bids and asks and max(bids) < min(asks):
                mid2 = max(bids) + min(asks)
                first = first or int(ts)
                last = int(ts)
    depths = np.array(sorted(orders.values())) / 2
    seconds = ours["seconds"]
    assert abs((last - first) / 1e9 - seconds) < 2  # the same time observed, to the grid
    # market orders here are grouped by (trade time, side) anywhere in the file, ours by
    # consecutive trades: 2 of 3,240 differ on this file
    assert len(depths) == pytest.approx(ours["market_orders"], abs=5)
    grid = np.array([p[0] for p in ours["curve"]])
    lam = np.array([(depths >= g).sum() for g in grid]) / seconds
    slope, intercept = np.polyfit(grid, np.log(lam), 1)
    assert -slope == pytest.approx(ours["kappa_per_tick"], rel=0.01)
    assert np.exp(intercept) == pytest.approx(ours["a_per_s"], rel=0.01)
    assert (depths >= 0.5).sum() / seconds == pytest.approx(
        ours["touch"]["observed_per_s"], rel=0.01)


def test_calibrate_usdm_on_its_own_tick(usdm_file: Path) -> None:
    proc = mmdaemon("calibrate", str(usdm_file), "--config",
                    str(REPO / "config" / "dryrun-usdm.toml"), "--json", "--no-page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = orjson.loads(proc.stdout)
    assert result["instrument"]["tick_size"] == "0.1"
    fit = result["intensity"]
    # a 0.1 tick: ten times fewer ticks per dollar of depth and of volatility than spot
    assert fit["ok"] and 2e-3 < fit["kappa_per_tick"] < 2e-2
    assert 30 < result["volatility"]["ticks_per_sqrt_s"] < 200


def test_the_volatility_prior_reads_back_as_the_measured_sigma_on_the_configs_year(
        tmp_path: Path) -> None:
    data = dryrun_dict()
    data["strategy"]["class"] = "glft"
    data["strategy"]["skew"] = {"gamma": 0.001}
    data["strategy"]["volatility"]["year_days"] = 252.0  # an equities year
    config = tmp_path / "glft252.toml"
    config.write_text(to_toml(data))
    proc = mmdaemon("calibrate", str(SPOT_FILES[0]), "--config", str(config), "--no-page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    snippet = proc.stdout[proc.stdout.index("Set in the config:") + 18:]
    assert "skew mode is 'linear'" not in snippet
    prior = tomllib.loads(snippet)["strategy"]["volatility"]["prior_annual_vol"]
    measured = orjson.loads(mmdaemon("calibrate", str(SPOT_FILES[0]), "--config", str(config),
                                     "--no-page", "--json").stdout)["volatility"]
    # the daemon reads prior_annual_vol / sqrt(year_days x 86,400) as sigma per sqrt(s)
    assert prior / (252 * 86_400) ** 0.5 * 1e4 == pytest.approx(measured["bps_per_sqrt_s"],
                                                                 rel=1e-3)


def test_calibrate_refuses_unusable_input_with_exit_2(tmp_path: Path) -> None:
    no_trades = write_gz(tmp_path / "depth_only.gz", [
        line for line in gz_lines(SPOT_FILES[0])[:3000] if b"@trade" not in line])
    proc = mmdaemon("calibrate", str(no_trades), "--no-page")
    assert proc.returncode == 2
    assert "no trade of BTCUSDT" in proc.stderr and "depth_only.gz" in proc.stderr

    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    proc = mmdaemon("calibrate", str(broken), "--no-page")
    assert proc.returncode == 2 and "broken.gz" in proc.stderr

    proc = mmdaemon("calibrate", str(tmp_path / "missing.gz"), "--no-page")
    assert proc.returncode == 2 and "no such recording" in proc.stderr

    data = dryrun_dict()
    del data["instrument"]
    config = tmp_path / "no_instrument.toml"
    config.write_text(to_toml(data))
    proc = mmdaemon("calibrate", str(SPOT_FILES[0]), "--config", str(config), "--no-page")
    assert proc.returncode == 2 and "instrument" in proc.stderr
    assert "Traceback" not in proc.stderr


def replay_online() -> dict[str, object]:
    proc = mmdaemon("--log-format", "json", "replay", "--config", str(ONLINE), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary: dict[str, object] = orjson.loads(proc.stdout)
    summary["log"] = proc.stderr
    return summary


def test_online_glft_calibration_moves_within_its_bounds_and_replays_identically() -> None:
    first, second = replay_online(), replay_online()
    bounds = tomllib.loads(ONLINE.read_text())["strategy"]["skew"]["online"]
    cal = first["calibration"]
    assert isinstance(cal, dict)
    assert cal["refits"] >= 100 and cal["failures"] < cal["refits"]
    assert (cal["a_per_s"], cal["kappa_per_tick"]) != (1.0, 0.002)  # the fits took over
    values = [orjson.loads(line) for line in str(first["log"]).splitlines()
              if b"glft_calibrated" in line.encode()]
    applied = [v for v in values if v.get("event") == "glft_calibrated"]
    assert len({round(v["kappa_per_tick"], 9) for v in applied}) > 3  # it moves over the run
    for v in applied:
        assert bounds["a_per_s_min"] <= v["a_per_s"] <= bounds["a_per_s_max"]
        assert bounds["kappa_per_tick_min"] <= v["kappa_per_tick"] <= bounds[
            "kappa_per_tick_max"]
        assert bounds["sigma_bps_min"] <= v["sigma_bps"] <= bounds["sigma_bps_max"]
    for key in ("fills", "total_pnl", "orders", "calibration", "markouts"):
        assert first[key] == second[key], key


def test_the_shipped_calibrated_configs_hold_what_calibrate_fits_on_the_bundled_recording(
        ) -> None:
    proc = mmdaemon("calibrate", *map(str, SPOT_FILES), "--json", "--no-page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fit = orjson.loads(proc.stdout)["intensity"]
    spot = tomllib.loads((REPO / "config" / "dryrun-glft-calibrated.toml").read_text())
    usdm = tomllib.loads((REPO / "config" / "dryrun-usdm-glft.toml").read_text())
    assert spot["strategy"]["class"] == usdm["strategy"]["class"] == "glft"
    skew, usdm_skew = spot["strategy"]["skew"], usdm["strategy"]["skew"]
    assert skew["glft_a_per_s"] == pytest.approx(fit["a_per_s"], rel=1e-5)
    assert skew["kappa_per_tick"] == pytest.approx(fit["kappa_per_tick"], rel=1e-5)
    # the out-of-sample config: spot's values in the futures' ticks (0.1 = 10 x 0.01 USDT)
    ratio = float(usdm["instrument"]["tick_size"]) / float(spot["instrument"]["tick_size"])
    assert ratio == 10
    assert usdm_skew["glft_a_per_s"] == skew["glft_a_per_s"]
    assert usdm_skew["kappa_per_tick"] == pytest.approx(skew["kappa_per_tick"] * ratio)
    assert usdm_skew["gamma"] == pytest.approx(skew["gamma"] * ratio)
    assert usdm_skew["glft_delta_q"] == skew["glft_delta_q"]
