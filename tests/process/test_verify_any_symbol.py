"""verify-book on recordings of any symbol: the instrument (symbol, price and size grids) comes
from the frames, several symbols need ``--symbol``, and the exit status says whether the
book was verified (0), the check failed or verified nothing (1), or the input is unusable (2).

The other symbols are the real recordings rewritten: the symbol renamed, prices divided by 25
and sizes multiplied by 1,000 (exact decimal arithmetic, every frame alike), so the venue's
top of book still agrees with the rebuilt one, now on other grids than BTCUSDT's.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.bad_recordings import UNUSABLE, messages, write_unusable
from tests.conftest import SPOT_FILES
from tests.helpers import gz_lines, rewrite, write_gz

ETH_SHIFT = -10**9  # update ids of the rewritten symbol, away from BTCUSDT's in one file


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmdaemon", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def eth_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The bundled spot recording as ETHUSDT at other grids, two files like the original."""
    folder = tmp_path_factory.mktemp("ethusdt")
    return [write_gz(folder / f"ethusdt_{p.name[8:]}", rewrite(gz_lines(p), "ETHUSDT"))
            for p in SPOT_FILES]


def test_a_spot_recording_of_another_symbol_at_other_grids_verifies(
    eth_files: list[Path],
) -> None:
    proc = run_cli("verify-book", *map(str, eth_files), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    assert s["ok"] is True and s["reasons"] == []
    assert (s["instrument"], s["tick_size"], s["lot_size"]) == ("ETHUSDT", "0.0001", "0.001")
    # BTCUSDT's verification, point for point, on the rescaled grids
    assert (s["compared"], s["mismatches"], s["malformed"], s["gaps"]) == (1072, 0, 0, 0)
    assert (s["best_bid"], s["best_ask"]) == (24640804, 24640808)  # 61602.01 / 25, ...02 / 25
    human = run_cli("verify-book", *map(str, eth_files))
    assert human.returncode == 0
    assert "verify-book OK: ETHUSDT, tick 0.0001 and lot 0.001" in human.stdout
    assert "final book: 2464.0804 / 2464.0808" in human.stdout


def test_a_usdm_recording_of_another_symbol_at_other_grids_verifies(
    usdm_file: Path, tmp_path: Path,
) -> None:
    path = write_gz(tmp_path / "ethusdt_usdm.gz", rewrite(gz_lines(usdm_file), "ETHUSDT"))
    proc = run_cli("verify-book", str(path), "--venue", "binance-usdm", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    # the futures sizes (0.001 steps) x 1000 are whole numbers: the lot is 1
    assert (s["instrument"], s["tick_size"], s["lot_size"]) == ("ETHUSDT", "0.001", "1")
    assert (s["compared"], s["mismatches"], s["gaps"], s["ok"]) == (629, 0, 0, True)
    assert (s["best_bid"], s["best_ask"]) == (2466388, 2466392)  # 61659.7 / 25, 61659.8 / 25


def test_a_level_finer_than_every_earlier_price_and_size_sets_the_grid(tmp_path: Path) -> None:
    """The grid comes from every frame, not the snapshot: one diff late in the recording
    with a level at 1.005 for 0.123456789 makes the tick 0.001 and the lot 1e-9, and the
    verification is exactly the one of the untouched recording (that level is far below
    the touch)."""
    lines = gz_lines(SPOT_FILES[0])
    depth = [i for i, line in enumerate(lines) if b"@depth" in line[:80]]
    at = depth[-10]
    ns, frame = lines[at].split(b" ", 1)
    msg = orjson.loads(frame)
    msg["data"]["b"].append(["1.00500000", "0.123456789"])
    lines[at] = ns + b" " + orjson.dumps(msg)
    proc = run_cli("verify-book", str(write_gz(tmp_path / "fine.gz", lines)), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    assert (s["tick_size"], s["lot_size"]) == ("0.001", "0.000000001")
    assert (s["malformed"], s["gaps"], s["mismatches"]) == (0, 0, 0)
    untouched = orjson.loads(run_cli("verify-book", str(SPOT_FILES[0]), "--json").stdout)
    assert s["compared"] == untouched["compared"] > 0
    assert s["best_bid"] == untouched["best_bid"] * 10


@pytest.mark.parametrize("keep", [(b"@bookTicker", b"@trade"), (b"@bookTicker",)],
                         ids=["tickers_and_trades", "tickers_only"])
def test_a_recording_without_depth_data_verifies_nothing_and_exits_1(
    tmp_path: Path, keep: tuple[bytes, ...],
) -> None:
    lines = [line for line in gz_lines(SPOT_FILES[0]) if any(k in line[:80] for k in keep)]
    path = write_gz(tmp_path / "nodepth.gz", lines)
    proc = run_cli("verify-book", str(path), "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    assert s["ok"] is False and s["compared"] == 0 and s["tickers"] > 0
    assert any(r.startswith("nothing verified") for r in s["reasons"])
    assert any("never synced" in r for r in s["reasons"])
    human = run_cli("verify-book", str(path))
    assert human.returncode == 1 and "verify-book FAILED" in human.stdout
    assert "FAILED: nothing verified" in human.stdout


def test_an_injected_book_mismatch_fails_with_its_reason(
    eth_files: list[Path], tmp_path: Path,
) -> None:
    lines = gz_lines(eth_files[0])
    diff_ids = {orjson.loads(line.split(b" ", 1)[1])["data"]["u"]
                for line in lines if b"@depth" in line[:80]}
    for i, line in enumerate(lines[5000:], 5000):  # well after the book synced
        if b"@bookTicker" in line[:80]:
            ns, frame = line.split(b" ", 1)
            msg = orjson.loads(frame)
            if msg["data"]["u"] in diff_ids:  # a comparable point: make the venue disagree
                msg["data"]["B"] = f"{Decimal(msg['data']['B']) + Decimal('0.001'):.8f}"
                lines[i] = ns + b" " + orjson.dumps(msg)
                break
    proc = run_cli("verify-book", str(write_gz(tmp_path / "mismatch.gz", lines)), "--json")
    assert proc.returncode == 1
    s = orjson.loads(proc.stdout)
    assert s["ok"] is False and s["mismatches"] == 1
    assert s["reasons"] == [f"1 of {s['compared']} compared bookTickers disagree with the book"]
    assert '"event":"book_mismatch"' in proc.stderr


def test_a_gap_the_book_never_recovers_from_fails(tmp_path: Path) -> None:
    lines = gz_lines(SPOT_FILES[0])
    depth = [i for i, line in enumerate(lines) if b"@depth" in line[:80]]
    cut = depth[len(depth) // 2]  # after sync; no snapshot follows
    path = write_gz(tmp_path / "gap.gz", lines[:cut] + lines[cut + 1 :])
    proc = run_cli("verify-book", str(path), "--json")
    assert proc.returncode == 1
    s = orjson.loads(proc.stdout)
    assert (s["gaps"], s["resyncs"], s["mismatches"], s["ok"]) == (1, 0, 0, False)
    assert s["compared"] > 0  # what was compared before the gap agreed
    assert s["reasons"] == ["the book is not synced at the end: it lost sync (1 gaps, 0 "
                            "crossed) and no later snapshot resynced it"]


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_input_exits_2_with_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.gz"
    write_unusable(case, path)
    proc = run_cli("verify-book", str(path), "--json")
    assert proc.returncode == 2, proc.stdout[:500]
    assert proc.stdout == ""
    [message] = messages(proc.stderr)
    assert message.startswith(f"mmdaemon verify-book: {path}")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("layout", ["one_file_per_symbol", "interleaved_in_one_file"])
def test_several_symbols_need_symbol_and_each_then_verifies(
    eth_files: list[Path], tmp_path: Path, layout: str,
) -> None:
    """Without --symbol: exit 2 naming the symbols. With it: the other symbol's frames are
    skipped (counted, not malformed), its snapshot included, and the result is the one of
    that symbol's file alone. A snapshot names no symbol: in its own file it is that
    file's; interleaved, it is the symbol whose diff ids span it (ETHUSDT's ids are moved)."""
    btc = gz_lines(SPOT_FILES[0])
    if layout == "one_file_per_symbol":
        paths = [SPOT_FILES[0], eth_files[0]]
        eth = gz_lines(eth_files[0])
    else:
        eth = rewrite(btc, "ETHUSDT", id_shift=ETH_SHIFT)
        merged = sorted(btc + eth, key=lambda line: int(line.split(b" ", 1)[0]))
        paths = [write_gz(tmp_path / "two.gz", merged)]
    args = ["verify-book", *map(str, paths), "--json"]
    proc = run_cli(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    [message] = messages(proc.stderr)
    assert "several symbols (BTCUSDT, ETHUSDT)" in message and "--symbol" in message
    alone = orjson.loads(run_cli("verify-book", str(SPOT_FILES[0]), "--json").stdout)
    for symbol, other in (("ETHUSDT", btc), ("BTCUSDT", eth)):
        proc = run_cli(*args, "--symbol", symbol)
        assert proc.returncode == 0, proc.stderr[-2000:]
        s = orjson.loads(proc.stdout)
        assert s["instrument"] == symbol and s["ok"] is True
        assert s["other_symbol_frames"] == len(other) and s["malformed"] == 0
        assert (s["compared"], s["snapshots"], s["depth_updates"]) == (
            alone["compared"], 1, alone["depth_updates"])
    missing = run_cli(*args, "--symbol", "XRPUSDT")
    assert missing.returncode == 2
    [message] = messages(missing.stderr)
    assert "no frame of XRPUSDT (symbols: BTCUSDT, ETHUSDT)" in message


def test_a_value_too_fine_for_any_grid_is_named_as_the_cause(tmp_path: Path) -> None:
    """One trade priced with 18 decimals makes every other price too many ticks to hold: the
    frames do not decode, the check fails, and the reasons say so rather than only that no
    snapshot synced."""
    lines = gz_lines(SPOT_FILES[0])[:3000]
    at = next(i for i, line in enumerate(lines) if b"@trade" in line[:80])
    ns, frame = lines[at].split(b" ", 1)
    msg = orjson.loads(frame)
    msg["data"]["p"] = "61837.630000000000000001"
    lines[at] = ns + b" " + orjson.dumps(msg)
    proc = run_cli("verify-book", str(write_gz(tmp_path / "fine.gz", lines)), "--json")
    assert proc.returncode == 1
    reasons = orjson.loads(proc.stdout)["reasons"]
    assert any("frames did not decode (first: " in r for r in reasons), reasons


def test_symbol_is_taken_in_any_case_and_an_empty_one_refused() -> None:
    lower = run_cli("verify-book", str(SPOT_FILES[0]), "--symbol", "btcusdt", "--json")
    assert lower.returncode == 0 and orjson.loads(lower.stdout)["instrument"] == "BTCUSDT"
    empty = run_cli("verify-book", str(SPOT_FILES[0]), "--symbol", "")
    assert empty.returncode == 2 and "--symbol: expected a symbol" in empty.stderr
