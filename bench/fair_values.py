"""Fair values compared on real data: the same dry run with each fair-value mode (issue #19).

Run: ``.venv/bin/python bench/fair_values.py`` (prints a table; ``--json`` one JSON object).

The traded feed is Binance spot BTCUSDT, the reference the USD-M BTCUSDT perpetual, both
from ``../shared/data`` (SOURCE.md there: the two overlap over about 345 s, 23:54:15 to
23:59:59.8 UTC on 2024-08-08). Every mode sees the same window:

- the spot recording is cropped at the reference's last receive time (a temporary copy;
  its start stays, for its depth snapshot at line 8);
- every run has the ``[reference]`` section with ``on_stale = "halt"``, so no mode quotes
  before the reference is usable (about 1.4 s after the spot book syncs) or while it is
  not: a local mode does not price off it, it only waits for it.

Each ``--mode`` is ``MODE[,dotted.key=TOML_VALUE...]``: ``strategy.fair_value.mode`` set to
MODE, then the overrides (``--set`` ones apply to every run), e.g.
``--mode lead_lag,reference.basis_halflife_s=5`` or, once it exists,
``--mode stoikov,strategy.fair_value.<its table key>='"table.json"'``. The defaults compare
the local fair value (``microprice``, the size-weighted mid) with ``lead_lag``.

Figures per run: fills, the 1 s and 5 s markouts (notional-weighted mean in bps of the
mid, and per unit traded in spot ticks: markout money / base volume / tick), the adverse
rate at 1 s (share of lots after which the mid moved against us), total PnL after fees at
the final mid (USDT), and the reference's figures (lead-lag quotes, final basis).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import sys
import tempfile
import time
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config import Config
from mmdaemon.config_file import load_config
from mmdaemon.feed.recording import read_recording
from mmdaemon.model import Malformed

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SPOT = SHARED / "binance-spot-btcusdt" / "btcusdt_20240808.gz"
USDM = SHARED / "binance-usdm-btcusdt" / "btcusdt_20240808.gz"
CONFIG = REPO / "config" / "dryrun-reference.toml"
DEFAULT_MODES = ("microprice", "lead_lag")


def last_recv_ns(path: Path) -> int:
    """The last receive time (ns) of a recording."""
    last = 0
    for item in read_recording([path]):
        if isinstance(item, tuple) and not isinstance(item, Malformed):
            last = item[0]
    return last


def crop(src: Path, dst: Path, end_ns: int) -> int:
    """``src``'s lines received at or before ``end_ns`` into ``dst`` (gzip); their count."""
    kept = 0
    with gzip.open(src, "rb") as lines, gzip.open(dst, "wb") as out:
        for line in lines:
            head = line.split(b" ", 1)[0]
            if head.isdigit() and int(head) > end_ns:
                break
            out.write(line)
            kept += 1
    return kept


def override(obj: Any, dotted: str, value: Any) -> Any:
    """``obj`` (a config dataclass) with the field at ``dotted`` replaced by ``value``."""
    name, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise SystemExit(f"fair_values: {dotted}: no such config key")
    if rest:
        value = override(getattr(obj, name), rest, value)
    elif isinstance(value, list):
        value = tuple(value)
    return dataclasses.replace(obj, **{name: value})  # type: ignore[type-var]


def parse_setting(text: str) -> tuple[str, Any]:
    """``dotted.key=TOML_VALUE`` (a bare word is taken as a string)."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise SystemExit(f"fair_values: {text!r}: expected dotted.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def configure(base: Config, spec: str, common: list[str], tmp: Path) -> Config:
    """The run's config: ``base`` with the mode of ``spec``, its overrides and ``common``."""
    mode, *settings = spec.split(",")
    config = override(base, "strategy.fair_value.mode", mode)
    config = override(config, "reference.on_stale", "halt")  # the same window for every mode
    for text in [*common, *settings]:
        config = override(config, *parse_setting(text))
    result: Config = override(config, "state.dir", str(tmp))
    return result


