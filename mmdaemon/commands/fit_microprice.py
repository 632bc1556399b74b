"""``mmdaemon fit-microprice``: Stoikov's micro-price table fitted on recordings
(:mod:`mmdaemon.quoting.microprice_fit`), for the fair-value mode ``stoikov``.

The states are the venue's own best bid and offer, the ``bookTicker`` stream: one
observation per top-of-book change, sizes included, which is the data the paper fits on
(the 100 ms depth stream moves its mid by a tick or less 67 times in the bundled spot
recording, the ticker ~1,300 times). Tickers older than the newest seen (a lower update
id) are skipped; each recording starts a new chain (no step runs from one file into the
next). The table is checked against the config's instrument when a config names it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mmdaemon.config import Config
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import TopOfBook
from mmdaemon.quoting.microprice_fit import FEW_SAMPLES, Fit, Top, fit, table_document
from mmdaemon.venues.binance import BinanceCodec


def fit_microprice(config: Config, recordings: list[str], out: Path, buckets: int,
                   spreads: int, max_move_ticks: int) -> int:
    """Fit, print the table and its sample counts, write ``out``: 0 written, 2 unusable
    input (the message on stderr names it)."""
    inst = config.instrument
    if inst.venue == "lobster":
        print("mmdaemon fit-microprice: instrument.venue: expected binance-spot or "
              "binance-usdm (the fit reads the bookTicker stream of Binance recordings), "
              "got 'lobster'", file=sys.stderr)
        return 2
    missing = [p for p in recordings if not Path(p).is_file()]
    if missing:
        print(f"mmdaemon fit-microprice: no such recording: {missing[0]}", file=sys.stderr)
        return 2
    try:
        result = fit(_tops(config, recordings), buckets, spreads, max_move_ticks)
    except RecordingError as exc:
        print(f"mmdaemon fit-microprice: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad grid, a chain that cannot be solved
        print(f"mmdaemon fit-microprice: {exc}", file=sys.stderr)
        return 2
    if result.steps == 0:
        print(f"mmdaemon fit-microprice: no top-of-book change of {inst.symbol} inside "
              f"spreads 1..{spreads} ticks in {' '.join(recordings)} ({result.observations} "
              f"bookTickers): nothing to fit", file=sys.stderr)
        return 2
    body = table_document(result, inst.venue, inst.symbol, f"{inst.build().tick_size:f}",
                          [Path(p).name for p in recordings])
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(body)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"mmdaemon fit-microprice: --out: cannot write {out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(render(result, f"{inst.venue} {inst.symbol} tick {inst.tick_size}"))
    print(f"written: {out}")
    return 0


def _tops(config: Config, recordings: list[str]) -> list[Top | None]:
    """Every bookTicker of the recordings as (bid, ask, bid size, ask size), each file's
    after a None (a new chain)."""
    inst = config.instrument
    market = MarketState(BinanceCodec(inst.build(),
                                      "usdm" if inst.venue == "binance-usdm" else "spot"))
    tops: list[Top | None] = []
    newest = -1
    for path in recordings:
        tops.append(None)
        for item in read_recording([path]):
            if type(item) is not tuple:
                continue  # a malformed line: counted by nobody here, it changes no top
            for event in market.on_frame(*item):
                if type(event) is TopOfBook and event.update_id > newest:
                    newest = event.update_id
                    tops.append((event.bid, event.ask, event.bid_size, event.ask_size))
    return tops


def render(result: Fit, market: str) -> str:
    """The table for people: g* (ticks) and the steps out of each state, one row per
    spread state; a note for each state with few steps."""
    n = result.buckets
    head = "".join(f"{f'I{b}':>10}" for b in range(n))
    lines = [
        f"Stoikov micro-price for {market}: {n} imbalance buckets (I = B/(A+B), I0 = all on "
        f"the ask) x spreads 1..{result.spreads} ticks, mid moves up to "
        f"{result.max_move_ticks} tick(s)",
        f"  {result.observations} bookTickers: {result.steps} state changes fitted, "
        f"{result.self_loops} with no change of state (not counted), {result.large_moves} "
        f"larger mid moves dropped, {result.outside} outside the states",
        f"  g* {'converged' if result.converged else 'NOT converged'} after "
        f"{result.iterations} iterations (g^(i+1) = G1 + B g^i)",
        f"g* (ticks)  {head}",
    ]
    for s in range(1, result.spreads + 1):
        row = result.g_ticks[(s - 1) * n:s * n]
        lines.append(f"  spread {s:<3}" + "".join(
            f"{'-':>10}" if g is None else f"{round(g, 9) + 0.0:>+10.4f}" for g in row))
    lines.append(f"samples     {head}")
    for s in range(1, result.spreads + 1):
        row = result.samples[(s - 1) * n:s * n]
        lines.append(f"  spread {s:<3}" + "".join(f"{c:>10}" for c in row))
    few = [(s, b, result.samples[(s - 1) * n + b]) for s in range(1, result.spreads + 1)
           for b in range(n) if result.samples[(s - 1) * n + b] < FEW_SAMPLES]
    for s, b, count in few:
        lines.append(f"note: spread {s} bucket I{b}: {count} samples (< {FEW_SAMPLES}): its g* "
                     f"rests on few mid changes" + (" (its mirror's alone)" if count == 0
                                                    and result.g(s, b) is not None else ""))
    return "\n".join(lines)
