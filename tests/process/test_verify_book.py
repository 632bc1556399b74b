"""verify-book on the real recordings: sync, comparisons, gaps, bad input, exit codes."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate
from mmdaemon.venues.binance import BinanceCodec
from mmdaemon.verify import BookVerifier
from tests.conftest import SPOT_FILES
from tests.helpers import write_gz


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmdaemon", *args], capture_output=True, text=True, timeout=120
    )


def spot_lines() -> list[bytes]:
    lines: list[bytes] = []
    for path in SPOT_FILES:
        with gzip.open(path, "rb") as f:
            lines.extend(f.read().splitlines())
    return lines


def test_spot_recording_verifies_clean() -> None:
    proc = run_cli("verify-book", *map(str, SPOT_FILES), "--json")
    assert proc.returncode == 0, proc.stderr
    s = orjson.loads(proc.stdout)  # exactly one JSON object on stdout
    assert s["frames"] == 99574
    assert (s["gaps"], s["crossed"], s["mismatches"], s["malformed"]) == (0, 0, 0, 0)
    assert s["compared"] == 1072  # every comparable point named in SOURCE.md
    assert s["depth_updates"] == 6493 and s["trades"] == 19904
    assert (s["best_bid"], s["best_ask"]) == (6160201, 6160202)  # 61602.01 / 61602.02


def test_usdm_recording_verifies_clean(usdm_file: Path) -> None:
    proc = run_cli("verify-book", str(usdm_file), "--venue", "binance-usdm", "--json")
    assert proc.returncode == 0, proc.stderr
    s = orjson.loads(proc.stdout)
    assert (s["gaps"], s["crossed"], s["mismatches"]) == (0, 0, 0)
    assert s["compared"] == 629 and s["depth_updates"] == 6547
    assert (s["best_bid"], s["best_ask"]) == (616597, 616598)


def test_human_summary_and_wrong_venue_fails() -> None:
    proc = run_cli("verify-book", str(SPOT_FILES[0]))
    assert proc.returncode == 0 and "verify-book OK" in proc.stdout
    assert "compared 1072" not in proc.stdout  # first file alone has fewer points
    # the spot file read with the futures rules cannot sync (no pu chain): never a silent pass
    bad = run_cli("verify-book", str(SPOT_FILES[0]), "--venue", "binance-usdm", "--json")
    s = orjson.loads(bad.stdout)
    assert s["compared"] == 0 or s["mismatches"] > 0 or s["malformed"] > 0


def _is_depth(line: bytes) -> bool:
    return b"@depth" in line[:80]


def _snapshot_line(recv_ns: int, verifier: BookVerifier) -> bytes:
    """A REST-style snapshot of the verifier's current (correct) book, as the venue sends it."""
    inst = BINANCE_SPOT_BTCUSDT
    book = verifier.market.book
    frame: dict[str, Any] = {
        "lastUpdateId": book.last_id,
        "bids": [[inst.price_str(p), inst.size_str(s)] for p, s in book.bids.top(5000)],
        "asks": [[inst.price_str(p), inst.size_str(s)] for p, s in book.asks.top(5000)],
    }
    return str(recv_ns).encode() + b" " + orjson.dumps(frame)


