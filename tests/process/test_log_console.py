"""The log's two formats end to end: ``mmdaemon replay`` with its log on a real terminal
(a pseudo-terminal) and on a pipe, with and without ``--log-format``.

On a terminal people read console text (structlog's ConsoleRenderer, coloured, prices and
sizes also in decimals); everywhere else the log stays JSON lines, the interface.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from tests.conftest import REPO
from tests.helpers import DRYRUN, first_lines, run_with_terminal_stderr

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the replay's progress line (mmdaemon.progress), drawn on a terminal between log lines
PROGRESS = re.compile(r"\r *[\d,]+ frames .*?x real time")
# a console line: timestamp, [level], the event name padded into its column, key=values
CONSOLE_LINE = re.compile(r"^\S+Z \[(\w+) *\] (\w+) +(.*)$")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 25 s of market: a few fills at the dry-run config."""
    return first_lines(tmp_path_factory.mktemp("log_console") / "short.gz", 3000)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)  # a developer's setting must not decide the colours here
    return env


def replay(recording: Path, *options: str, terminal: bool) -> tuple[str, str]:
    """``mmdaemon [options] replay RECORDING --config config/dryrun.toml``: (stderr, stdout)
    as text, stderr on a new pseudo-terminal (``terminal``) or on a pipe."""
    args = [sys.executable, "-m", "mmdaemon", *options, "replay", str(recording),
            "--config", str(DRYRUN)]
    if not terminal:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO,
                              env=_env())
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr, proc.stdout
    code, stdout, seen = run_with_terminal_stderr(args, cwd=REPO, env=_env())
    text = seen.decode().replace("\r\n", "\n")
    assert code == 0, text[-3000:]
    # the progress line is not the log's
    return PROGRESS.sub("", text), stdout.decode()


def log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.split("\n") if line.strip()]


def assert_json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line one JSON object with event, level and timestamp, as the log always was;
    fills carry price and size as integers (ticks, lots)."""
    events = [orjson.loads(line) for line in log_lines(stderr)]
    assert events and all(type(e) is dict and {"event", "level", "timestamp"} <= e.keys()
                          for e in events)
    fills = [e for e in events if e["event"] == "fill"]
    assert fills and all(type(e["price"]) is int and type(e["size"]) is int for e in fills)
    assert events[-1]["event"] == "stopped"
    return events


def assert_console_text(stderr: str, coloured: bool) -> None:
    """No JSON line; event names in the renderer's column; decimal prices and sizes next to
    the integers, exactly the instrument's text for them."""
    assert ("\x1b[" in stderr) is coloured
    lines = log_lines(ANSI.sub("", stderr))
    for line in lines:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(line)
    parsed = [CONSOLE_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    events = [(m[1], m[2], m[3]) for m in parsed if m]
    assert [e[1] for e in events[:2]] == ["strategy_loaded", "journal_restored"]
    assert events[-1][1] == "stopped"
    fills = [fields for level, event, fields in events if event == "fill"]
    assert fills and all(level == "info" for level, event, _ in events if event == "fill")
    inst = BINANCE_SPOT_BTCUSDT
    for fields in fills:
        price = re.search(r"\bprice=(-?\d+) \(([-\d.]+)\)", fields)
        size = re.search(r"\bsize=(-?\d+) \(([-\d.]+)\)", fields)
        assert price and size, fields
        assert price[2] == inst.price_str(int(price[1]))  # e.g. 6183774 (61837.74)
        assert size[2] == inst.size_str(int(size[1]))


def test_auto_format_is_console_on_a_terminal_and_json_on_a_pipe(recording: Path) -> None:
    on_terminal, summary = replay(recording, terminal=True)
    assert_console_text(on_terminal, coloured=True)
    assert summary.startswith("dry run of BTCUSDT")  # stdout is not the log's business
    on_pipe, _ = replay(recording, terminal=False)
    events = assert_json_lines(on_pipe)
    # the same run in both: the same events in the same order
    names = [m[2] for m in map(CONSOLE_LINE.match, log_lines(ANSI.sub("", on_terminal))) if m]
    assert names == [e["event"] for e in events]


def test_log_format_json_on_a_terminal_gives_json_lines(recording: Path) -> None:
    stderr, _ = replay(recording, "--log-format", "json", terminal=True)
    assert "\x1b[" not in stderr
    assert_json_lines(stderr)


def test_log_format_console_on_a_pipe_gives_console_text_without_colours(
        recording: Path) -> None:
    stderr, _ = replay(recording, "--log-format", "console", terminal=False)
    assert_console_text(stderr, coloured=False)
