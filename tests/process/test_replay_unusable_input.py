"""``mmdaemon replay`` on input it cannot use: exit 2 and one line naming the file, from the
real process. A gzip cut short (a recorder that crashed between flushes) is not that: it is
replayed up to the cut, which is reported, and the replay succeeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.bad_recordings import UNUSABLE, messages, write_unusable
from tests.conftest import SPOT_FILES


def replay(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", str(path), "--json"],
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("case", UNUSABLE)
def test_replay_of_unusable_input_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, case: str,
) -> None:
    path = tmp_path / f"{case}.gz"
    write_unusable(case, path)
    proc = replay(path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""  # no summary of a run that replayed nothing, or garbage
    [message] = messages(proc.stderr)
    assert message.startswith("mmdaemon replay: ") and str(path) in message
    assert "ExceptionGroup" not in proc.stderr and "Traceback" not in proc.stderr


def test_replay_goes_on_after_a_cut_gzip_tail_but_refuses_a_corrupt_body(
    tmp_path: Path,
) -> None:
    """The rule for a recording that goes bad partway: a gzip stream that merely ends early
    (a recorder killed between two flushes) holds exact frames up to the cut, so the replay
    reports the cut and succeeds; damaged compressed bytes are found only where zlib or the
    CRC notices, after garbage may have been decoded, so nothing of that file is trusted."""
    data = SPOT_FILES[0].read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    proc = replay(cut)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout)
    assert summary["frames"] > 10_000 and summary["malformed"] == 1
    logged = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    cuts = [e for e in logged if e["event"] == "frame_malformed" and "cut short" in e["reason"]]
    assert len(cuts) == 1 and cuts[0]["level"] == "warning"
    assert messages(proc.stderr) == []

    corrupt = tmp_path / "corrupt.gz"
    damaged = bytearray(data)
    damaged[-len(data) // 4] ^= 0xFF  # one byte, three quarters in
    corrupt.write_bytes(bytes(damaged))
    proc = replay(corrupt)
    assert proc.returncode == 2 and proc.stdout == ""
    [message] = messages(proc.stderr)
    assert message.startswith(f"mmdaemon replay: {corrupt}: unreadable after line ")
    assert "ExceptionGroup" not in proc.stderr
