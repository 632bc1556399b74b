"""``mmdaemon crosscheck``: check that the config can be compared, run the dry run and
export its order log (or take an exported one), replay it through hftbacktest and print
how the fills agree (see :mod:`mmdaemon.crosscheck`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdaemon.crosscheck.backtest import (
    TheirRun,
    convert,
    hftbacktest_module,
    replay_hftbacktest,
    trade_prints,
)
from mmdaemon.crosscheck.compare import Agreement, compare, table
from mmdaemon.crosscheck.our_log import (
    CrossCheckError,
    read_actions,
    read_fills,
    read_self_crosses,
)
from mmdaemon.model import Instrument

# ---- the dry run's order log -----------------------------------------------------------------


def dry_run_order_log(config_path: Path, recordings: Sequence[str], out_dir: Path
                      ) -> tuple[Path, Path]:
    """Run the dry run (``mmdaemon replay``) and export its order log (``mmdaemon
    export``), each in a process of its own, as a user would: ``(orders.csv, fills.csv)``
    in ``out_dir``."""
    import subprocess
    import sys

    state, orders, fills = out_dir / "state", out_dir / "orders.csv", out_dir / "fills.csv"
    me = [sys.executable, "-m", "mmdaemon", "--log-level", "warning"]
    for what, argv in (
        ("the dry run", [*me, "replay", *map(str, recordings), "--config", str(config_path),
                         "--state-dir", str(state), "--json"]),
        ("the export", [*me, "export", str(state), "--orders", str(orders), "--fills",
                        str(fills)]),
    ):
        proc = subprocess.run(argv, capture_output=True, check=False)
        if proc.returncode:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise CrossCheckError(f"{what} failed (exit {proc.returncode}): "
                                  f"{' / '.join(tail)}")
    return orders, fills


# ---- the command ----------------------------------------------------------------------------


@dataclass
class Result:
    """One cross-check: what was compared and how it agreed."""

    title: str
    instrument: Instrument
    agreement: Agreement
    run: TheirRun
    actions: int

    def as_dict(self) -> dict[str, Any]:
        a = self.agreement
        return {
            "title": self.title,
            "actions": self.actions,
            "ours": a.ours, "theirs": a.theirs, "matched": len(a.matched),
            "ours_only": len(a.ours_only), "theirs_only": len(a.theirs_only),
            "ours_volume_lots": a.ours_volume, "theirs_volume_lots": a.theirs_volume,
            "matched_share": a.matched_share, "volume_gap": a.volume_gap,
            "alike_share": a.alike_share, "alike_volume_gap": a.alike_volume_gap,
            "unexplained": a.unexplained,
            "goal_met": a.goal_met(),
            "classes": {why: len(pairs) for why, pairs in a.classes.items()},
            "skipped_actions": dict(self.run.skipped), "ghost_fills": a.ghosts,
            "ambiguous_responses": self.run.merged,
        }


def crosscheck(config_path: Path, recordings: Sequence[str] = (),
               order_log: tuple[Path, Path] | None = None, work_dir: Path | None = None
               ) -> Result:
    """Run the dry run of ``config_path`` on ``recordings`` (default: the config's), or take
    its exported ``order_log`` (orders.csv, fills.csv), replay the actions through
    hftbacktest and compare the fills. :class:`CrossCheckError` for input it cannot use."""
    import tempfile

    from mmdaemon.config import ConfigError
    from mmdaemon.config_file import load_config
    from mmdaemon.venue_rules import settle

    try:
        config = load_config(config_path)
        # grids the config leaves out: the exchangeInfo saved beside the recordings
        config = settle(config, recordings, live=False).config
    except ConfigError as exc:
        raise CrossCheckError(f"{config_path}: {exc}") from None
    ex = config.exchange
    if config.instrument.venue not in ("binance-spot", "binance-usdm"):
        raise CrossCheckError(f"{config_path}: instrument.venue {config.instrument.venue!r}: "
                              "the cross-check reads Binance recordings only")
    if ex.adapter != "paper":
        raise CrossCheckError(f"{config_path}: exchange.adapter = {ex.adapter!r}: the "
                              "cross-check compares the paper exchange's fills; give a "
                              "config with adapter = \"paper\"")
    if ex.queue_model != "conservative" or ex.fill_through != "whole":
        raise CrossCheckError(f"{config_path}: exchange.queue_model = {ex.queue_model!r}, "
                              f"fill_through = {ex.fill_through!r}: the cross-check maps "
                              "the conservative queue and whole fills through the book to "
                              "hftbacktest's risk-averse queue and its fills on a cross; "
                              "set queue_model = \"conservative\", fill_through = \"whole\"")
    if ex.latency_file:
        raise CrossCheckError(f"{config_path}: exchange.latency_file is set: the cross-check "
                              "compares constant latencies (hftbacktest's constant model); "
                              "remove it (the constants latency_ms, feed_latency_ms apply)")
    if config.feed.clock != "receive":
        raise CrossCheckError(f"{config_path}: feed.clock = {config.feed.clock!r}: the "
                              "cross-check runs on the recorded receive times; set "
                              "clock = \"receive\"")
    recordings = list(recordings) or list(config.feed.recordings)
    missing = [p for p in recordings if not Path(p).is_file()]
    if not recordings or missing:
        raise CrossCheckError(f"no such recording: {missing[0]}" if missing else
                              f"{config_path}: no recordings: give RECORDING... or set "
                              "feed.recordings")
    hftbacktest_module()  # its absence is said before the dry run, not after
    instrument = config.instrument.build()
    feed_ns = round(ex.feed_latency_ms * 1_000_000)
    entry_ns = round(ex.latency_ms * 1_000_000)
    with tempfile.TemporaryDirectory(prefix="mmdaemon-crosscheck-",
                                     dir=work_dir) as tmp:
        if order_log is None:
            order_log = dry_run_order_log(config_path, recordings, Path(tmp))
        actions = read_actions(order_log[0])
        refusals = read_self_crosses(order_log[0])
        ours = read_fills(order_log[1])
    events = convert(recordings, instrument, config.instrument.venue, feed_ns)
    run = replay_hftbacktest(events, actions, instrument, entry_ns, feed_ns)
    agreement = compare(ours, run, trade_prints(events, instrument), refusals)
    title = (f"{config.instrument.venue} {config.instrument.symbol}: "
             f"{', '.join(Path(p).name for p in recordings)} ({Path(config_path).name}; "
             f"entry {ex.latency_ms:g} ms, feed {ex.feed_latency_ms:g} ms)")
    return Result(title, instrument, agreement, run, len(actions))


def main(config_path: Path, recordings: Sequence[str], orders: str | None,
         fills: str | None, as_json: bool) -> int:
    """``mmdaemon crosscheck``: 0 when it ran (whatever the agreement), 2 on bad input."""
    import sys

    import orjson

    if (orders is None) != (fills is None):
        print("mmdaemon crosscheck: give both --orders and --fills (an exported order log) "
              "or neither (run the dry run)", file=sys.stderr)
        return 2
    log = (Path(orders), Path(fills)) if orders is not None and fills is not None else None
    try:
        result = crosscheck(config_path, recordings, log)
    except CrossCheckError as exc:
        print(f"mmdaemon crosscheck: {exc}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.as_dict()) + b"\n")
        return 0
    a = result.agreement
    print(table(a, result.instrument, result.title))
    skipped = ", ".join(f"{why}: {n}" for why, n in sorted(result.run.skipped.items()))
    print(f"\n{result.actions} actions replayed" + (f" (not taken there: {skipped})"
                                                   if skipped else ""))
    print(f"goal (>= 95% of our fills matched one to one, volume within 5%): "
          f"{'met' if a.goal_met() else 'not met'}; differences not explained by a rule: "
          f"{a.unexplained}")
    return 0
