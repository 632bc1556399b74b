"""A dry run that did less than it seems to says so: in ``--json``'s ``warnings`` and at the
end of the summary for people, from the real process; and a recording that holds nothing of
the config's instrument is unusable input (exit 2), like an empty one."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.bad_recordings import messages
from tests.conftest import SPOT_FILES
from tests.helpers import first_lines, gz_lines, rewrite, write_gz

SHORT_LINES = 3000


def replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", "replay", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def test_the_bundled_dry_run_has_nothing_to_warn_about() -> None:
    summary = summary_of(replay(*SPOT_FILES, "--json"))
    assert summary["warnings"] == [] and summary["time_backsteps"] == 0


def test_another_symbols_recording_is_unusable_input(tmp_path: Path) -> None:
    """The config trades BTCUSDT; every frame is ETHUSDT's except the REST snapshot, which
    names no symbol. Replaying it would quote BTCUSDT on ETHUSDT's book."""
    recording = write_gz(tmp_path / "eth.gz",
                         rewrite(gz_lines(SPOT_FILES[0])[:SHORT_LINES], "ETHUSDT"))
    proc = replay(recording, "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    [message] = messages(proc.stderr)
    assert message.startswith(f"mmdaemon replay: {recording}: no frame of BTCUSDT decoded")
    assert "symbol 'ETHUSDT', expected 'BTCUSDT'" in message
    assert message.endswith("check the config's instrument.symbol"), message


def test_a_book_that_never_syncs_is_warned(tmp_path: Path) -> None:
    """No REST snapshot: the diffs are buffered for ever and no quote is decided."""
    lines = [line for line in gz_lines(SPOT_FILES[0])[:SHORT_LINES]
             if b"lastUpdateId" not in line]
    proc = replay(write_gz(tmp_path / "nosnap.gz", lines), "--json")
    summary = summary_of(proc)
    assert summary["quotes"] == 0
    assert summary["warnings"][0].startswith("no quote was decided: the book never synced")
    assert "the run ended HALTED" in summary["warnings"]
    human = replay(tmp_path / "nosnap.gz")
    assert human.stdout.rstrip().endswith("WARNING: the run ended HALTED")


def test_recordings_out_of_order_run_on_a_time_that_never_goes_back(tmp_path: Path) -> None:
    """The same file twice: the second copy is older than the end of the first. The event
    time stays at the latest; the paper venue confirms the final cancels (exit 0)."""
    short = first_lines(tmp_path / "short.gz", SHORT_LINES)
    proc = replay(short, short, "--json")
    summary = summary_of(proc)
    assert summary["time_backsteps"] >= SHORT_LINES - 1
    assert any("older than the frame before them" in w for w in summary["warnings"])
    went_back = [orjson.loads(line) for line in proc.stderr.splitlines()
                 if '"event_time_went_back"' in line]
    assert len(went_back) == 1 and went_back[0]["back_ms"] > 0


def test_malformed_frames_and_gaps_are_warned(tmp_path: Path) -> None:
    lines = gz_lines(SPOT_FILES[0])[:SHORT_LINES]
    diffs = [i for i, line in enumerate(lines) if b"depthUpdate" in line]
    del lines[diffs[100]]  # a diff lost: a sequence gap (the file has one snapshot only)
    lines.insert(50, b"1723161255000000000 {not json")
    summary = summary_of(replay(write_gz(tmp_path / "bad.gz", lines), "--json"))
    warnings = "\n".join(summary["warnings"])
    assert "1 frames or lines did not decode (first: bad JSON" in warnings
    assert "1 sequence gaps" in warnings


def test_a_lobster_pair_without_a_date_is_refused_before_the_run(tmp_path: Path) -> None:
    message, orderbook = tmp_path / "messages.csv", tmp_path / "book.csv"
    message.write_text("34200.0,1,1,100,2238000,1\n")
    orderbook.write_text("2238100,100,2238000,100\n")
    proc = replay("--venue", "lobster", message, orderbook)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = messages(proc.stderr)
    assert line.startswith(f"mmdaemon replay: {message} {orderbook}: ")
    assert "date" in line and "ExceptionGroup" not in proc.stderr


def test_a_plain_text_recording_replays_like_its_gzip(tmp_path: Path) -> None:
    """Recordings may be plain text (README, Data formats); the same frames give the same
    dry run."""
    short = first_lines(tmp_path / "short.gz", SHORT_LINES)
    plain = tmp_path / "short.txt"
    with gzip.open(short, "rb") as f:
        plain.write_bytes(f.read())
    a, b = summary_of(replay(short, "--json")), summary_of(replay(plain, "--json"))
    for s in (a, b):
        for key in ("wall_s", "frames_per_s", "feed"):  # feed: each names its own file
            s.pop(key)
    assert a == b
