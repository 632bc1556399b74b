"""Test helpers: config files built from the shipped dry-run config with overrides."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import os
import select
import subprocess
import time
import tomllib
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson

from tests.conftest import REPO, SPOT_FILES

T = TypeVar("T")
DRYRUN = REPO / "config" / "dryrun.toml"
PRICE_DIVISOR = Decimal(25)  # another symbol made of the bundled one: prices / 25,
SIZE_FACTOR = Decimal(1000)  # sizes x 1,000 (see rewrite)
SIM_BALANCES = ("--balance", "BTC=1", "--balance", "USDT=100000")
"""What ``mmdaemon sim``'s accounts start with in tests that trade (none: 0, as at Binance)."""


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (inside a list: an array of tables)
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for config dicts (tables, scalars, lists)."""
    lines = [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix and lines else []) + lines
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


def dryrun_dict() -> dict[str, Any]:
    data = tomllib.loads(DRYRUN.read_text())
    base = DRYRUN.parent
    data["feed"]["recordings"] = [str((base / p).resolve()) for p in data["feed"]["recordings"]]
    return data


def write_config(tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 name: str = "mm.toml", drop: tuple[str, ...] = ()) -> Path:
    """The dry-run config with ``overrides`` merged per section and ``drop`` keys removed
    (``"risk.max_loss"``); state dir under ``tmp_path``."""
    data = dryrun_dict()
    data["state"]["dir"] = str(tmp_path / "state")
    for section, values in (overrides or {}).items():
        node = data
        for part in section.split("."):
            node = node.setdefault(part, {})
        node.update(values)
    for dotted in drop:
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[key]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(to_toml(data))
    return path


def first_lines(dest: Path, count: int) -> Path:
    """The first ``count`` lines of the real spot recording, gzipped at ``dest`` (the
    snapshot is line 8; about 120 lines per second of market)."""
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:count]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(dest, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return dest


def run_with_terminal_stderr(args: list[str], timeout: float = 120.0,
                             **popen: Any) -> tuple[int, bytes, bytes]:
    """Run ``args`` with stderr on a new pseudo-terminal (a real terminal to the child:
    ``isatty()`` is true) and stdout on a pipe; returns (status, stdout, terminal bytes).
    The terminal turns each newline the child writes into CR LF."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=follower, **popen)
    except BaseException:
        os.close(leader)
        raise
    finally:
        os.close(follower)  # the child holds the only one left: its exit ends the reads
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # read as it comes: a full terminal buffer would block the child
            if not select.select([leader], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: no follower side open any more, the child is done
                break
            if not chunk:
                break
            seen.append(chunk)
        assert proc.stdout is not None
        out = proc.stdout.read()
        return proc.wait(30), out, b"".join(seen)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``pred`` until it holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def wait_for(get: Callable[[], T], timeout: float = 30.0, what: str = "the condition") -> T:
    """Call ``get`` until it returns something truthy, and return that; fail the test after
    ``timeout`` seconds. The synchronous :func:`until`, for tests that drive processes."""
    deadline = time.monotonic() + timeout
    while not (value := get()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.01)  # the poll interval
    return value


def proc_status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/PID/status`` (``State``, ``SigPnd``, ``VmHWM``, ...), as text."""
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def traced_growth(run: Callable[[], None], warm: int = 1, passes: int = 3) -> int:
    """Bytes of Python-allocator memory still held after ``passes`` more calls of ``run``
    than after one, once ``warm`` calls filled caches and memos: what a leak adds."""
    for _ in range(warm):
        run()
    gc.collect()  # garbage of earlier tests must not be freed (or made) inside the window
    tracemalloc.start()
    try:
        run()
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(passes):
            run()
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0] - first)
    finally:
        tracemalloc.stop()


def gz_lines(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return f.read().splitlines()


def write_gz(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return path


def rewrite(lines: list[bytes], symbol: str, id_shift: int = 0) -> list[bytes]:
    """``lines`` of a BTCUSDT recording as ``symbol``: stream names and ``s`` renamed, prices
    / 25 and sizes x 1,000 as exact 8-decimal text, update ids moved by ``id_shift``."""
    memo: dict[tuple[str, bool], str] = {}

    def num(text: str, price: bool) -> str:
        out = memo.get((text, price))
        if out is None:
            value = Decimal(text) / PRICE_DIVISOR if price else Decimal(text) * SIZE_FACTOR
            out = memo[(text, price)] = f"{value:.8f}"
            assert Decimal(out) == value  # exact: / 25 adds 2 decimals, x 1000 drops 3
        return out

    out = []
    for line in lines:
        ns, frame = line.split(b" ", 1)
        msg = orjson.loads(frame)
        data: dict[str, Any] = msg.get("data", msg)
        if "stream" in msg:
            msg["stream"] = msg["stream"].replace("btcusdt@", f"{symbol.lower()}@")
        if "s" in data:
            data["s"] = symbol
        for key in ("b", "a", "bids", "asks"):
            if isinstance(data.get(key), list):
                data[key] = [[num(p, True), num(q, False)] for p, q in data[key]]
        for key, price in (("b", True), ("a", True), ("p", True), ("B", False), ("A", False),
                           ("q", False)):
            if isinstance(data.get(key), str):
                data[key] = num(data[key], price)
        for key in ("U", "u", "pu", "lastUpdateId"):
            if key in data:
                data[key] += id_shift
        out.append(ns + b" " + orjson.dumps(msg))
    return out


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    """A secret file as an operator keeps it: ``text`` at ``mode`` (0600: this user only),
    whatever the umask."""
    path.write_text(text)
    path.chmod(mode)
    return path


ACL_XATTR = "system.posix_acl_access"


def acl_bytes(entries: list[tuple[int, int, int]]) -> bytes:
    """A POSIX access ACL as Linux stores it: version 2, then (tag, rwx, uid/gid) entries
    (tags: 0x01 owner, 0x02 named user, 0x04 owning group, 0x08 named group, 0x10 mask,
    0x20 others; the id is 0xffffffff for the unnamed ones)."""
    out = (2).to_bytes(4, "little")
    for tag, perm, ident in sorted(entries):  # the kernel takes them in tag order only
        out += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
    return out


def systemd_credential(directory: Path, name: str, text: str) -> Path:
    """``name`` in ``directory`` as systemd's ``LoadCredential=`` writes it (its
    ``write_credential``): created 0600, chmod 0400, then read access for the service's
    user through an ACL entry, which makes the mode read 0440 (the ACL mask shows as the
    group bits) while nobody else can read it; where the file system keeps no ACLs,
    0400 owned by the service's user. The service's user here is this process's."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o400)
    unnamed = 0xFFFFFFFF
    with contextlib.suppress(OSError):  # no ACLs: systemd falls back to ownership, as here
        os.setxattr(path, ACL_XATTR, acl_bytes([
            (0x01, 4, unnamed), (0x02, 4, os.geteuid()), (0x04, 0, unnamed),
            (0x10, 4, unnamed), (0x20, 0, unnamed)]))
    return path


class SteppedClock:
    """A :class:`~mmdaemon.clock.Clock` for shells with timers: time moves only when the
    test calls :meth:`advance`, and a ``sleep`` returns once time reaches its deadline.
    (:class:`~mmdaemon.clock.ManualClock` moves time itself on every ``sleep``, which suits a
    pacer but lets a watchdog's wait race the events it watches.) Wall time is
    ``wall_offset_ns`` ahead of the monotonic reading."""

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now_ns = start_ns
        self.wall_offset_ns = wall_offset_ns
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    @property
    def deadlines(self) -> list[int]:
        """Monotonic ns at which the tasks asleep now wake, earliest first."""
        return sorted(due for due, _ in self._sleepers)

    async def sleep(self, seconds: float) -> None:
        due = self.now_ns + max(0, round(seconds * 1e9))
        if due <= self.now_ns:
            await asyncio.sleep(0)
            return
        entry = (due, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``; wake every sleeper whose deadline it reached."""
        self.now_ns += round(seconds * 1e9)
        for due, woken in self._sleepers:
            if due <= self.now_ns and not woken.done():
                woken.set_result(None)
