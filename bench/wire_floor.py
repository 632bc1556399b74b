"""Benchmark: the floor of wire-to-wire on this machine (issue #23 item 3). What does a
process that does (almost) no work get, measured exactly as the daemon measures its own
wire-to-wire (:mod:`mmdaemon.wire_latency`), against the same venue stand-in at the
recording's real rate? If that floor's p99 is above the goal (250 us), no asyncio process
reaches it here; if far below, the daemon's own work is what stands in the way.

Run: ``.venv/bin/python bench/wire_floor.py [--lines 12000] [--speed 1] [--work-us N]..
[--poll] [--every 1] [--nice 10] [--skip-daemon]``; prints one JSON object and a table.
Without ``--work-us`` or ``--poll`` it runs floor(work 0), floor(work 60), floor(work 150),
floor(poll), then the daemon (bench/wire.py's lean run) unless ``--skip-daemon``; each a run
of its own, one after the other, on the same slice of the bundled spot recording (12,000
lines: 108.7 s of market, 1,084 depth frames; a default invocation takes about 10 min).

Each floor run: bench/lean_venue.py plays the slice at ``--speed`` (its own process at
``--nice``, as in bench/wire.py), and the **floor client** (``wire_floor.py client``, a
process of its own on uvloop at nice 0, as the daemon) connects

- to the stand-in's order-entry websocket (``/ws-api/v3``) with websockets' asyncio client,
  as the daemon's gateway connects; places one order (``floor-1``) and waits for its answer;
- then to its market data (the streams and URL the daemon's feed asks for:
  :class:`~mmdaemon.feed.websocket.FeedSettings`) with the daemon's own reader,
  :class:`~mmdaemon.feed.stamped_ws.StampedConnection` (``recvmsg`` with ``SO_TIMESTAMPNS``),
  each message handed to it in the callback of the read that completed it
  (:meth:`~mmdaemon.feed.stamped_ws.StampedConnection.hand_off`, as the daemon's feed).

On every ``--every``-th depth frame (default every one: 1,084 orders in the default slice;
the daemon's own order count is in the table beside it) the client, in that read callback,
burns ``--work-us`` us of CPU in pure Python (a loop calibrated at start: iterations of it
per us of thread CPU, warm), then writes one ready-made ``order.cancelReplace`` of
``floor-1`` by ``floor-1`` (built once by the daemon's
:class:`~mmdaemon.venues.binance_orders.QuoteFrames`; the stand-in answers it, forever) the
way the daemon writes an order frame (:meth:`mmdaemon.exchange.binance_requests.
RequestChannel.send`: framed by websockets' protocol, handed to uvloop's transport, which
sends it at once), and records ``time.time_ns()`` just after that write minus the kernel's
receive stamp of the read: the daemon's two points on the same clock (``CLOCK_REALTIME``).
Answers are read by a task, as the daemon's gateway reads them, and counted. Other frames
(trades, bookTicker) are read and dropped. What the daemon does that the floor does not:
decode the frame, update its book, decide a quote, diff orders, sign the request (the
floor's is signed once), journal, log; its feed's consumer runs as a task woken by the read
callback, where the floor writes in the callback itself.

``--poll``: the client's event loop never sleeps in ``epoll_wait``: a callback that
schedules itself again keeps the loop's ready queue non-empty, so each turn polls with a
zero timeout and a frame is read by the turn after its arrival; the read path is otherwise
the same. It burns a whole core for it (its CPU time is in the figures), on a machine
whose two cores the venue, the client and other users share.

The sample is what the daemon's ``wire_to_wire`` is; the figures add p90, the client's
CPU over the run, and ``to_sink_us``: kernel stamp -> the message handed to the sink (the
wake-up, ``epoll``, ``recvmsg`` and websockets' parsing; one more ``time_ns`` read per
message, about 0.05 us, is the floor's whole cost of knowing it). A write that did not go
out at once (the transport's buffer not empty after it) is counted in ``buffered_writes``:
its time would read short; reads whose ancillary data held no kernel stamp in
``userspace_stamps``.

Measured on the 2-core VM (2026-12-07, two default runs, load 1.0-1.3): floor(work 0)
p50 220-222 / p99 374-538 us, of which kernel stamp -> sink is 169-170 / 298-475; busy
polling p50 93-176 / p99 348-368 us; the daemon p50 756-784 / p99 1,653-2,417 us. The
floor alone is above the goal's 250 us at p99: at the real rate every frame finds the
process cold (the same floor at speed 10: p50 66 us, at speed 100: 30 us). An order on
every third depth frame (the daemon's rate) gives the same floor (p50 201 / p99 370 us).
A third default run on the quiet machine (load 0.25 at start): floor(work 0) p50 190 / p99
345 us, floor(poll) p50 72 / p99 249 us, the daemon p50 541 / p99 1,147 us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import shutil
import signal
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, Final

import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import OPEN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import wire
from bench.common import REPO, percentile_us
from bench.latency import KEY, SECRET
from bench.lean_venue import Tape
from mmdaemon.feed.stamped_ws import StampedConnection
from mmdaemon.feed.websocket import FeedSettings
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Side
from mmdaemon.venues.binance_api import Credentials
from mmdaemon.venues.binance_orders import QuoteFrames

CLIENT_ID: Final = "floor-1"  # the one order the client places, then replaces by itself
PRICE_TICKS: Final = 6_000_000  # 60,000.00 USDT: the stand-in checks no price
SIZE_LOTS: Final = 1_000  # 0.00001 BTC
DEPTH: Final = b'{"stream":"btcusdt@depth'  # the start of a depth frame's message
DEFAULT_WORK_US: Final = (0, 60, 150)
CALIBRATION_ITERATIONS: Final = 200_000
END_GRACE_S: Final = 30.0  # after the tape's end, for the client to take its last frames


def burn(iterations: int) -> int:
    """Pure-Python CPU work: ``iterations`` turns of an integer loop (the result, so that
    nothing can drop the loop)."""
    x = 0
    for i in range(iterations):
        x ^= i * 31
    return x


def iterations_per_us() -> float:
    """Turns of :func:`burn` per us of this thread's CPU, warm (the best of five runs)."""
    best = min(_cpu_ns(CALIBRATION_ITERATIONS) for _ in range(5))
    return CALIBRATION_ITERATIONS * 1000 / max(1, best)


