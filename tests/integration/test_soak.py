"""A short soak: the dry run looped over the real recording keeps memory and every
in-memory history flat (the long run is `bench/soak.py --minutes 20`)."""

from __future__ import annotations

from typing import Any

from bench.soak import soak
from mmdaemon import log
from mmdaemon.config_file import load_config
from mmdaemon.records import MAX_BUFFERED_SAMPLES
from tests.conftest import REPO


def test_looped_replay_keeps_histories_and_memory_flat() -> None:
    log.configure("warning", open("/dev/null", "wb"))  # noqa: SIM115
    lines: list[str] = []
    records: list[dict[str, Any]] = soak(load_config(REPO / "config" / "dryrun.toml"),
                                         loops=4, deadline_s=None, report=lines.append)
    assert len(records) == 4 and all(r["state"] == "ACTIVE" for r in records)
    assert records[-1]["fills"] > records[0]["fills"]  # it kept trading loop after loop
    first, last = records[1], records[-1]  # after warm-up
    # the same recording again: every price and size string is already known
    assert last["price_memo"] == first["price_memo"] and last["size_memo"] == first["size_memo"]
    assert last["codec_buffer"] == 0 and last["open_orders"] <= 2
    assert last["book_levels"] == first["book_levels"]  # the same book at the same point
    # samples wait for the supervisor task; a replay at full speed buffers more of them
    # between its runs, up to the cap at which the feed task writes them itself
    assert last["markouts_pending"] <= 10_000 and last["samples_buffered"] < MAX_BUFFERED_SAMPLES
    assert last["paper_closed_orders"] <= 10_000
    assert last["rss_mb"] - first["rss_mb"] < 8.0  # MiB over two more loops of 99,574 frames
