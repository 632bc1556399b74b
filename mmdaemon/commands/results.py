"""What a run leaves for people: the dry run's summary (the table, its warnings, the
article's metrics from the journal) and ``mmdaemon report``, the report of a state
directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mmdaemon.config import Config
from mmdaemon.risk.rules import ORDER_RATE

if TYPE_CHECKING:  # imported where a command runs it: the other commands start sooner
    from mmdaemon.daemon import Service


def replay_metrics(service: Service, report_dir: Path | None, logger: Any) -> dict[str, Any]:
    """The article's metrics from the replay's journal; with ``report_dir`` the report too.

    Only the report path imports :mod:`mmdaemon.report` (and through it plotly): the
    summary's metrics need nothing but :mod:`mmdaemon.analytics`."""
    from mmdaemon.analytics import compute_metrics
    from mmdaemon.journal_reader import load_fills, load_funding, load_markouts, stream_samples
    from mmdaemon.market_hours import market_hours

    journal = service.state_dir / "journal.sqlite"
    config = service.config
    options: dict[str, Any] = {"horizons_s": config.report.markout_horizons_s,
                               "currency": service.snapshot().currency,
                               **market_hours(config.instrument.venue)}
    if report_dir is not None:
        from mmdaemon.report import write_report

        metrics: dict[str, Any] = write_report(
            journal, service.instrument, report_dir,
            max_spread_bps=config.report.max_spread_bps,
            inventory_soft_lots=config.risk.inventory_soft_lots,
            inventory_hard_lots=config.risk.inventory_hard_lots,
            venue=config.instrument.venue, **options)
        logger.info("report_written", path=str(report_dir / "report.html"))
        return metrics
    # the samples streamed: a long run's would be the largest thing in memory by far
    result: dict[str, Any] = compute_metrics(load_fills(journal), stream_samples(journal),
                                             service.instrument,
                                             markouts=load_markouts(journal),
                                             funding=load_funding(journal),
                                             max_spread_bps=config.report.max_spread_bps,
                                             **options)
    return result


def report(state_dir: Path, out: Path) -> int:
    """``mmdaemon report``: the report of the journal in ``state_dir``."""
    from mmdaemon.journal_reader import load_state
    from mmdaemon.market_hours import market_hours
    from mmdaemon.markouts import DEFAULT_HORIZONS_S, quote_currency
    from mmdaemon.model import Instrument
    from mmdaemon.report import write_report

    journal = state_dir / "journal.sqlite"
    if not journal.is_file():
        print(f"mmdaemon report: no journal at {journal}", file=sys.stderr)
        return 2
    stored = load_state(journal, "instrument")
    if stored is None:
        print(f"mmdaemon report: {journal} names no instrument (written by an older version)",
              file=sys.stderr)
        return 2
    spec = orjson.loads(stored)
    instrument = Instrument(spec["symbol"], spec["tick_size"], spec["lot_size"])
    venue = spec.get("venue", "")
    write_report(journal, instrument, out, **market_hours(venue),
                 currency=quote_currency(instrument.symbol, venue),
                 horizons_s=spec.get("markout_horizons_s", DEFAULT_HORIZONS_S),
                 max_spread_bps=spec.get("max_spread_bps", 10.0),
                 inventory_soft_lots=spec.get("inventory_soft_lots"),
                 inventory_hard_lots=spec.get("inventory_hard_lots"), venue=venue)
    print(f"report written to {out / 'report.html'}")
    return 0


REPORT_HEADLINES = ("spread_capture_pnl", "inventory_pnl", "sharpe", "max_drawdown",
                    "win_rate", "negative_markout_rate", "adverse_move_rate", "quote_uptime",
                    "two_sided_share", "quoted_spread_bps_mean", "order_to_trade", "fill_rate")
"""The report figures the people's summary shows; ``--json`` and ``--report`` have them all."""


