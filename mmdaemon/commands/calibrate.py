"""``mmdaemon calibrate``: A, k and sigma for AS/GLFT, and the book's spread and depth, from
recordings (:mod:`mmdaemon.quoting.calibration` computes; this module reads, prints and
writes the page).

The recordings are decoded as a replay decodes them: the same reader, the same codec and
book (:class:`~mmdaemon.market.MarketState`), on the config's ``feed.clock`` (receive times,
or the venue's event times through :func:`~mmdaemon.feed.replay.exchange_timed`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from mmdaemon import pages
from mmdaemon.config import Config
from mmdaemon.feed.recording import RecordedFrame, RecordingError, read_recording
from mmdaemon.feed.replay import exchange_timed
from mmdaemon.market import MarketState
from mmdaemon.model import BookUpdate, Gap, Malformed, Side, Trade
from mmdaemon.quoting.calibration import BookFigures, BookStats, IntensityFit, TradeCalibrator
from mmdaemon.venues.binance import BinanceCodec, frame_event_ns

NEAR_TICKS = 10
"""Depth "near the touch": the best price and this many ticks behind it."""
SIGMA_INTERVALS_S = (0.1, 1.0, 5.0)
"""Sampling intervals the volatility is also shown at (a diffusion gives the same sigma at
each; the differences show the mid's short-horizon autocorrelation)."""


class Unusable(Exception):
    """Input the calibration cannot use: the message says which and why (exit 2)."""


def calibrate(config: Config, config_name: str, recordings: list[str], out: Path | None,
              as_json: bool, sigma_interval_s: float = 1.0, min_arrivals: int = 20) -> int:
    """Calibrate, print (text or one JSON object), write ``out``/calibration.html; 0 done,
    2 unusable input (the message on stderr names it)."""
    try:
        result = measure(config, recordings, sigma_interval_s, min_arrivals)
    except (Unusable, RecordingError, ValueError) as exc:
        print(f"mmdaemon calibrate: {exc}", file=sys.stderr)
        return 2
    result["config"] = config_name
    if out is not None:
        try:
            page = write_page(result, out)
        except OSError as exc:
            print(f"mmdaemon calibrate: --out: cannot write {out}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        result["page"] = str(page)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        print(render(result))
    return 0


def _frames(config: Config, recordings: list[str]) -> Iterable[RecordedFrame | Malformed]:
    frames: Iterable[RecordedFrame | Malformed] = read_recording(recordings)
    if config.feed.clock == "exchange":
        frames = exchange_timed(frames, frame_event_ns)
    return frames


def measure(config: Config, recordings: list[str], sigma_interval_s: float,
            min_arrivals: int) -> dict[str, Any]:
    """Every figure of the calibration as plain values (the JSON object)."""
    inst = config.instrument
    if inst.venue == "lobster":
        raise Unusable("instrument.venue: expected binance-spot or binance-usdm (calibrate "
                       "reads Binance recordings: trades with their aggressor), got 'lobster'")
    for path in recordings:
        if not Path(path).is_file():
            raise Unusable(f"no such recording: {path}")
    instrument = inst.build()
    market = MarketState(BinanceCodec(instrument,
                                      "usdm" if inst.venue == "binance-usdm" else "spot"),
                         depth=NEAR_TICKS + 1)
    book = market.book
    main = TradeCalibrator(None, sigma_interval_s, min_arrivals)
    others = [TradeCalibrator(None, s, min_arrivals) for s in SIGMA_INTERVALS_S]
    calibrators = [main, *others]
    stats = BookStats(NEAR_TICKS)
    first_ns = last_ns = 0
    for item in _frames(config, recordings):
        if isinstance(item, Malformed):
            continue
        ts, frame = item
        first_ns = first_ns or ts
        last_ns = ts
        for event in market.on_frame(ts, frame):
            kind = type(event)
            if kind is BookUpdate or kind is Gap:
                bid_level, ask_level = book.bids.best_level(), book.asks.best_level()
                if (book.synced and bid_level is not None and ask_level is not None
                        and bid_level[0] < ask_level[0]):
                    bid, ask = bid_level[0], ask_level[0]
                    for c in calibrators:
                        c.on_book(ts, bid, ask)
                    near = (sum(s for p, s in book.bids.top(NEAR_TICKS + 1)
                                if p >= bid - NEAR_TICKS),
                            sum(s for p, s in book.asks.top(NEAR_TICKS + 1)
                                if p <= ask + NEAR_TICKS))
                    stats.on_book(ts, ask - bid, (bid_level[1], ask_level[1]), near)
                else:
                    for c in calibrators:
                        c.book_lost()
                    stats.book_lost(ts)
            elif kind is Trade:
                trade: Trade = event  # type: ignore[assignment]
                for c in calibrators:
                    c.on_trade(ts, trade.price, trade.aggressor is Side.BUY, trade.exch_ns)
    stats.book_lost(last_ns)
    names = " ".join(recordings)
    if market.frames - market.undecodable == 0:
        why = f" (first: {market.first_malformed})" if market.first_malformed else ""
        raise Unusable(f"{names}: no frame of {inst.symbol} decoded{why}")
    book_figures = stats.figures()
    if book_figures is None:
        raise Unusable(f"{names}: the book of {inst.symbol} was never usable (no snapshot "
                       f"synced it): nothing to measure")
    fit = main.fit(last_ns, curves=True)
    if fit.arrivals == 0:
        raise Unusable(f"{names}: no trade of {inst.symbol} with a usable book "
                       f"({market.trades} trades decoded): the intensity needs trades (record "
                       f"the trade stream too)")
    tick, lot = instrument.tick_size, instrument.lot_size
    sigmas = [{"interval_s": c.sigma_interval_s, **_sigma(c.fit(last_ns))} for c in others]
    # annualised on the config's own year, so prior_annual_vol reads back as this sigma
    year_days = config.strategy.volatility.year_days
    return {
        "instrument": {"venue": inst.venue, "symbol": inst.symbol,
                       "tick_size": f"{tick:f}", "lot_size": f"{lot:f}",
                       "quote_currency": _quote_currency(inst.symbol)},
        "recordings": recordings, "clock": config.feed.clock,
        "span_s": (last_ns - first_ns) / 1e9, "frames": market.frames,
        "malformed": market.malformed, "gaps": market.gaps,
        "skew_mode": config.strategy.skew.mode,
        "intensity": _intensity(fit, float(tick)),
        "volatility": {**_sigma(fit), "interval_s": fit.sigma_interval_s,
                       "annualised": fit.sigma_bps * 1e-4 * math.sqrt(year_days * 86_400),
                       "year_days": year_days, "at_other_intervals": sigmas},
        "book": _book(book_figures, float(lot)),
    }


def _quote_currency(symbol: str) -> str:
    """The quote asset of a Binance symbol by its known suffixes ('' when none fits)."""
    for suffix in ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return suffix
    return ""


def _num(x: float) -> float | None:
    """JSON has no NaN: None."""
    return x if math.isfinite(x) else None


def _sigma(fit: IntensityFit) -> dict[str, Any]:
    return {"ticks_per_sqrt_s": _num(fit.sigma_ticks), "bps_per_sqrt_s": _num(fit.sigma_bps),
            "samples": fit.sigma_samples, "seconds": fit.seconds}


def _intensity(fit: IntensityFit, tick: float) -> dict[str, Any]:
    return {
        "ok": fit.ok, "why": fit.why, "a_per_s": _num(fit.a_per_s),
        "kappa_per_tick": _num(fit.kappa_per_tick), "r2_log": _num(fit.r2),
        "rmse_log": _num(fit.rmse_log), "points": fit.points,
        "depth_range_ticks": [_num(fit.depth_lo_ticks), _num(fit.depth_hi_ticks)],
        "decay_length_price": _num(tick / fit.kappa_per_tick) if fit.ok else None,
        "market_orders": fit.arrivals, "trades": fit.trades, "through_mid": fit.through_mid,
        "seconds": fit.seconds,
        "touch": {"depth_ticks": fit.touch_ticks, "observed_per_s": _num(fit.touch_per_s),
                  "fitted_per_s": _num(fit.touch_fitted_per_s)},
        "curve": [list(p) for p in fit.curve],
        "touch_curve": [list(p) for p in fit.touch_curve],
    }


def _book(b: BookFigures, lot: float) -> dict[str, Any]:
    return {
        "events": b.events, "seconds": b.seconds,
        "spread_ticks": {"share_1_tick": b.spread_share_1,
                         "share_1_tick_time": _num(b.spread_share_1_time),
                         "mean": b.spread_mean, "mean_time_weighted": _num(b.spread_mean_time),
                         "p50": b.spread_p50, "p90": b.spread_p90, "p99": b.spread_p99,
                         "counts": [list(c) for c in b.spread_counts]},
        "depth_lots": {"samples": 2 * b.events, "touch_mean": b.touch_mean,
                       "touch_median": b.touch_median, "within_ticks": b.within_ticks,
                       "near_mean": b.near_mean, "near_median": b.near_median,
                       "lot_size": lot},
    }


def _g(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def snippet(result: dict[str, Any]) -> str:
    """The TOML to set in a config: the skew's A and k, the volatility prior; units and how
    to merge it in comments."""
    inst, fit, vol = result["instrument"], result["intensity"], result["volatility"]
    cur = inst["quote_currency"] or "quote currency"
    lines = [f"# mmdaemon calibrate: {inst['symbol']} ({inst['venue']}, tick "
             f"{inst['tick_size']}), {fit['market_orders']} market orders in "
             f"{fit['seconds']:g} s",
             "# set each key in the config's own table of that name (TOML allows a table "
             "once: a second [strategy.skew] is an error)"]
    if result["skew_mode"] == "linear":
        lines.append("# the calibrated config's skew mode is 'linear', which uses neither A "
                     "nor k: they take effect with [strategy] class = \"glft\" (k also with "
                     "\"avellaneda_stoikov\")")
    if fit["ok"]:
        lines += [
            "[strategy.skew]",
            f"glft_a_per_s = {fit['a_per_s']:.6g}      # market orders per second reaching "
            f"depth 0 (exponential fit beyond the touch: R^2 {fit['r2_log']:.3f}, "
            f"{fit['points']} depths)",
            f"kappa_per_tick = {fit['kappa_per_tick']:.6g}  # decay per tick of depth "
            f"(1/k = {1 / fit['kappa_per_tick']:.4g} ticks = "
            f"{fit['decay_length_price']:.4g} {cur})",
            f"# at the touch ({fit['touch']['depth_ticks']:g} ticks): "
            f"{fit['touch']['observed_per_s']:.4g}/s observed, "
            f"{fit['touch']['fitted_per_s']:.4g}/s fitted",
        ]
    else:
        lines.append(f"# no A, k fit: {fit['why']}")
    if vol["annualised"] is not None and math.isfinite(vol["annualised"]):
        lines += ["[strategy.volatility]",
                  f"prior_annual_vol = {vol['annualised']:.4g}  # sigma "
                  f"{vol['ticks_per_sqrt_s']:.4g} ticks = {vol['bps_per_sqrt_s']:.4g} bps "
                  f"per sqrt(s), sampled every {vol['interval_s']:g} s (fraction per year "
                  f"of {vol['year_days']:g} days: keep the config's year_days)"]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The summary for people, ending with the snippet."""
    inst, fit, vol, book = (result["instrument"], result["intensity"], result["volatility"],
                            result["book"])
    sp, dp = book["spread_ticks"], book["depth_lots"]
    quote = inst["quote_currency"]
    base = inst["symbol"][:-len(quote)] if quote else "base units"

    def _base(lots: float) -> str:
        return f"{lots * dp['lot_size']:.4g} {base}"

    lines = [
        f"Calibration of {inst['symbol']} ({inst['venue']}, tick {inst['tick_size']}, lot "
        f"{inst['lot_size']}) on {len(result['recordings'])} recording(s), "
        f"{result['span_s']:.1f} s of {result['clock']} time, {result['frames']} frames",
        "",
        f"Volatility of the mid (sampled every {vol['interval_s']:g} s, "
        f"n = {vol['samples']} returns over {vol['seconds']:g} s):",
        f"  {_g(vol['ticks_per_sqrt_s'])} ticks/sqrt(s) = {_g(vol['bps_per_sqrt_s'])} "
        f"bps/sqrt(s) = {_g(vol['annualised'])} a year",
        "  at other sampling intervals: " + ", ".join(
            f"{o['interval_s']:g} s: {_g(o['ticks_per_sqrt_s'])} ticks/sqrt(s) "
            f"(n = {o['samples']})" for o in vol["at_other_intervals"]),
        "",
        f"Market-order intensity by depth from the mid ({fit['market_orders']} market "
        f"orders from {fit['trades']} trades over {fit['seconds']:g} s; "
        f"{fit['through_mid']} through the mid, not fitted):",
        f"  at the touch ({fit['touch']['depth_ticks']:g} ticks): "
        f"{_g(fit['touch']['observed_per_s'])}/s observed, "
        f"{_g(fit['touch']['fitted_per_s'])}/s by the fit below",
    ]
    if fit["ok"]:
        lo, hi = fit["depth_range_ticks"]
        lines.append(
            f"  beyond it: lambda = A exp(-k depth), A = {_g(fit['a_per_s'])}/s, "
            f"k = {_g(fit['kappa_per_tick'])}/tick; R^2 (log) {_g(fit['r2_log'], 3)}, RMSE "
            f"(log) {_g(fit['rmse_log'], 3)}, {fit['points']} depths {lo:g}..{hi:g} ticks")
    else:
        lines.append(f"  no fit: {fit['why']}")
    lines += [
        "",
        f"Spread (n = {book['events']} book events over {book['seconds']:.1f} s): "
        f"1 tick {sp['share_1_tick']:.1%} of events ({_g(sp['share_1_tick_time'])} of time), "
        f"mean {sp['mean']:.3g} ticks ({_g(sp['mean_time_weighted'])} time-weighted), "
        f"p50 {sp['p50']}, p90 {sp['p90']}, p99 {sp['p99']}",
        f"Depth per side (n = {dp['samples']} side samples; lots of {inst['lot_size']} "
        f"{base}): at the touch mean {dp['touch_mean']:.6g} lots ({_base(dp['touch_mean'])}), "
        f"median {dp['touch_median']} ({_base(dp['touch_median'])}); within "
        f"{dp['within_ticks']} ticks of it mean {dp['near_mean']:.6g} "
        f"({_base(dp['near_mean'])}), median {dp['near_median']} ({_base(dp['near_median'])})",
        "",
        "Set in the config:",
        snippet(result),
    ]
    if "page" in result:
        lines.append(f"\npage: {result['page']}")
    return "\n".join(lines)


def write_page(result: dict[str, Any], out: Path) -> Path:
    """``out``/calibration.html: the intensity with its fit (log y), the touch marked, the
    volatility by sampling interval, the spread distribution. Returns its path."""
    import plotly.graph_objects as go

    inst, fit, vol, book = (result["instrument"], result["intensity"], result["volatility"],
                            result["book"])
    figures = pages.Figures()
    parts = [f"<h1>Calibration: {pages.esc(inst['symbol'])} ({pages.esc(inst['venue'])})</h1>",
             f"<p class=meta>tick {pages.esc(inst['tick_size'])}, lot "
             f"{pages.esc(inst['lot_size'])}; {len(result['recordings'])} recording(s), "
             f"{result['span_s']:.1f} s on the {pages.esc(result['clock'])} clock; config "
             f"{pages.esc(result['config'])}</p>",
             "<h2>Set in the config</h2>", f"<pre>{pages.esc(snippet(result))}</pre>"]
    intensity = go.Figure()
    if fit["curve"]:
        xs, ys = zip(*fit["curve"], strict=True)
        intensity.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="observed (fitted)"))
        if fit["ok"]:
            a, k = fit["a_per_s"], fit["kappa_per_tick"]
            grid = [0.0, *xs]
            intensity.add_trace(go.Scatter(x=grid, y=[a * math.exp(-k * x) for x in grid],
                                           mode="lines", name=f"A exp(-k depth), A={a:.3g}/s, "
                                                              f"k={k:.3g}/tick"))
    if fit["touch_curve"]:
        tx, ty = zip(*fit["touch_curve"], strict=True)
        intensity.add_trace(go.Scatter(x=tx, y=ty, mode="markers", marker={"size": 12},
                                       name="at the touch (not fitted)"))
    intensity.add_vline(x=fit["touch"]["depth_ticks"], line_dash="dot",
                        annotation_text="touch")
    intensity.update_layout(xaxis_title="depth from the mid (ticks)",
                            yaxis_title="market orders reaching it per second",
                            yaxis_type="log", height=480)
    parts += ["<h2>Market-order intensity</h2>", figures.html(
        intensity, div_id="intensity",
        caption=f"lambda(depth) over {fit['seconds']:g} s, {fit['market_orders']} market "
                f"orders; the exponential is fitted beyond the touch")]
    vols = [vol, *vol["at_other_intervals"]]
    vols = sorted({v["interval_s"]: v for v in vols}.values(), key=lambda v: v["interval_s"])
    sig = go.Figure(go.Bar(x=[f"{v['interval_s']:g} s (n={v['samples']})" for v in vols],
                           y=[v["ticks_per_sqrt_s"] for v in vols]))
    sig.update_layout(xaxis_title="sampling interval", yaxis_title="sigma (ticks per sqrt(s))",
                      height=380)
    parts += ["<h2>Volatility</h2>", figures.html(
        sig, div_id="volatility", caption="realised volatility of the mid on event time, "
                                          "by sampling interval")]
    sp = book["spread_ticks"]
    counts = sp["counts"]
    # points on log-log axes: 99% of events at 1 tick and a few at thousands of ticks,
    # which bars one tick wide on a linear axis drew as nothing
    spread = go.Figure(go.Scatter(x=[c[0] for c in counts], y=[c[1] for c in counts],
                                  mode="markers", name="book events"))
    spread.update_layout(xaxis_title="spread (ticks, log scale)", yaxis_title="book events",
                         xaxis_type="log", yaxis_type="log", height=380)
    parts += ["<h2>Spread</h2>", figures.html(
        spread, div_id="spread", caption=f"{book['events']} book events; 1 tick "
                                         f"{sp['share_1_tick']:.1%} of them")]
    parts += ["<h2>Figures</h2>", f"<pre>{pages.esc(render(result))}</pre>"]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "calibration.html"
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(pages.document(f"Calibration {inst['symbol']}", "\n".join(parts)),
                       encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
