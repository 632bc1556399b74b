"""A real ``redis-server`` (the Debian package) on a free loopback port, for the tests.

No persistence (``--save ''``, ``--appendonly no``) and a private directory: each server
starts empty. :meth:`RedisServer.stop` and :meth:`RedisServer.start` again on the same port
are how the tests take Redis away from running daemons and give it back.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.process.test_record_sim_cli import free_port

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; "
                        "`make test` installs it when run as root)")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert REDIS_SERVER is not None and self.proc is None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.ConnectionError:
                pass  # not listening yet
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None
                raise AssertionError(f"redis-server exited: {self.proc.stderr.read()!r}")
            time.sleep(0.02)  # the poll interval
        raise AssertionError("redis-server did not answer PING")

    def client(self) -> redis.Redis:
        """A synchronous client of this server (the same redis-py the daemon uses)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           socket_connect_timeout=2)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
