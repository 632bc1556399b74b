"""The order log (issue #17 item 7): every order action and venue answer journaled, and
``mmdaemon export`` writing them as the CSV files of the contract (mmdaemon/orderlog.py).

One real replay of the bundled recording (with ``--log-level debug``) feeds most tests; the
export always runs as its own process, on a real journal."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import select
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.journal import Journal
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Ladder, OrderStatus, OrderUpdate, Side
from mmdaemon.orderlog import FILLS_HEADER, ORDERS_HEADER
from mmdaemon.orders.manager import OrderManager
from mmdaemon.records import ACTIONS, ANSWERS, answer_event
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.conftest import REPO, SPOT_FILES
from tests.helpers import first_lines, until, write_config
from tests.integration.test_loopback_e2e import daemon_config, sim_and_config
from tests.recorder import Recorder

TICK, LOT = Decimal("0.01"), Decimal("0.00000001")
TERMINAL = {"canceled", "filled", "expired"}


def mmdaemon(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=timeout)


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@dataclass
class Replayed:
    state: Path
    summary: dict[str, Any]
    log: list[dict[str, Any]]  # the replay's JSON log lines
    orders: list[dict[str, str]]
    fills: list[dict[str, str]]
    orders_text: str
    fills_text: str
    export_stderr: str


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """The bundled recording replayed with the shipped config (its log level: info) and
    ``--log-level debug``, then exported to files by ``mmdaemon export``."""
    tmp = tmp_path_factory.mktemp("orderlog")
    state = tmp / "state"
    proc = mmdaemon("--log-level", "debug", "--log-format", "json", "replay",
                    *map(str, SPOT_FILES), "--config", str(REPO / "config" / "dryrun.toml"),
                    "--state-dir", str(state), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    out = mmdaemon("export", str(state), "--orders", str(tmp / "orders.csv"), "--fills",
                   str(tmp / "fills.csv"))
    assert out.returncode == 0, out.stderr
    orders_text, fills_text = (tmp / "orders.csv").read_text(), (tmp / "fills.csv").read_text()
    orders_header, orders = read_csv(orders_text)
    fills_header, fills = read_csv(fills_text)
    assert tuple(orders_header) == ORDERS_HEADER and tuple(fills_header) == FILLS_HEADER
    return Replayed(state, orjson.loads(proc.stdout), log, orders, fills, orders_text,
                    fills_text, out.stderr)


def test_every_action_sent_is_logged_and_answered_by_the_venue_after_it(
        replayed: Replayed) -> None:
    rows, summary = replayed.orders, replayed.summary
    kinds = Counter(r["event"] for r in rows)
    # every action the summary counts is in the log, and nothing but the contract's events
    assert (kinds["place"], kinds["amend"], kinds["cancel"]) == (
        summary["orders"], summary["amends"], summary["cancels"])
    assert summary["orders"] > 0 and summary["amends"] > 0 and summary["cancels"] > 0
    assert set(kinds) <= ACTIONS | ANSWERS | {"fill"}
    assert kinds["reject"] == summary["rejects"]
    answers_after: dict[str, list[str]] = {}  # order id -> its answers after the last action
    unanswered: list[str] = []
    for row in rows:
        if row["event"] in ACTIONS:
            if answers_after.get(row["order_id"], ["?"]) == []:
                unanswered.append(row["seq"])
            answers_after[row["order_id"]] = []
        elif row["event"] in ANSWERS:
            answers_after.setdefault(row["order_id"], []).append(row["event"])
    unanswered += [oid for oid, after in answers_after.items() if not after]
    assert not unanswered, f"actions with no venue answer after them: {unanswered[:5]}"
    first_answer: dict[str, str] = {}
    for row in rows:
        if row["event"] in ANSWERS:
            first_answer.setdefault(row["order_id"], row["event"])
    places = {r["order_id"] for r in rows if r["event"] == "place"}
    assert {first_answer[oid] for oid in places} <= {"ack", "reject"}
    # the stop cancelled everything: every order placed ended, with a terminal answer
    ended = {r["order_id"] for r in rows if r["event"] in TERMINAL | {"reject"}}
    assert places <= ended
    assert {r["reason"] for r in rows if r["event"] == "cancel"} >= {"shutdown"}


def test_fills_csv_equals_the_journal_fills_and_sums_to_the_summary_volume(
        replayed: Replayed) -> None:
    db = sqlite3.connect(replayed.state / "journal.sqlite")
    journal = db.execute("SELECT exec_key, order_id, side, price, size, fee, maker, ts_ns"
                         " FROM fills ORDER BY seq").fetchall()
    db.close()
    exported = [(f"{r['order_id']}:{r['exec_id']}", int(r["order_id"]),
                 1 if r["side"] == "buy" else -1, int(r["price_ticks"]), int(r["size_lots"]),
                 int(Decimal(r["fee"]) / (TICK * LOT)), int(r["maker"]), int(r["venue_ns"]))
                for r in replayed.fills]
    assert exported == [tuple(r) for r in journal] and len(journal) == replayed.summary["fills"]
    volume = sum(Decimal(r["size"]) for r in replayed.fills)
    assert float(volume) == replayed.summary["volume"] > 0
    # the order log's fill rows are the same executions, received when the fills say
    logged = [(r["order_id"], r["ts_ns"], r["venue_ns"], r["size_lots"])
              for r in replayed.orders if r["event"] == "fill"]
    assert logged == [(r["order_id"], r["ts_ns"], r["venue_ns"], r["size_lots"])
                      for r in replayed.fills]
    # paper fills know the mid before the event that filled them: every one has it
    assert all(r["mid_before"] for r in replayed.fills)


def test_rows_are_in_event_time_order_and_answers_after_the_venue_made_them(
        replayed: Replayed) -> None:
    rows = replayed.orders
    # numbered in the order the daemon saw them; a clean run loses none (no gap)
    assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))
    times = [int(r["ts_ns"]) for r in rows]
    assert times == sorted(times)
    fill_times = [int(r["ts_ns"]) for r in replayed.fills]
    assert fill_times == sorted(fill_times)
    assert all(r["venue_ns"] == "" for r in rows if r["event"] in ACTIONS)
    # an answer reaches the daemon no earlier than the venue gave it; only the stop's last
    # confirmations come after the last market event, when event time no longer moves
    last = times[-1]
    early = [r["seq"] for r in rows if r["venue_ns"] and int(r["ts_ns"]) < last
             and int(r["venue_ns"]) > int(r["ts_ns"])]
    assert not early


def test_answers_due_at_an_events_time_are_stamped_with_that_time(tmp_path: Path) -> None:
    """Market events every 10 ms, the paper venue's entry + feed latency 10 ms: every
    answer is due exactly at the next event's time, where the daemon lets the venue act
    before applying the event; the answer arrives then, not at the event before."""
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:6000]
    start = int(lines[0].split(b" ", 1)[0])
    grid = tmp_path / "grid.gz"
    with gzip.open(grid, "wb") as f:
        f.write(b"".join(b"%d %s\n" % (start + i * 10_000_000, line.split(b" ", 1)[1])
                         for i, line in enumerate(lines)))
    state = tmp_path / "state"
    assert mmdaemon("replay", str(grid), "--state-dir", str(state), "--json").returncode == 0
    proc = mmdaemon("export", str(state), "--orders", "-")
    assert proc.returncode == 0, proc.stderr
    _, rows = read_csv(proc.stdout)
    last = int(rows[-1]["ts_ns"])
    answers = [r for r in rows if r["venue_ns"] and int(r["ts_ns"]) < last]
    assert len(answers) > 50
    early = [r["seq"] for r in answers if int(r["venue_ns"]) > int(r["ts_ns"])]
    assert not early, f"{len(early)} answers stamped before the venue made them"


def test_a_second_run_on_the_same_journal_numbers_its_rows_on(tmp_path: Path) -> None:
    recording = first_lines(tmp_path / "short.gz", 6000)
    state = tmp_path / "state"
    runs = []
    for _ in range(2):
        assert mmdaemon("replay", str(recording), "--state-dir", str(state),
                        "--json").returncode == 0
        proc = mmdaemon("export", str(state), "--orders", "-")
        assert proc.returncode == 0, proc.stderr
        runs.append(read_csv(proc.stdout)[1])
    first, both = runs
    assert len(both) > len(first) and both[: len(first)] == first
    assert [int(r["seq"]) for r in both] == list(range(1, len(both) + 1))


def test_prices_and_sizes_are_the_exact_decimals_of_the_ticks_and_lots(
        replayed: Replayed) -> None:
    for row in replayed.orders + replayed.fills:
        assert Decimal(row["price"]) == int(row["price_ticks"]) * TICK
        assert row["price"] == f"{int(row['price_ticks']) * TICK:.2f}"
        assert row["size"] == f"{int(row['size_lots']) * LOT:.8f}"
    for row in replayed.fills:
        mid = Decimal(row["mid_before"])
        assert (mid * 2 / TICK) == int(mid * 2 / TICK)  # a whole number of half ticks
    assert "instrument recorded in the journal (BTCUSDT, tick 0.01, lot 0.00000001)" in (
        replayed.export_stderr)


def test_log_level_debug_turns_on_order_sent_with_the_event_time(replayed: Replayed) -> None:
    sent = [e for e in replayed.log if e["event"] == "order_sent"]
    assert sent, "the shipped config logs at info: --log-level debug must turn them on"
    assert all("timestamp" in e for e in sent)  # the wall clock, next to the event time
    actions = [(r["event"], int(r["order_id"]), int(r["ts_ns"])) for r in replayed.orders
               if r["event"] in ACTIONS]
    assert [(e["kind"], e["order_id"], e["ts_ns"]) for e in sent] == actions


def test_run_takes_log_level_debug_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # logging.level = "info"
    proc = mmdaemon("--log-level", "debug", "--log-format", "json", "run", "--config",
                    str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    sent = [orjson.loads(line) for line in proc.stdout.splitlines()
            if b"order_sent" in line.encode()]
    assert sent and all(isinstance(e["ts_ns"], int) and e["ts_ns"] > 0 for e in sent)


def test_the_report_writes_and_links_the_same_csv_files(replayed: Replayed,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = mmdaemon("report", str(replayed.state), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "orders.csv").read_text() == replayed.orders_text
    assert (out / "fills.csv").read_text() == replayed.fills_text
    html = (out / "report.html").read_text()
    assert 'href="orders.csv"' in html and 'href="fills.csv"' in html


def test_export_to_stdout(replayed: Replayed) -> None:
    proc = mmdaemon("export", str(replayed.state), "--fills", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == replayed.fills_text


def test_an_old_journal_without_the_order_log_exports_an_empty_orders_file_with_a_warning(
        replayed: Replayed, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(replayed.state / "journal.sqlite", old / "journal.sqlite")
    db = sqlite3.connect(old / "journal.sqlite")
    db.execute("DROP TABLE order_log")  # as a journal of the version before it
    db.commit()
    db.close()
    proc = mmdaemon("export", str(old), "--orders", "-", "--fills", str(tmp_path / "f.csv"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ",".join(ORDERS_HEADER) + "\n"
    assert "warning: journal" in proc.stderr and "has no order log" in proc.stderr
    _, fills = read_csv((tmp_path / "f.csv").read_text())
    assert [r["exec_id"] for r in fills] == [r["exec_id"] for r in replayed.fills]
    assert all(r["ts_ns"] == "" and r["mid_before"] == "" for r in fills)
    # and the daemon still opens it: the table is added, the fills restore
    journal = Journal(old / "journal.sqlite")
    assert len(journal.restore(1).fills) == len(fills)
    journal.close()


def test_a_fill_whose_row_a_crash_lost_is_exported_without_it_and_said_so(
        replayed: Replayed, tmp_path: Path) -> None:
    state = tmp_path / "crashed"
    state.mkdir()
    shutil.copy(replayed.state / "journal.sqlite", state / "journal.sqlite")
    db = sqlite3.connect(state / "journal.sqlite")
    lost = db.execute("SELECT exec_id FROM order_log WHERE event = 'fill' ORDER BY seq DESC"
                      " LIMIT 1").fetchone()[0]
    db.execute("DELETE FROM order_log WHERE seq >= (SELECT seq FROM order_log WHERE exec_id = ?)",
               (lost,))  # the rows of the last batch, as a crash before its write leaves it
    db.commit()
    db.close()
    proc = mmdaemon("export", str(state), "--fills", "-")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: 1 of {len(replayed.fills)} fills without an order-log row" in proc.stderr
    _, fills = read_csv(proc.stdout)
    assert [r["exec_id"] for r in fills] == [r["exec_id"] for r in replayed.fills]
    empty = [r["exec_id"] for r in fills if r["ts_ns"] == "" and r["mid_before"] == ""]
    assert empty == [str(lost)]


def test_export_reads_a_journal_another_process_holds_and_changes_nothing(
        replayed: Replayed, tmp_path: Path) -> None:
    state = tmp_path / "held"
    state.mkdir()
    shutil.copy(replayed.state / "journal.sqlite", state / "journal.sqlite")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from mmdaemon.journal import Journal; "
         f"j = Journal(Path({str(state / 'journal.sqlite')!r})); "
         "print('held', flush=True); sys.stdin.read(); j.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 60)
        assert ready and holder.stdout.readline().strip() == "held"
        before = hashlib.sha256((state / "journal.sqlite").read_bytes()).hexdigest()
        proc = mmdaemon("export", str(state), "--orders", "-")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == replayed.orders_text
        assert hashlib.sha256((state / "journal.sqlite").read_bytes()).hexdigest() == before
        assert holder.poll() is None  # still holding the state directory
    finally:
        holder.communicate("", timeout=30)


def test_a_bad_state_dir_is_refused_with_exit_2_and_says_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "journal.sqlite").write_bytes(b"this is not a database" * 100)
    cases = {
        tmp_path / "nowhere": "no state directory",
        empty: "no journal at",
        garbage: "cannot be read as an SQLite database",
    }
    for state, says in cases.items():
        proc = mmdaemon("export", str(state), "--orders", str(tmp_path / "o.csv"))
        assert proc.returncode == 2 and says in proc.stderr, (state, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.csv").exists()  # nothing half-written
    proc = mmdaemon("export", str(empty))
    assert proc.returncode == 2 and "give --orders FILE and/or --fills FILE" in proc.stderr


def test_a_page_damaged_midway_is_refused_and_nothing_half_written(replayed: Replayed,
                                                                    tmp_path: Path) -> None:
    state = tmp_path / "damaged"
    state.mkdir()
    journal = state / "journal.sqlite"
    source = sqlite3.connect(f"file:{replayed.state / 'journal.sqlite'}?mode=ro", uri=True)
    source.execute("VACUUM INTO ?", (str(journal),))  # a copy with its WAL folded in
    source.close()
    db = sqlite3.connect(journal)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    leaves = db.execute("SELECT pageno FROM dbstat WHERE name = 'order_log' AND"
                        " pagetype = 'leaf' ORDER BY pageno").fetchall()
    db.close()
    with journal.open("r+b") as f:  # the order log's middle leaf page, past its header
        f.seek((leaves[len(leaves) // 2][0] - 1) * page_size + 100)
        f.write(b"\xff" * 2000)
    out = tmp_path / "orders.csv"
    proc = mmdaemon("export", str(state), "--orders", str(out))
    assert proc.returncode == 2 and "malformed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    assert not list(tmp_path.glob(".orders.csv.*"))


def test_a_journal_without_an_instrument_needs_a_matching_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = Journal(state / "journal.sqlite")  # a journal that never recorded one
    journal.record_fill(Fill(5, Side.BUY, 6183763, 1000, 0, True, 10, exec_id=1))
    journal.close()
    proc = mmdaemon("export", str(state), "--fills", "-")
    assert proc.returncode == 2 and "names no instrument" in proc.stderr
    assert "--config FILE" in proc.stderr
    proc = mmdaemon("export", str(state), "--fills", "-", "--config",
                    str(write_config(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert "61837.63,0.00001000" in proc.stdout and "of --config" in proc.stderr


def test_a_config_for_another_instrument_is_refused(replayed: Replayed,
                                                    tmp_path: Path) -> None:
    usdm = write_config(tmp_path, {"instrument": {
        "venue": "binance-usdm", "tick_size": "0.1", "lot_size": "0.001", "size_step_lots": 1,
        "min_size_lots": 1, "min_notional": "100"}})
    proc = mmdaemon("export", str(replayed.state), "--orders", "-", "--config", str(usdm))
    assert proc.returncode == 2 and "was written for BTCUSDT with tick 0.01" in proc.stderr


def bid_quote(price: int, size: int) -> Ladder:
    return Ladder(((price, size),), (), float(price), 0)


def test_pending_states_are_not_answers_and_an_amend_is_acknowledged() -> None:
    manager = OrderManager(1)
    order_id = manager._next_id
    (place,) = manager.decide(bid_quote(100, 2000))
    manager.sent(place)

    def update(status: OrderStatus, price: int, size: int, filled: int) -> OrderUpdate:
        return OrderUpdate(order_id, status, Side.BUY, price, size, filled, "", 1)

    order = manager.orders[order_id]
    assert answer_event(update(OrderStatus.PENDING_NEW, 100, 2000, 0), order) is None
    assert answer_event(update(OrderStatus.NEW, 100, 2000, 0), order) == "ack"
    manager.on_update(update(OrderStatus.NEW, 100, 2000, 0))
    manager.on_update(update(OrderStatus.PARTIALLY_FILLED, 100, 2000, 1000))
    (amend,) = manager.decide(bid_quote(150, 2000))
    manager.sent(amend)
    # a fill while the amend travels is a fill; the amend's acceptance is an ack
    assert answer_event(update(OrderStatus.PARTIALLY_FILLED, 100, 2000, 1500),
                        order) == "partially_filled"
    assert answer_event(update(OrderStatus.PARTIALLY_FILLED, 150, 3000, 1000),
                        order) == "ack"
    assert answer_event(update(OrderStatus.PENDING_CANCEL, 150, 3000, 1000), order) is None
    assert answer_event(update(OrderStatus.REJECTED, 150, 3000, 1000), order) == "reject"


@pytest.mark.parametrize("status", ["EXPIRED", "EXPIRED_IN_MATCH", "CANCELED"])
def test_a_binance_expiry_is_logged_as_expired(status: str) -> None:
    prefix = "mm"
    view = wire.OrderView(42, api.client_order_id(prefix, 7), Side.SELL, 6183763, 1000, 0, 0,
                         status, 1000, -1)
    event = wire.execution_report(BINANCE_SPOT_BTCUSDT, view, execution_type="EXPIRED"
                                 if status != "CANCELED" else "CANCELED", event_ms=2000,
                                 transact_ms=2000, execution_id=9)
    report = parse.parse_event(wire.event_frame(4, event), BINANCE_SPOT_BTCUSDT, prefix)
    assert isinstance(report, api.ExecutionReport)
    expected = "canceled" if status == "CANCELED" else "expired"
    assert answer_event(report.update, None) == expected


async def test_the_binance_gateway_answers_go_into_the_same_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live run (the sim venue over loopback, the real gateway) leaves the same log."""
    recording = first_lines(tmp_path / "short.gz", 12000)  # ~100 s of market
    sim, _, _ = sim_and_config(tmp_path, recording, monkeypatch, speed=10.0)
    async with sim:
        service = Service(load_config(daemon_config(tmp_path, sim)), SystemClock(), Recorder())
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: service.engine.book.synced)  # restored and running by then
            await until(lambda: service.engine.position.fills >= 2, timeout=60)
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    assert service.exit_code == 0
    proc = await asyncio.to_thread(mmdaemon, "export", str(service.state_dir), "--orders",
                                   str(tmp_path / "o.csv"), "--fills", str(tmp_path / "f.csv"))
    assert proc.returncode == 0, proc.stderr
    _, orders = read_csv((tmp_path / "o.csv").read_text())
    _, fills = read_csv((tmp_path / "f.csv").read_text())
    kinds = Counter(r["event"] for r in orders)
    c = service.engine.counters
    assert (kinds["place"], kinds["amend"], kinds["cancel"]) == (c.orders, c.amends, c.cancels)
    assert kinds["ack"] > 0 and kinds["fill"] == len(fills) == service.engine.position.fills
    # Binance's times are milliseconds: the venue's, not ours
    assert all(int(r["venue_ns"]) % 1_000_000 == 0 for r in orders if r["venue_ns"])
    ended = {r["order_id"] for r in orders if r["event"] in TERMINAL | {"reject"}}
    assert {r["order_id"] for r in orders if r["event"] == "place"} <= ended


@pytest.mark.parametrize("speed", ["max", "1"])
def test_a_failed_order_log_write_kills_and_ends_the_run(tmp_path: Path, speed: str) -> None:
    """The journal refuses order-log rows (a trigger on the real file): the batch the
    supervisor writes fails, at full speed as in real time."""
    config = load_config(write_config(tmp_path, {"feed": {"speed": speed}}))
    path = Path(config.state.dir) / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("CREATE TRIGGER full BEFORE INSERT ON order_log "
               "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    db.commit()
    db.close()
    log = Recorder()
    service = Service(config, SystemClock(), log)
    # paced: the whole recording would take 10 minutes; the failure ends it at once
    asyncio.run(asyncio.wait_for(service.run(), 60))
    failed = log.named("journal_write_failed")
    assert [(f["during"], "disk I/O error" in f["error"]) for f in failed] == [
        ("order_log", True)]
    assert log.named("kill_switch_tripped")[0]["reason"] == "journal_write_failed"
    assert service.exit_code == 1 and service.engine.risk.state.value == "KILLED"
    assert service.exchange.open_order_count() == 0