def _cpu_ns(iterations: int) -> int:
    start = time.thread_time_ns()
    burn(iterations)
    return time.thread_time_ns() - start


def depth_frames(recording: Path) -> int:
    """How many depth frames the stand-in sends of ``recording`` (its own reading and its
    own test of a depth stream)."""
    tape = Tape.read([recording], None, 1.0)
    return sum(1 for name, frame in zip(tape.stream, tape.wire, strict=True)
               if frame is not None and "@depth" in name)


def order_frames() -> tuple[bytes, bytes]:
    """The ``order.place`` of ``floor-1`` and its ``order.cancelReplace`` by itself, as the
    daemon builds and signs them (the timestamp, the signature: once, at start)."""
    frames = QuoteFrames(BINANCE_SPOT_BTCUSDT, Credentials(KEY, SECRET, 5000))
    now_ms = time.time_ns() // 1_000_000
    return (frames.place(Side.BUY, PRICE_TICKS, SIZE_LOTS, CLIENT_ID, 1, now_ms),
            frames.cancel_replace(CLIENT_ID, Side.BUY, PRICE_TICKS, SIZE_LOTS, 2, now_ms))


class FloorClient:
    """The floor client's state: what it wrote and measured (see the module docstring).
    Times in ns; ``samples`` are wire-to-wire, kernel receive stamp -> after the write."""

    def __init__(self, ws: ClientConnection, replace: bytes, expect: int, every: int,
                 iterations: int, measure_burn: bool) -> None:
        self.ws = ws
        self.replace = replace
        self.expect = expect  # depth frames the tape sends: done after the last
        self.every = every
        self.iterations = iterations
        self.measure_burn = measure_burn
        self.samples = array("q")
        self.to_sink = array("q")  # kernel stamp -> the message in the sink, per sample
        self.burn_cpu_ns = array("q")
        self.messages = self.depth = self.writes = self.buffered_writes = 0
        self.not_open = 0  # depth frames it could not answer: the order socket not open
        self.answers_ok = self.answers_refused = 0
        self.first_refusal: bytes = b""
        self.spins = 0
        self.spinning = False  # --poll: the loop is kept from sleeping
        self.done = asyncio.Event()  # the tape's last depth frame was taken
        self.answered = asyncio.Event()  # as many answers as writes

    def sink(self, stamp_ns: int, payload: bytes) -> bool:
        """A market-data message, in the read's callback: on a chosen depth frame, the
        work, the order frame written, the sample taken. Always takes the message."""
        entered_ns = time.time_ns()
        self.messages += 1
        if not payload.startswith(DEPTH):
            return True
        self.depth += 1
        if self.depth % self.every == 0:
            ws = self.ws
            protocol = ws.protocol
            if protocol.state is OPEN:
                if self.iterations:
                    if self.measure_burn:
                        cpu = time.thread_time_ns()
                        burn(self.iterations)
                        self.burn_cpu_ns.append(time.thread_time_ns() - cpu)
                    else:
                        burn(self.iterations)
                # what RequestChannel.send does with a frame it writes in the caller's step
                protocol.send_text(self.replace)
                for data in protocol.data_to_send():
                    ws.transport.write(data)
                self.samples.append(time.time_ns() - stamp_ns)
                self.to_sink.append(entered_ns - stamp_ns)
                self.writes += 1
                if ws.transport.get_write_buffer_size():
                    self.buffered_writes += 1
            else:
                self.not_open += 1
        if self.depth >= self.expect:
            self.done.set()
        return True

    async def read_answers(self) -> None:
        """Count the stand-in's answers (status 200 or not), as they come, until the
        connection ends."""
        with contextlib.suppress(Exception):
            async for message in self.ws:
                answer = orjson.loads(message)
                if answer.get("status") == 200:
                    self.answers_ok += 1
                else:
                    self.answers_refused += 1
                    self.first_refusal = self.first_refusal or (
                        message if isinstance(message, bytes) else message.encode())
                if self.answers_ok + self.answers_refused >= self.writes and self.done.is_set():
                    self.answered.set()

    def spin(self) -> None:
        """``--poll``: one more turn of the loop without sleeping, while spinning."""
        if self.spinning:
            self.spins += 1
            asyncio.get_running_loop().call_soon(self.spin)


