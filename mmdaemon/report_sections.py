"""Sections of the run report that are more than a table of metrics: what produced the run
(:mod:`mmdaemon.provenance`), the fills table, and the names of the instrument's currencies.

HTML through :mod:`mmdaemon.pages` (escaping, sortable tables); :mod:`mmdaemon.report`
assembles the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from mmdaemon import pages
from mmdaemon.journal import MarkoutRow
from mmdaemon.markouts import journaled
from mmdaemon.model import NS_PER_S, Fill, Instrument, Side
from mmdaemon.orderlog import FILLS_FILE

FILLS_SHOWN = 500
"""Fills shown at each end of the fills table of a longer run (the CSV has them all)."""


def provenance_html(produced: dict[str, Any] | None) -> str:
    """The "Produced by" section: the mmdaemon version, the config file (path, sha256, its
    text, the resolved values) and the feed; "not recorded" for a journal written before
    the service recorded them."""
    head = '<h2>Produced by</h2>\n'
    if produced is None:
        return (head + '<p id="provenance">Version and configuration: not recorded (this '
                "journal was written by an mmdaemon that did not record them).</p>")
    config = produced.get("config") or {}
    feed = produced.get("feed") or {}
    files = [f"{f['path']} ({f['bytes']:,} bytes)" if f.get("bytes") is not None
             else f"{f['path']} (not readable now)" for f in feed.get("recordings", [])]
    refs = [f"{f['path']}" for f in feed.get("reference", [])]
    items = [("mmdaemon version", produced.get("version", "not recorded")),
             ("Python", produced.get("python", "not recorded")),
             ("mode", produced.get("mode", "not recorded")),
             ("config file", config.get("path") or "none (no file read)"),
             ("config sha256", config.get("sha256") or "n/a"),
             ("recordings", "; ".join(files) or f"none: live feed {feed.get('url', '')}")]
    if refs:
        items.append(("reference recordings", "; ".join(refs)))
    rows = "".join(f"<dt>{pages.esc(k)}</dt><dd>{pages.esc(v)}</dd>" for k, v in items)
    text, withheld = config.get("text"), config.get("text_withheld")
    text_html = (f"<details><summary>config file as read (secret-looking values "
                 f"redacted)</summary><pre id=\"config-text\">{pages.esc(text)}</pre></details>"
                 if text is not None else
                 f'<p id="config-text-withheld">{pages.esc(withheld)}</p>' if withheld else "")
    values = orjson.dumps(config.get("values"), option=orjson.OPT_INDENT_2).decode()
    return (f'{head}<dl id="provenance">{rows}</dl>\n{text_html}\n<details><summary>'
            f"resolved configuration the service ran with (defaults filled in, paths "
            f"absolute)</summary><pre id=\"config-values\">{pages.esc(values)}</pre>"
            f"</details>")


def _money(units: int, instrument: Instrument) -> Decimal:
    """Notional units (ticks x lots) in the quote currency, exactly."""
    return (Decimal(instrument.tick_size) * Decimal(instrument.lot_size) * units).normalize()


def fills_table(fills: Sequence[Fill], markouts: Sequence[MarkoutRow],
                horizons_s: Sequence[float], instrument: Instrument, zone: ZoneInfo,
                currency: str, base: str) -> str:
    """The "Fills" section: one row per fill in time order with its markout (bps of the
    mid before it) at each horizon, sortable; a run of more than 2 x :data:`FILLS_SHOWN`
    fills shows the first and last of them and says so (fills.csv has every one)."""
    ordered = sorted(fills, key=lambda f: f.ts_ns)
    horizons_ns = [round(h * NS_PER_S) for h in horizons_s]
    marks: dict[tuple[int, int, int], float] = {}
    for m in journaled(ordered, markouts):
        f = m.fill
        marks[(f.order_id, f.exec_id, m.horizon_ns)] = (
            1e4 * int(f.side) * (m.mid_x2 - 2 * f.price) / f.mid_x2)
    positions: list[int] = []
    pos = 0
    for f in ordered:
        pos += int(f.side) * f.size
        positions.append(pos)
    shown = list(range(len(ordered)))
    if len(ordered) > 2 * FILLS_SHOWN:
        shown = shown[:FILLS_SHOWN] + shown[-FILLS_SHOWN:]
    rows = []
    for i in shown:
        f = ordered[i]
        when = datetime.fromtimestamp(f.ts_ns / NS_PER_S, zone)
        fee = _money(f.fee, instrument)
        row: list[Any] = [
            (when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], f.ts_ns),
            "buy" if f.side is Side.BUY else "sell",
            (instrument.price_str(f.price), f.price),
            (instrument.size_str(f.size), f.size),
            (f"{fee:f}", float(fee)),
            "yes" if f.maker else "no",
            (instrument.size_str(abs(positions[i])) if positions[i] >= 0
             else "-" + instrument.size_str(-positions[i]), positions[i]),
        ]
        for h in horizons_ns:
            bps = marks.get((f.order_id, f.exec_id, h))
            row.append((f"{bps:,.3f}", bps) if bps is not None else "n/a")
        rows.append(row)
    headers = ["time", "side", f"price ({currency})", f"size ({base})", f"fee ({currency})",
               "maker", f"position after ({base})",
               *(f"markout {h:g} s (bps)" for h in horizons_s)]
    count = (f"all {len(ordered):,} fills" if len(shown) == len(ordered) else
             f"the first and last {FILLS_SHOWN:,} of {len(ordered):,} fills (every one in "
             f"<a href=\"{FILLS_FILE}\">{FILLS_FILE}</a>)")
    return (f'<h2>Fills</h2>\n<p id="fills-count">{count}, in event time ({zone.key}); '
            f"click a header to sort. A markout is side x (mid at the horizon - price) in "
            f"bps of the mid before the fill; n/a: not resolved (the run ended first, or no "
            f"mid before the fill). Download: <a href=\"{FILLS_FILE}\">{FILLS_FILE}</a>."
            f"</p>\n{pages.table(headers, rows, table_id='fills', name_columns=2)}")