def replay_table(summary: dict[str, Any], config: Config) -> str:
    """The summary for people: money in the quote currency, sizes in the base currency,
    then the report's headline figures (markouts in bps of the mid at each horizon)."""
    money = ("cash", "realized_pnl", "unrealized_pnl", "fees", "funding", "total_pnl",
             "spread_capture_pnl", "inventory_pnl", "max_drawdown")
    scalars = {k: v for k, v in summary.items()
               if not isinstance(v, dict | list) and k != "first_malformed"}  # in a warning
    metrics = summary.get("metrics")
    if isinstance(metrics, dict):
        scalars.update((k, metrics[k]) for k in REPORT_HEADLINES if k in metrics)
        if "sharpe" in scalars:  # never a bare figure: n/a or not, with its interval count
            from mmdaemon.sharpe import sharpe_text

            scalars["sharpe"] = sharpe_text(metrics)
        for m in metrics.get("markouts", []):
            scalars[f"markout_{m['horizon_s']:g}s_bps"] = m["markout_bps"]
    width = max(*map(len, scalars), *(len(f"reference {k}") for k in REFERENCE_ROWS
                                      if summary.get("reference")))
    rows = []
    for key, value in scalars.items():
        if key in money and isinstance(value, float):
            value = f"{value:,.6f}"
        elif isinstance(value, float):
            value = f"{value:,.8g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        rows.append(f"{key:<{width}}  {value}")
    unsendable = {k: v for k, v in summary.get("unsendable", {}).items() if v}
    rows += [f"{'unsendable ' + k:<{width}}  {v:,}" for k, v in unsendable.items()]
    rows += _reference_rows(summary.get("reference"), width)
    deferred = unsendable.get(ORDER_RATE, 0)
    notes = ([f"note: {deferred:,} order actions waited for the order rate limit "
              f"(risk.max_orders_per_s, risk.order_burst); the next quote retries them"]
             if deferred and not _rate_starved(summary) else [])
    return "\n".join([f"dry run of {config.instrument.symbol} (paper exchange)", *rows,
                      "(every figure: --json, or --report DIR for the report with plots)",
                      *notes, *(f"WARNING: {w}" for w in summary["warnings"])])


REFERENCE_ROWS = ("frames", "gaps", "unusable_episodes", "unusable_s", "on_stale",
                  "lead_lag_quotes", "fallback_quotes", "basis_ticks", "basis")
"""The reference feed's figures the people's summary shows (``--json`` has them all)."""


def _reference_rows(reference: dict[str, Any] | None, width: int) -> list[str]:
    """The reference venue's lines of the table: how often it could not be used and what
    that did, and the final basis (traded minus reference price)."""
    if not reference:
        return []
    rows = [f"{'reference':<{width}}  {reference['venue']} {reference['symbol']}"]
    for key in REFERENCE_ROWS:
        value = reference[key]
        text = (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool)
                else f"{value:,.6g}" if isinstance(value, float) else str(value))
        rows.append(f"{'reference ' + key:<{width}}  {text}")
    return rows


def _reference_warnings(reference: dict[str, Any] | None) -> list[str]:
    """A reference feed that did less than it seems: never usable, or not at the end."""
    if not reference:
        return []
    action = ("the daemon stayed HALTED (reference_stale)" if reference["on_stale"] == "halt"
              else "every quote used the local fair value")
    if not reference["ever_usable"]:
        why = "no reference frame" if not reference["frames"] else "it never synced or was stale"
        return [f"the reference feed ({reference['venue']} {reference['symbol']}) was never "
                f"usable ({why}): {action}"]
    if reference["unusable_episodes"] > 1:  # the wait for its first sync is not news
        return [f"the reference feed was unusable {reference['unusable_episodes'] - 1:,} "
                f"times after its first sync ({reference['unusable_s']:,} s in all, the "
                f"start included): {action} meanwhile; see reference_unusable in the log"]
    return []


def _rate_starved(summary: dict[str, Any]) -> bool:
    """The order rate limit held back more actions than went out."""
    return bool(summary["unsendable"][ORDER_RATE] > summary["orders"] + summary["amends"])


def summary_warnings(summary: dict[str, Any]) -> list[str]:
    """What a dry run's summary must not leave for the reader to notice: the run did less
    than it seems to (nothing quoted, nothing sent, quotes held back, frames lost)."""
    warnings = []
    if summary["quotes"] == 0:
        warnings.append("no quote was decided: the book never synced (no depth snapshot in "
                        "the recording, or none that fits the instrument)")
    elif summary["orders"] == 0:
        warnings.append(f"{summary['quotes']:,} quotes and not one order was sent")
    unsendable = {k: v for k, v in summary["unsendable"].items() if v and k != ORDER_RATE}
    if unsendable:
        warnings.append(f"{sum(unsendable.values()):,} quote sides or order actions could "
                        f"not become orders ({', '.join(unsendable)}): see the "
                        f"quote_unsendable and order_blocked log lines, and `mmdaemon "
                        f"check-config`")
    if _rate_starved(summary):
        warnings.append(f"the order rate limit held back {summary['unsendable'][ORDER_RATE]:,} "
                        f"order actions, more than the {summary['orders'] + summary['amends']:,}"
                        f" sent: risk.max_orders_per_s / risk.order_burst starve the quoting")
    if summary["malformed"]:
        warnings.append(f"{summary['malformed']:,} frames or lines did not decode (first: "
                        f"{summary['first_malformed']}): see frame_malformed in the log")
    if summary["gaps"]:
        warnings.append(f"{summary['gaps']:,} sequence gaps: no quotes until a later snapshot "
                        f"resynced the book")
    if summary["time_backsteps"]:
        warnings.append(f"{summary['time_backsteps']:,} frames were older than the frame "
                        f"before them (recordings out of order?): handled at the latest time")
    if summary["state"] != "ACTIVE":
        warnings.append(f"the run ended {summary['state']}")
    warnings += _reference_warnings(summary.get("reference"))
    return warnings
