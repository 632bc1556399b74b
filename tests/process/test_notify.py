"""systemd notify protocol over a real Unix datagram socket, around a real `mmdaemon run`."""

from __future__ import annotations

import gzip
import itertools
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from mmdaemon.notify import Notifier
from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon, reload_fails_and_a_kill_still_works
from tests.helpers import proc_status, wait_for, write_config


class NotifySocket:
    """The service manager's end: a bound datagram socket collecting (time, message)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def with_line(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, m) for t, m in self.messages if any(
            line.startswith(prefix) for line in m.splitlines())]

    def wait(self, prefix: str, timeout: float = 30.0, after: float = 0.0) -> tuple[float, str]:
        def first() -> tuple[float, str] | None:
            return next(((t, m) for t, m in self.with_line(prefix) if t > after), None)

        return wait_for(first, timeout, f"no {prefix} after {after}: {self.messages[-5:]}")

    def drain(self) -> None:
        """Return once every datagram sent to the socket before this call has been read
        (the socket keeps their order: a marker sent now is read after them)."""
        marker = f"DRAINED={time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(marker.encode(), self.sock.getsockname())
        wait_for(lambda: any(m == marker for _, m in self.messages), 10, "drain marker")


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_to_path_and_abstract_sockets(tmp_path: Path, abstract: bool) -> None:
    address = f"@mmdaemon-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(
        tmp_path / "notify.sock")
    manager = NotifySocket(address)
    try:
        n = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000"})
        assert n.enabled and n.watchdog_interval_s == 1.5
        assert n.ready("ACTIVE") and n.watchdog() and n.reloading() and n.stopping()
        manager.wait("STOPPING=1", timeout=2)
        texts = [m for _, m in manager.messages]
        assert texts[0] == "READY=1\nSTATUS=ACTIVE" and texts[1] == "WATCHDOG=1"
        assert texts[2].startswith("RELOADING=1\nMONOTONIC_USEC=")
        usec = int(texts[2].split("MONOTONIC_USEC=")[1])
        assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 5_000_000
    finally:
        manager.close()
    assert not Notifier({}).enabled and not Notifier({}).ready("x")
    # a watchdog meant for another process is not ours to feed
    assert Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000",
                     "WATCHDOG_PID": "1"}).watchdog_interval_s is None


def start(tmp_path: Path, address: str, overrides: dict[str, dict[str, object]] | None = None,
          watchdog_usec: int = 400_000) -> Daemon:
    config = write_config(tmp_path, {"feed": {"speed": "10"}, **(overrides or {})})
    os.environ["NOTIFY_SOCKET"] = address
    os.environ["WATCHDOG_USEC"] = str(watchdog_usec)
    try:
        return Daemon(config)
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]


def test_ready_watchdog_status_stop_reload_under_a_real_daemon(tmp_path: Path) -> None:
    manager = NotifySocket(str(tmp_path / "notify.sock"))
    d = start(tmp_path, manager.address)
    try:
        ready_at, ready = manager.wait("READY=1")
        # READY only once the book is in sync (and the venue ready): after that log line
        i, _ = d.wait_event("ready")
        synced = [j for j, e in enumerate(d.events) if e.get("event") == "state_changed"
                  and e.get("new") == "ACTIVE"]
        assert synced and synced[0] < i and "STATUS=ACTIVE" in ready

        # WATCHDOG every WATCHDOG_USEC / 2 = 0.2 s, counted over the 2 s after READY (a
        # ping after that window says it is over)
        window_end = ready_at + 2.0
        manager.wait("WATCHDOG=1", after=window_end)
        pings = [t for t, _ in manager.with_line("WATCHDOG=1") if ready_at < t <= window_end]
        gaps = sorted(b - a for a, b in itertools.pairwise(pings))
        assert 6 <= len(pings) <= 14 and 0.1 < gaps[len(gaps) // 2] < 0.35

        # a hung process sends nothing: SIGSTOP it for 1.5 s
        d.signal(signal.SIGSTOP)
        wait_for(lambda: proc_status(d.proc.pid)["State"].startswith("T"), 10,
                 "the daemon stopped")
        manager.drain()  # every ping sent before it stopped has been read
        before = len(manager.with_line("WATCHDOG=1"))
        time.sleep(1.5)  # the hang under test: 1.5 s of real time stopped, not a wait
        manager.drain()
        assert len(manager.with_line("WATCHDOG=1")) == before
        d.signal(signal.SIGCONT)
        manager.wait("WATCHDOG=1", after=time.monotonic(), timeout=5)

        # STATUS follows the state: the kill switch
        before = time.monotonic()
        d.signal(signal.SIGUSR1)
        _, status = manager.wait("STATUS=KILLED", after=before)
        assert "BTCUSDT position=" in status

        # SIGHUP: RELOADING with the monotonic clock, then READY again
        before = time.monotonic()
        d.signal(signal.SIGHUP)
        t_reload, reloading = manager.wait("RELOADING=1", after=before)
        assert "MONOTONIC_USEC=" in reloading
        t_ready, _ = manager.wait("READY=1", after=t_reload - 0.001)
        assert t_ready >= t_reload
        d.wait_event("reloaded")

        before = time.monotonic()
        assert d.stop() == 0
        manager.wait("STOPPING=1", after=before, timeout=5)
    finally:
        if d.proc.poll() is None:
            d.kill()
        manager.close()


def test_abstract_socket_and_a_dead_feed_stops_the_pings(tmp_path: Path) -> None:
    # a recording corrupted half way: the feed task dies with it
    data = bytearray(SPOT_FILES[0].read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    broken = tmp_path / "broken.gz"
    broken.write_bytes(bytes(data))
    with gzip.open(broken, "rb") as f, pytest.raises((OSError, EOFError, Exception)):
        f.read()  # the damage really is there
    address = f"@mmdaemon-test-{os.getpid()}-{time.monotonic_ns()}"
    manager = NotifySocket(address)
    d = start(tmp_path, address, {"feed": {"recordings": [str(broken)], "speed": "max"}},
              watchdog_usec=200_000)
    try:
        manager.wait("READY=1")
        code = d.proc.wait(60)
        ended = time.monotonic()
        assert code == 1  # systemd's Restart=on-failure takes it from here
        last_ping = max((t for t, _ in manager.with_line("WATCHDOG=1")), default=0.0)
        assert last_ping < ended
        manager.drain()  # everything the dead process sent has been read
        assert max((t for t, _ in manager.with_line("WATCHDOG=1")), default=0.0) == last_ping
        manager.wait("STOPPING=1", timeout=2)
    finally:
        if d.proc.poll() is None:
            d.kill()
        manager.close()


def test_a_reload_from_a_fifo_is_refused_and_the_kill_switch_still_works(
        tmp_path: Path) -> None:
    """A FIFO put where the config was (a config tool's process substitution, a named pipe
    nobody writes): before, the SIGHUP's read blocked the event loop until a writer came,
    and the frames, the watchdog pings and a SIGUSR1 kill waited with it."""
    config_path = write_config(tmp_path, {"feed": {"speed": "10"}})
    d = Daemon(config_path)
    try:
        d.wait_event("ready")
        config_path.unlink()
        os.mkfifo(config_path)
        reload_fails_and_a_kill_still_works(
            d, f"{config_path}: cannot read config: not a regular file")
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_reload_applies_refuses_and_survives_bad_files(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, {"feed": {"speed": "10"}})
    d = Daemon(config_path)
    try:
        d.wait_event("ready")
        # a parameter change: applied
        text = config_path.read_text()
        config_path.write_text(text.replace("base_bps = 1.0", "base_bps = 3.0"))
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded")
        # a broken file: the running parameters stay, the daemon goes on
        config_path.write_text("[risk\n")
        d.signal(signal.SIGHUP)
        _, failed = d.wait_event("reload_failed")
        assert "not valid TOML" in failed["error"]
        # an instrument change needs a restart
        config_path.write_text(text.replace('tick_size = "0.01"', 'tick_size = "0.1"'))
        d.signal(signal.SIGHUP)
        i, refused = d.wait_event("reload_refused")
        assert refused["sections"] == ["instrument"]
        # reading deeper than the book keeps sorted needs a restart too (the book is sized
        # for the quoter's depth when the daemon starts)
        config_path.write_text(text.replace('mode = "weighted_mid"',
                                            'mode = "depth_imbalance"\ndepth_levels = 60'))
        d.signal(signal.SIGHUP)
        _, refused = d.wait_event("reload_refused", start=i + 1)
        assert refused["sections"] == ["strategy"] and "depth_levels 60" in refused["reason"]
        assert d.proc.poll() is None
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