def test_deleted_frames_cause_a_reported_gap_and_the_book_is_unused_until_resync(
    tmp_path: Path,
) -> None:
    lines = spot_lines()
    depth_idx = [i for i, line in enumerate(lines) if _is_depth(line)]
    cut = depth_idx[1000]  # well after sync
    resync_at = depth_idx[1500]
    # the true book at resync_at, from an untouched replay: the venue's next snapshot
    reference = BookVerifier(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    for item in read_recording(SPOT_FILES):
        assert type(item) is tuple
        reference.on_frame(*item)
        if item[1] == lines[resync_at].split(b" ", 1)[1]:
            snap = _snapshot_line(item[0], reference)
            compared_before_resync = reference.compared
            break
    modified = lines[:cut] + lines[cut + 2 :]  # the diff and whatever follows it
    modified.insert(resync_at - 1, snap)  # right after the diff it reflects

    reports: list[tuple[str, dict[str, Any]]] = []
    v = BookVerifier(
        BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"),
        report=lambda name, **f: reports.append((name, f)),
    )
    synced_trace = []
    for line in modified:
        ns, frame = line.split(b" ", 1)
        v.on_frame(int(ns), frame)
        synced_trace.append(v.market.book.synced)
    s = v.summary()
    assert s["gaps"] == 1 and s["resyncs"] == 1 and s["mismatches"] == 0
    assert [name for name, _ in reports] == ["book_gap", "book_resynced"]
    # unusable from the gap until the snapshot line, usable again after it
    first_sync = synced_trace.index(True)
    gap_at = synced_trace.index(False, first_sync)
    assert gap_at >= cut and all(synced_trace[first_sync:cut])
    assert not any(synced_trace[gap_at : resync_at - 1])
    assert all(synced_trace[resync_at - 1 :])
    # no comparison happened while unsynced: we lost exactly the points in the hole
    full = 1072
    assert 0 < full - s["compared"] <= compared_before_resync
    assert s["best_bid"] == 6160201 and s["synced_at_end"]

    # through the CLI too, without the snapshot: the book stays unusable to the end
    path = write_gz(tmp_path / "gap.gz", lines[:cut] + lines[cut + 1 :])
    proc = run_cli("verify-book", str(path), "--json")
    out = orjson.loads(proc.stdout)
    assert out["gaps"] == 1 and out["resyncs"] == 0 and not out["synced_at_end"]
    assert out["compared"] < full and out["mismatches"] == 0
    assert '"event":"book_gap"' in proc.stderr


def test_malformed_lines_in_a_real_recording_are_counted_logged_and_harmless(
    tmp_path: Path,
) -> None:
    lines = spot_lines()
    depth_line = next(line for line in lines[500:] if _is_depth(line))
    ns = depth_line.split(b" ", 1)[0]
    injected = [
        depth_line[:60],  # truncated line: frame cut mid-JSON
        ns,  # truncated line: no frame at all
        ns + b' {"stream":"btcusdt@kline_1m","data":{"e":"kline"}}',  # unknown stream
        ns + b' {"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,'
        b'"p":"61,800.00","q":"0.1","m":true}}',  # non-numeric price
        ns + b' {"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1.00",'
        b'"B":"-2.0","a":"1.01","A":"1.0"}}',  # negative size
        ns + b" {not json}",  # bad JSON
    ]
    at = lines.index(depth_line)
    path = write_gz(tmp_path / "bad.gz", lines[:at] + injected + lines[at:])
    proc = run_cli("verify-book", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    s = orjson.loads(proc.stdout)
    assert s["malformed"] == 6 and s["gaps"] == 0 and s["mismatches"] == 0
    logged = [orjson.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    reasons = [e["reason"] for e in logged if e["event"] == "frame_malformed"]
    assert len(reasons) == 6
    assert any("bad JSON" in r for r in reasons)
    assert any("not '<recv_ns> <frame>'" in r for r in reasons)
    assert any("unknown stream" in r for r in reasons)
    assert any("'61,800.00'" in r for r in reasons)
    assert any("negative value '-2.0'" in r for r in reasons)
    # the book is what an untouched replay gives
    clean = orjson.loads(run_cli("verify-book", *map(str, SPOT_FILES), "--json").stdout)
    assert (s["best_bid"], s["best_ask"], s["last_update_id"]) == (
        clean["best_bid"],
        clean["best_ask"],
        clean["last_update_id"],
    )
    assert s["compared"] == clean["compared"]


@pytest.mark.parametrize("case", ["missing", "broken_gzip", "empty"])
def test_unusable_input_exits_2(tmp_path: Path, case: str) -> None:
    path = tmp_path / "rec.gz"
    if case == "broken_gzip":
        data = bytearray(SPOT_FILES[0].read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0x5A  # corrupt compressed data in the middle
        path.write_bytes(bytes(data))
    elif case == "empty":
        path.write_bytes(b"")
    proc = run_cli("verify-book", str(path), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert str(path) in proc.stderr or "no frames" in proc.stderr


def test_mismatch_exits_1(tmp_path: Path) -> None:
    lines = spot_lines()[:3000]
    # change the size in one comparable bookTicker: the venue disagrees with our book
    v = BookVerifier(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    comparable: set[int] = set()
    for line in lines:
        ns, frame = line.split(b" ", 1)
        for ev in v.market.on_frame(int(ns), frame):
            if isinstance(ev, BookUpdate) and not ev.snapshot:
                comparable.add(ev.last_id)
    for i, line in enumerate(lines):
        if b"bookTicker" in line[:60]:
            data = orjson.loads(line.split(b" ", 1)[1])["data"]
            if data["u"] in comparable:
                data["B"] = "123.00000000"
                lines[i] = (
                    line.split(b" ", 1)[0]
                    + b" "
                    + orjson.dumps({"stream": "btcusdt@bookTicker", "data": data})
                )
                break
    proc = run_cli("verify-book", str(write_gz(tmp_path / "mm.gz", lines)), "--json")
    assert proc.returncode == 1
    assert orjson.loads(proc.stdout)["mismatches"] == 1
    assert '"event":"book_mismatch"' in proc.stderr


def test_a_recording_cut_short_is_read_up_to_the_cut(tmp_path: Path) -> None:
    data = SPOT_FILES[0].read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])  # a recorder killed mid-file
    proc = run_cli("verify-book", str(path), "--json")
    s = orjson.loads(proc.stdout)
    assert proc.returncode == 0 and s["frames"] > 10000 and s["malformed"] == 1
    assert "cut short" in proc.stderr
