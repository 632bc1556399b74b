"""Benchmark: the report page of the bundled dry run and of a day of samples.

Run: ``.venv/bin/python bench/report_page.py`` (prints one JSON object per journal).

The day is the bundled run's journal tiled end to end until it covers 24 h (its samples,
their time shifted per copy, and its fills with new ids): about 293,000 samples at the
run's spacing (345,600 at 250 ms), far more than a plot can draw point by point, so the
page shows what :mod:`mmdaemon.plots` decimates them to. For each journal: the seconds to
write the report, the page's size, and the seconds headless Chromium takes to load and
draw it (``--dump-dom`` after the load; no Chromium, no figure).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SPOT_FILES
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.report import PLOTS, write_report

CHROMIUM = Path("/usr/bin/chromium")
DAY_NS = 86_400 * 1_000_000_000


def tile_to_a_day(journal: Path) -> int:
    """Append shifted copies of ``journal``'s samples and fills until they span a day;
    returns the number of copies."""
    db = sqlite3.connect(journal)
    with db:
        first, last, count = db.execute(
            "SELECT min(ts_ns), max(ts_ns), count(*) FROM samples").fetchone()
        step = (last - first) + (last - first) // max(count - 1, 1)  # one sample apart
        copies = DAY_NS // step
        for k in range(1, copies + 1):
            shift = k * step
            db.execute("INSERT INTO samples SELECT run_id, ts_ns + ?, best_bid, best_ask, fair,"
                       " bid, bid_size, ask, ask_size, position, state, orders, amends, cancels"
                       " FROM samples WHERE ts_ns <= ?", (shift, last))
            db.execute("INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker,"
                       " ts_ns, mid_x2) SELECT ? || exec_key, order_id + ?, side, price, size,"
                       " fee, maker, ts_ns + ?, mid_x2 FROM fills WHERE ts_ns <= ?",
                       (f"{k}", k * 10_000_000, shift, last))
    db.close()
    return int(copies)


def measure(journal: Path, out: Path) -> dict[str, Any]:
    """Write the report of ``journal`` into ``out`` and time it, its size and its load."""
    start = time.perf_counter()
    metrics = write_report(journal, BINANCE_SPOT_BTCUSDT, out)
    written = time.perf_counter() - start
    page = out / "report.html"
    result: dict[str, Any] = {"samples": metrics["samples"], "fills": metrics["fills"],
                              "write_s": round(written, 2),
                              "page_bytes": page.stat().st_size}
    if CHROMIUM.exists():
        with tempfile.TemporaryDirectory() as profile:
            start = time.perf_counter()
            proc = subprocess.run(
                [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--dump-dom", page.resolve().as_uri()],
                capture_output=True, text=True, timeout=300)
            result["chromium_load_s"] = round(time.perf_counter() - start, 2)
            dom = proc.stdout
            starts = sorted(dom.find(f'id="plot-{name}"') for name in PLOTS)
            ends = [*starts[1:], len(dom)]
            result["plots_drawn"] = sum('class="main-svg"' in dom[a:b]
                                        for a, b in zip(starts, ends, strict=True) if a >= 0)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        base = Path(tmp)
        subprocess.run([sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES),
                        "--state-dir", str(base / "state"), "--json"], check=True,
                       capture_output=True)
        journal = base / "state" / "journal.sqlite"
        bundled = measure(journal, base / "bundled")
        day = base / "day.sqlite"
        shutil.copy(journal, day)
        copies = tile_to_a_day(day)
        long = measure(day, base / "day")
        for name, figures in (("bundled dry run", bundled), (f"a day ({copies} copies)", long)):
            print(orjson.dumps({"journal": name, **figures}).decode())


if __name__ == "__main__":
    main()