async def run_client(port: int, work_us: int, poll: bool, every: int, expect: int,
                     out: Path) -> None:
    """The floor client against the stand-in on ``port``; its figures to ``out`` (JSON)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    rate = iterations_per_us() if work_us else 0.0
    place, replace = order_frames()
    base = f"ws://127.0.0.1:{port}"
    settings = FeedSettings(ws_url=base, rest_url=f"http://127.0.0.1:{port}",
                            symbol=BINANCE_SPOT_BTCUSDT.symbol)
    async with connect(f"{base}/ws-api/v3", compression=None, max_size=1 << 20,
                       open_timeout=10) as ws:
        await ws.send(place, text=True)
        placed = orjson.loads(await ws.recv())
        if placed.get("status") != 200:
            raise RuntimeError(f"the stand-in refused the floor's order.place: {placed}")
        client = FloorClient(ws, replace, expect, every, round(work_us * rate), work_us > 0)
        reader = asyncio.create_task(client.read_answers())
        conn = await StampedConnection.open(settings.stream_urls[0], open_timeout=10,
                                            max_size=settings.max_message_bytes,
                                            close_timeout=1.0)
        started_ns, cpu0 = time.time_ns(), time.process_time()
        conn.hand_off(client.sink)
        if poll:
            client.spinning = True
            loop.call_soon(client.spin)
        ended = [asyncio.ensure_future(e.wait()) for e in (client.done, stop)]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
        cpu_s, duration_ns = time.process_time() - cpu0, time.time_ns() - started_ns
        client.spinning = False
        await conn.close()
        if client.answers_ok + client.answers_refused < client.writes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await client.answered.wait()
        for task in ended:
            task.cancel()
    await reader
    samples = sorted(client.samples)
    burn_cpu, to_sink = sorted(client.burn_cpu_ns), sorted(client.to_sink)
    figures = {
        "work_us": work_us, "poll": poll, "every": every, "complete": client.done.is_set(),
        "depth_frames_expected": expect, "depth_frames": client.depth,
        "messages": client.messages, "orders": len(samples), "writes": client.writes,
        "not_open": client.not_open, "buffered_writes": client.buffered_writes,
        "answers_ok": client.answers_ok, "answers_refused": client.answers_refused,
        "first_refusal": client.first_refusal.decode(errors="replace"),
        "stamp": conn.stamp_source, "userspace_stamps": conn.userspace_stamps,
        "p50_us": percentile_us(samples, 0.50), "p90_us": percentile_us(samples, 0.90),
        "p99_us": percentile_us(samples, 0.99), "p999_us": percentile_us(samples, 0.999),
        "max_us": percentile_us(samples, 1.0), "min_us": percentile_us(samples, 0.0),
        "to_sink_us": {"p50": percentile_us(to_sink, 0.5), "p90": percentile_us(to_sink, 0.9),
                       "p99": percentile_us(to_sink, 0.99)},
        "duration_ns": duration_ns, "client_cpu_s": round(cpu_s, 3), "spins": client.spins,
        "burn_iterations": client.iterations, "burn_iterations_per_us": round(rate, 2),
        "burn_cpu_us": {"p50": percentile_us(burn_cpu, 0.5),
                        "p99": percentile_us(burn_cpu, 0.99)} if burn_cpu else None,
        "samples_ns": list(client.samples),
    }
    out.write_bytes(orjson.dumps(figures))


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


async def run_floor(tmp: Path, recording: Path, speed: float, nice: int, work_us: int,
                    poll: bool, every: int = 1) -> dict[str, Any]:
    """One floor run: the stand-in (at ``nice``) on ``recording`` at ``speed`` and the
    floor client; the client's figures with the stand-in's (``venue``). Raises
    RuntimeError when the client did not finish or the stand-in did not end cleanly."""
    name = f"floor-w{work_us}{'-poll' if poll else ''}"
    stats_path, out = tmp / f"{name}-lean.json", tmp / f"{name}.json"
    load_start = _loadavg()
    venue = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "bench" / "lean_venue.py"), str(recording),
        "--speed", str(speed), "--stats", str(stats_path), "--nice", str(nice),
        stdout=asyncio.subprocess.PIPE)
    client: asyncio.subprocess.Process | None = None
    try:
        port = (await wire._line(venue, "lean_listening"))["port"]
        client = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "client", "--port", str(port),
            "--work-us", str(work_us), "--every", str(every), "--out", str(out),
            "--expect", str(depth_frames(recording)), *(["--poll"] if poll else []))
        await wire._line(venue, "lean_finished")
        try:
            async with asyncio.timeout(END_GRACE_S):
                await client.wait()
        except TimeoutError:  # it missed a frame: what it has, marked incomplete
            client.send_signal(signal.SIGTERM)
            await client.wait()
        venue.send_signal(signal.SIGTERM)
        await wire._line(venue, "lean_stopped")
    finally:
        for proc in (client, venue):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
    if client.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name}: the floor client exited {client.returncode}")
    figures: dict[str, Any] = orjson.loads(out.read_bytes())
    stats = orjson.loads(stats_path.read_bytes())
    stats.pop("depth_sent_ns")
    stats.pop("requests_ns")
    return {**figures, "venue": stats, "venue_nice": nice,
            "loadavg": {"start": load_start, "end": _loadavg()}}


def variants(work_us: list[int] | None, poll: bool) -> list[tuple[int, bool]]:
    """The floor runs asked for: ``(work us, poll)``; none asked: work 0, 60, 150 and
    poll (with no work)."""
    if not work_us and not poll:
        return [*((w, False) for w in DEFAULT_WORK_US), (0, True)]
    return [*((w, False) for w in work_us or ()), *([(0, True)] if poll else [])]


async def run(speed: float, lines: int, nice: int, runs: list[tuple[int, bool]],
              every: int, daemon: bool, window_ms: float = 50.0) -> dict[str, Any]:
    """Every floor run of ``runs``, then the daemon's lean run unless not ``daemon``."""
    tmp = Path(tempfile.mkdtemp(prefix="mmdaemon-wire-floor-"))
    recording = tmp / "recording.gz"
    wire._slice(lines, recording)
    result: dict[str, Any] = {"lines": lines, "speed": speed, "every": every,
                              "loadavg_start": _loadavg(), "floor": []}
    for work_us, poll in runs:
        floor = await run_floor(tmp, recording, speed, nice, work_us, poll, every)
        floor.pop("samples_ns")
        result["floor"].append(floor)
    if daemon:
        result["daemon"] = await wire.run_lean(tmp, recording, speed, window_ms, nice)
    result["loadavg_end"] = _loadavg()
    result["python"] = platform.python_version()
    shutil.rmtree(tmp)  # kept when a run failed: its error names the logs there
    return result