def run(config: Config, spot: Path, usdm: Path, state_dir: Path) -> dict[str, Any]:
    """One dry run (in this process, the daemon's own code) and its summary."""
    from mmdaemon.daemon import Service

    logger = log.get_logger(instrument=config.instrument.symbol, mode="bench")
    service = Service(config, SystemClock(), logger, recordings=[str(spot)], speed=None,
                      state_dir=state_dir, reference=[str(usdm)])
    start = time.perf_counter()
    asyncio.run(service.run())
    if service.exit_code:
        raise SystemExit(f"fair_values: the dry run failed (exit {service.exit_code})")
    return service.summary(time.perf_counter() - start)


def figures(summary: dict[str, Any], config: Config) -> dict[str, Any]:
    """The comparison's figures of one run (see the module docstring)."""
    inst = config.instrument.build()
    by_h = {m["horizon_s"]: m for m in summary["markouts"]}
    row: dict[str, Any] = {"fills": summary["fills"], "volume": summary["volume"]}
    for h in (1.0, 5.0):
        m = by_h[h]
        units = Fraction(m["resolved_lots"]) * Fraction(inst.lot_size)
        ticks = (Fraction(m["markout_pnl"]) / units / Fraction(inst.tick_size)
                 if units else None)
        row[f"markout_{h:g}s_bps"] = round(m["markout_bps"], 4)
        row[f"markout_{h:g}s_ticks"] = round(float(ticks), 2) if ticks is not None else None
    row["adverse_rate_1s"] = round(by_h[1.0]["adverse_move_rate"], 4)
    row["pnl"] = round(summary["total_pnl"], 6)
    row["quotes"], row["orders"], row["amends"] = (summary["quotes"], summary["orders"],
                                                   summary["amends"])
    ref = summary["reference"]
    row["lead_lag_quotes"] = ref["lead_lag_quotes"]
    row["basis_usdt"] = round(ref["basis"], 4) if ref["basis"] is not None else None
    row["reference_unusable_s"] = ref["unusable_s"]
    return row


COLUMNS = (("mode", "{}"), ("fills", "{:,}"), ("markout_1s_bps", "{:+.3f}"),
           ("markout_1s_ticks", "{:+.1f}"), ("markout_5s_bps", "{:+.3f}"),
           ("markout_5s_ticks", "{:+.1f}"), ("adverse_rate_1s", "{:.3f}"), ("pnl", "{:+.4f}"),
           ("lead_lag_quotes", "{:,}"), ("basis_usdt", "{}"))


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    cells = [[name for name, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[name]) if row[name] is not None else "n/a"
                      for name, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spot", type=Path, default=SPOT)
    parser.add_argument("--reference", type=Path, default=USDM)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--mode", action="append", metavar="MODE[,KEY=VALUE...]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for path in (args.spot, args.reference):
        if not path.is_file():
            print(f"fair_values: {path} not present (the recordings live in ../shared/data)",
                  file=sys.stderr)
            return 2
    log.configure("error", sys.stderr.buffer)
    base = load_config(args.config)
    end_ns = last_recv_ns(args.reference)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fair-values-") as tmp:
        spot = Path(tmp) / "spot-cropped.gz"
        kept = crop(args.spot, spot, end_ns)
        for i, spec in enumerate(args.mode or DEFAULT_MODES):
            state = Path(tmp) / f"state{i}"
            config = configure(base, spec, args.set, state)
            row = {"mode": spec, **figures(run(config, spot, args.reference, state), config)}
            rows.append(row)
    result = {"spot": str(args.spot), "reference": str(args.reference),
              "spot_lines_kept": kept, "window_end_ns": end_ns, "common": args.set,
              "runs": rows}
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        print(f"spot {args.spot.name} cropped to {kept:,} lines (to the reference's last "
              f"receive time), reference {args.reference.parent.name}; every run halts "
              f"while the reference is not usable")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
