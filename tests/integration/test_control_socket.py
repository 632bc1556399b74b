"""The control socket (mmdaemon/control.py) over a real Unix socket: a client beyond the
connection cap is told the instance is busy, not left to guess it stuck."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.control import (
    MAX_CLIENTS,
    SOCKET_FILE,
    ControlBusy,
    request_status,
    serve_control,
)
from tests.recorder import Recorder


async def test_a_client_beyond_the_cap_is_told_busy_and_answered_once_room_is_free(
        tmp_path: Path) -> None:
    log = Recorder()

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "status": {"instance": "running"}}

    server = await serve_control(tmp_path, answer, log)
    idle: list[socket.socket] = []
    try:
        for _ in range(MAX_CLIENTS):  # connected, never sending: each holds a slot
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(tmp_path / SOCKET_FILE))
            idle.append(sock)
        with pytest.raises(ControlBusy, match="busy"):
            await asyncio.to_thread(request_status, tmp_path)
        assert [e["why"] for e in log.named("control_request_refused")] == [
            "too many connections"]
        for sock in idle:
            sock.close()
        idle.clear()
        # the slots free once the daemon sees the idle clients go: answered again
        for _ in range(200):
            try:
                status = await asyncio.to_thread(request_status, tmp_path)
                break
            except ControlBusy:
                await asyncio.sleep(0.01)
        assert status == {"instance": "running"}
    finally:
        for sock in idle:
            sock.close()
        server.close()