def measure(lines: int = 12_000) -> dict[str, Any]:
    """``make bench``'s row (bench/all.py): floor(work 0) alone on ``lines`` of the
    recording at its real rate, beside the daemon's own run in bench/wire.py (12,000 lines:
    about 2 minutes)."""
    result: dict[str, Any] = uvloop.run(run(1.0, lines, 10, [(0, False)], 1, False))
    return result


def _row(label: str, count: int, f: dict[str, Any], extra: str) -> str:
    cells = [f"{f[k]:,.0f}" if isinstance(f.get(k), (int, float)) else "-"
             for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
    return f"{label:<22}{count:>7,}" + "".join(f"{c:>9}" for c in cells) + f"  {extra}"


def table(r: dict[str, Any]) -> list[str]:
    rows = [f"{'wire-to-wire (us)':<22}{'orders':>7}{'p50':>9}{'p90':>9}{'p99':>9}"
            f"{'p99.9':>9}{'max':>9}  client CPU; stamp -> sink p50 / p99 us"]
    for f in r["floor"]:
        label = "floor(poll)" if f["poll"] else f"floor(work {f['work_us']})"
        to_sink = f["to_sink_us"]
        rows.append(_row(label, f["orders"], f, f"{f['client_cpu_s']} s; {to_sink['p50']:,.0f}"
                         f" / {to_sink['p99']:,.0f}" + ("" if f["complete"] else " INCOMPLETE")))
    if "daemon" in r:
        w = r["daemon"]["wire_to_wire"]
        rows.append(_row("daemon", w["orders"], w, ""))
    rows.append(f"loadavg at start: {r['loadavg_start']}; at end: {r['loadavg_end']}")
    return rows


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="wire_floor.py client",
                                     description="the floor client (started by the benchmark)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--work-us", type=int, default=0)
    parser.add_argument("--poll", action="store_true")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--expect", type=int, required=True,
                        help="depth frames the stand-in sends")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.every < 1 or args.work_us < 0:
        parser.error("--every must be >= 1 and --work-us >= 0")
    uvloop.run(run_client(args.port, args.work_us, args.poll, args.every, args.expect,
                          args.out))


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--lines", type=int, default=12_000)
    parser.add_argument("--nice", type=int, default=10,
                        help="the stand-in's niceness (0: as the client and the daemon)")
    parser.add_argument("--work-us", type=int, action="append",
                        help="a floor run burning this many us of CPU per order (repeatable)")
    parser.add_argument("--poll", action="store_true", help="a floor run that busy-polls")
    parser.add_argument("--every", type=int, default=1,
                        help="an order on every N-th depth frame")
    parser.add_argument("--skip-daemon", action="store_true",
                        help="the floor runs only, not the daemon's")
    args = parser.parse_args()
    if args.every < 1 or any(w < 0 for w in args.work_us or ()):
        parser.error("--every must be >= 1 and --work-us >= 0")
    result = uvloop.run(run(args.speed, args.lines, args.nice,
                            variants(args.work_us, args.poll), args.every,
                            not args.skip_daemon))
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
