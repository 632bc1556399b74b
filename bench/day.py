"""A day of Binance spot data for the benchmark, built from the bundled recording.

Run: ``.venv/bin/python bench/day.py build [--hours 24]`` prints where the day is (building
it the first time); ``bench/day_replay.py`` replays it.

The bundled window (data/binance-spot-btcusdt, two files, 99,574 lines, about 10 m 50 s) is
repeated, each repetition shifted in time and in every id, so the result is one consistent,
gap-free recording that ``mmdaemon verify-book`` accepts:

- times: every receive time (ns) and every event/trade time (``E``, ``T``, ms) by the same
  period ``P``, a whole number of ms: the repetition starts 100 ms after the last line of
  the one before, so the recorder's clock offset (recv - E) is the recording's own;
- depth update ids (``U``, ``u``, the snapshot's ``lastUpdateId``) and the bookTicker's
  ``u`` by ``D`` per repetition, trade ids (``t``) by the trades per repetition, so ids run
  on without a gap or a repeat;
- the book: a repetition's diffs were recorded on the book they start from, not on the book
  the previous repetition ends with. So the repetition begins with one *bridge* diff (ids
  following the last diff's, about 6,100 levels: one piece, as pieces could leave a
  crossed book between them), which sets every level of the ending book to the book the
  window had after its first applied diff: absolute quantities, as Binance's diffs are,
  so the book after the bridge is exactly that one and every later diff applies to the
  book it was recorded on. The snapshot and the lines before the first applied diff are
  played once, in the first repetition.

Why built rather than the sim recorded for a day at high speed: the build is deterministic
(the same bytes every time, a pure function of the bundled files), takes a couple of
minutes instead of hours of two processes on the shared cores, and keeps the real market's
frames (sizes, bursts, the mix of streams); the sim's frames are its own.

The day is written as one gzip file per hour (``day-00.gz`` ... ``day-23.gz``, the hour
boundary by receive time) so a replay's progress can be seen from outside (which file it
has open), into a cache directory outside git: ``$MMDAEMON_BENCH_CACHE`` or
``~/.cache/mmdaemon-bench``, in a folder named by a hash of the inputs (this builder's
:data:`VERSION`, the bundled files' bytes, the hours). ``manifest.json`` is written last:
its presence with the files' sizes is the (cheap) check that the build is complete.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES

VERSION = 1
"""Bumped with any change to what is built: the cache folder's name changes with it."""
NS_PER_MS = 1_000_000
HOUR_NS = 3600 * 1_000_000_000
GAP_NS = 100 * NS_PER_MS
"""Receive-time gap from a repetition's last line to the next one's first."""
GZIP_LEVEL = 6
DEFAULT_CONFIG = REPO / "config" / "dryrun.toml"
_FIELD = re.compile(rb'"(E|T|U|u|t|lastUpdateId)":(\d+)')
# what each numeric field is shifted by: a time in ms, a depth id, a trade id
_KIND = {b"E": 1, b"T": 1, b"U": 2, b"u": 2, b"lastUpdateId": 2, b"t": 3}
_NS, _MS, _ID, _TID = 0, 1, 2, 3

Line = tuple[bytes, tuple[int, ...], tuple[int, ...]]
"""A window line as a template: the %-format of the line, its numbers, each number's kind."""


def cache_root() -> Path:
    """Where built days go: ``$MMDAEMON_BENCH_CACHE`` or ``~/.cache/mmdaemon-bench``."""
    env = os.environ.get("MMDAEMON_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mmdaemon-bench"


def template(recv_ns: int, frame: bytes) -> Line:
    """A line as a %-format with its shiftable numbers taken out (receive time first)."""
    parts = [b"%d "]
    values = [recv_ns]
    kinds = [_NS]
    pos = 0
    for m in _FIELD.finditer(frame):
        parts.append(frame[pos:m.start(2)].replace(b"%", b"%%"))
        parts.append(b"%d")
        values.append(int(m.group(2)))
        kinds.append(_KIND[m.group(1)])
        pos = m.end(2)
    parts.append(frame[pos:].replace(b"%", b"%%") + b"\n")
    return b"".join(parts), tuple(values), tuple(kinds)


def _apply(book: dict[bytes, bytes], levels: list[list[str]]) -> None:
    """Absolute quantities at price levels: ``0`` removes the level."""
    for price, qty in levels:
        if float(qty) == 0.0:
            book.pop(price.encode(), None)
        else:
            book[price.encode()] = qty.encode()


def _bridge_levels(end: dict[bytes, bytes], start: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The levels that turn book side ``end`` into ``start`` (removals as zero quantities)."""
    out = [(p, b"0.00000000") for p in end if p not in start]
    out += [(p, q) for p, q in start.items() if end.get(p) != q]
    return out


@dataclass(frozen=True)
class Window:
    """The bundled window, analysed: the lines as templates and how a repetition joins on."""

    lines: list[Line]
    first_applied: int  # index of the diff the book first applies after the snapshot
    snapshot: int  # index of the REST snapshot line
    last_diff_u: int  # L: the last diff's final id
    max_id: int  # M: the largest depth/bookTicker id
    first_u: int  # the first applied diff's final id
    first_e_ms: int  # and its event time
    trades_after: int  # trades after first_applied: the trade-id period
    bids: list[tuple[bytes, bytes]]  # bridge levels, bids best first
    asks: list[tuple[bytes, bytes]]


def analyse(paths: list[Path]) -> Window:
    """Read the window once: templates, the book at the join, the id and trade periods."""
    from mmdaemon.feed.recording import read_recording
    from mmdaemon.model import Malformed

    lines: list[Line] = []
    bids: dict[bytes, bytes] = {}
    asks: dict[bytes, bytes] = {}
    start: tuple[dict[bytes, bytes], dict[bytes, bytes]] | None = None
    snapshot = first_applied = -1
    last_id = last_u = max_id = first_u = first_e = 0
    trade_ids: list[tuple[int, int]] = []  # (line index, trade id)
    diffs: list[tuple[int, Any]] = []  # (line index, depthUpdate): buffered as for a sync
    for item in read_recording(paths):
        if isinstance(item, Malformed):
            raise SystemExit(f"bundled recording has a malformed line: {item}")
        recv_ns, frame = item
        i = len(lines)
        lines.append(template(recv_ns, frame))
        msg = orjson.loads(frame)
        if "lastUpdateId" in msg:
            if snapshot >= 0:
                raise SystemExit("bundled recording: more than one snapshot")
            snapshot, last_id = i, msg["lastUpdateId"]
            bids = {p.encode(): q.encode() for p, q in msg["bids"]}
            asks = {p.encode(): q.encode() for p, q in msg["asks"]}
            continue
        data, stream = msg["data"], msg["stream"]
        if stream.endswith("@bookTicker"):
            max_id = max(max_id, data["u"])
        elif stream.endswith("@trade"):
            trade_ids.append((i, data["t"]))
        elif data.get("e") == "depthUpdate":
            max_id = max(max_id, data["u"])
            diffs.append((i, data))
    for i, data in diffs:
        if data["u"] <= last_id:
            continue  # before the sync: dropped, as the standard procedure does
        if start is None:
            if not data["U"] <= last_id + 1 <= data["u"]:
                raise SystemExit("bundled recording: no diff straddles the snapshot")
            first_applied, first_u, first_e = i, data["u"], data["E"]
        elif data["U"] != last_u + 1:
            raise SystemExit(f"bundled recording: gap at line {i}")
        _apply(bids, data["b"])
        _apply(asks, data["a"])
        last_u = data["u"]
        if start is None:
            start = dict(bids), dict(asks)
    if start is None:
        raise SystemExit("bundled recording: no snapshot, or no diff after it")
    after = [t for i, t in trade_ids if i > first_applied]
    if after != list(range(after[0], after[0] + len(after))):
        raise SystemExit("bundled recording: trade ids are not contiguous")
    return Window(lines=lines, first_applied=first_applied, snapshot=snapshot,
                  last_diff_u=last_u, max_id=max_id, first_u=first_u, first_e_ms=first_e,
                  trades_after=len(after),
                  bids=sorted(_bridge_levels(bids, start[0]), key=lambda lv: -float(lv[0])),
                  asks=sorted(_bridge_levels(asks, start[1]), key=lambda lv: float(lv[0])))


def _levels_json(levels: list[tuple[bytes, bytes]]) -> bytes:
    return b"[" + b",".join(b'["%s","%s"]' % lv for lv in levels) + b"]"


class _HourWriter:
    """Lines into one gzip file per hour of receive time, deterministic bytes."""

    def __init__(self, folder: Path, start_ns: int, span_ns: int) -> None:
        self.folder, self.start_ns, self.span_ns = folder, start_ns, span_ns
        self.hour = -1
        self.raw: BinaryIO | None = None
        self.gz: gzip.GzipFile | None = None
        self.lines: list[int] = []

    def path(self, hour: int) -> Path:
        return self.folder / f"day-{hour:02d}.gz"

    def _open(self, hour: int) -> None:
        self.close()
        self.raw = self.path(hour).open("wb")
        # no name, time 0 in the header: the same bytes on every build
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw,
                                compresslevel=GZIP_LEVEL, mtime=0)
        self.hour = hour
        self.lines.append(0)

    def write(self, recv_ns: int, data: bytes) -> bool:
        """Write a line; False once the day is over (nothing written)."""
        if recv_ns - self.start_ns >= self.span_ns:
            return False
        hour = (recv_ns - self.start_ns) // HOUR_NS
        if hour != self.hour:
            self._open(hour)
        assert self.gz is not None
        self.gz.write(data)
        self.lines[-1] += 1
        return True

    def close(self) -> None:
        if self.gz is not None and self.raw is not None:
            self.gz.close()
            self.raw.close()
            self.gz = self.raw = None


def write_day(window: Window, folder: Path, span_ns: int) -> list[int]:
    """Write the repeated window into ``folder``, ``span_ns`` of receive time from its
    first line; the number of lines of each hour's file."""
    lines = window.lines
    first_recv = lines[0][1][0]
    join = window.first_applied + 1  # a repetition after the first starts here
    period_ns = lines[-1][1][0] - lines[join][1][0] + GAP_NS
    period_ns = -(-period_ns // NS_PER_MS) * NS_PER_MS  # whole ms: E and T shift with it
    id_period = window.max_id + 1 - window.first_u
    # one diff: cut in pieces, the book between them could cross (new bids, old asks)
    bridge = (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":%d,'
              b'"s":"BTCUSDT","U":%d,"u":%d,"b":' + _levels_json(window.bids).replace(b"%", b"%%")
              + b',"a":' + _levels_json(window.asks).replace(b"%", b"%%") + b"}}\n")
    body = [line for i, line in enumerate(lines) if i >= join and i != window.snapshot]
    out = _HourWriter(folder, first_recv, span_ns)
    rep = 0
    try:
        while True:
            if rep == 0:
                todo = lines
            else:
                recv = lines[-1][1][0] + (rep - 1) * period_ns + GAP_NS // 2
                e_ms = window.first_e_ms + rep * period_ns // NS_PER_MS
                # ids on from the previous repetition's last diff, up to where its first
                # applied diff is in this one: the next diff follows on
                first = window.last_diff_u + (rep - 1) * id_period + 1
                if not out.write(recv, b"%d " % recv + bridge % (
                        e_ms, first, window.first_u + rep * id_period)):
                    return out.lines
                todo = body
            offsets = (rep * period_ns, rep * period_ns // NS_PER_MS, rep * id_period,
                       rep * window.trades_after)
            for fmt, values, kinds in todo:
                recv = values[0] + offsets[0]
                data = fmt % tuple([v + offsets[k] for v, k in zip(values, kinds, strict=True)])
                if not out.write(recv, data):
                    return out.lines
            rep += 1
    finally:
        out.close()


def _key(paths: list[Path], hours: int) -> str:
    digest = hashlib.sha256(f"day v{VERSION} hours={hours} gzip={GZIP_LEVEL}".encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def day_files(hours: int = 24, root: Path | None = None, sources: list[Path] = SPOT_FILES,
              quiet: bool = False) -> tuple[list[Path], dict[str, Any]]:
    """The day's files (built now if no complete build is cached) and its manifest."""
    folder = (root or cache_root()) / f"day-{_key(sources, hours)}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = orjson.loads(manifest_path.read_bytes())
        files = [folder / f["name"] for f in manifest["files"]]
        if all(p.exists() and p.stat().st_size == f["bytes"]
               for p, f in zip(files, manifest["files"], strict=True)):
            return files, manifest
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("day-*.gz"):
        old.unlink()
    started = time.perf_counter()
    window = analyse(sources)
    counts = write_day(window, folder, hours * HOUR_NS)
    files = [folder / f"day-{h:02d}.gz" for h in range(len(counts))]
    build_s = round(time.perf_counter() - started, 1)
    manifest = {"version": VERSION, "hours": hours, "build_s": build_s,
                "lines": sum(counts), "bytes": sum(p.stat().st_size for p in files),
                "files": [{"name": p.name, "lines": n, "bytes": p.stat().st_size}
                          for p, n in zip(files, counts, strict=True)]}
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    tmp.replace(manifest_path)  # last: its presence says the build is complete
    if not quiet:
        print(f"built {len(files)} files, {manifest['lines']:,} lines, "
              f"{manifest['bytes'] / 2**20:.0f} MiB in {manifest['build_s']} s", file=sys.stderr)
    return files, manifest


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_hour(pid: int, names: dict[str, int]) -> int:
    """The hour whose file the process has open, -1 if none."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            hour = names.get(os.path.basename(target))
            if hour is not None:
                return hour
    except OSError:
        pass
    return -1


def measure_replay(files: list[Path], manifest: dict[str, Any], config: Path,
                   poll_s: float = 0.05) -> dict[str, Any]:
    """The real ``mmdaemon replay FILES --json`` on the day, watched from outside: per hour
    of the recording (the file it has open), the wall and CPU time, frames/s, and the
    process's VmRSS and VmHWM (peak) when it moved on to the next hour."""
    import subprocess
    import tempfile

    names = {p.name: h for h, p in enumerate(files)}
    counts = [f["lines"] for f in manifest["files"]]
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "mmdaemon", "replay", *map(str, files), "--config",
                 str(config), "--json", "--state-dir", str(Path(tmp) / "state")],
                stdout=out, stderr=err)
            hours: list[dict[str, Any]] = []
            hour, mark, cpu_mark = -1, started, 0.0
            status: dict[str, int] = {}
            while proc.poll() is None:
                now_hour = _open_hour(proc.pid, names)
                try:
                    status = _proc_status(proc.pid) or status  # a zombie has none
                    cpu = _cpu_s(proc.pid)
                except OSError:
                    break
                now = time.perf_counter()
                done = now_hour < 0 <= hour < len(files)  # the last file closed: its hour is over
                if now_hour > hour or done:
                    if hour >= 0:
                        wall, used = now - mark, max(cpu - cpu_mark, 1e-9)
                        hours.append({"hour": hour, "wall_s": round(wall, 2),
                                      "cpu_s": round(cpu - cpu_mark, 2),
                                      "frames_per_s": round(counts[hour] / wall),
                                      "frames_per_cpu_s": round(counts[hour] / used),
                                      "rss_mib": round(status["VmRSS"] / 1024, 1),
                                      "hwm_mib": round(status["VmHWM"] / 1024, 1)})
                    else:
                        startup_s = now - started
                    hour, mark, cpu_mark = (len(files), now, cpu) if done else (now_hour, now, cpu)
                time.sleep(poll_s)
            code = proc.wait()
            total = time.perf_counter() - started
        summary = orjson.loads(out_path.read_bytes() or b"{}")
        log_bytes = err_path.stat().st_size
    if code != 0:
        raise SystemExit(f"mmdaemon replay exited {code}: see its log")
    if len(hours) != len(files):
        raise SystemExit(f"saw {len(hours)} of {len(files)} hours: poll faster")
    first, last = hours[0], hours[-1]
    return {"wall_s": round(total, 1), "startup_s": round(startup_s, 2),
            "tail_s": round(time.perf_counter() - mark, 2), "log_bytes": log_bytes,
            "final_hwm_mib": round(status.get("VmHWM", 0) / 1024, 1),
            "hwm_growth_pct": round(100 * (last["hwm_mib"] / first["hwm_mib"] - 1), 1),
            "rate_last_vs_first": round(last["frames_per_cpu_s"] / first["frames_per_cpu_s"], 3),
            "hours": hours, "summary": summary}


def table(result: dict[str, Any]) -> list[str]:
    """The per-hour figures as lines of text."""
    rows = ["hour  wall s  cpu s  frames/s  frames/cpu-s  VmRSS MiB  VmHWM MiB"]
    for h in result["hours"]:
        rows.append(f"{h['hour']:4d}  {h['wall_s']:6.1f}  {h['cpu_s'] or 0:5.1f}  "
                    f"{h['frames_per_s'] or 0:8d}  {h['frames_per_cpu_s'] or 0:12d}  "
                    f"{h['rss_mib']:9.1f}  {h['hwm_mib']:9.1f}")
    rows.append(f"peak RSS growth first hour -> end: {result['hwm_growth_pct']} %; "
                f"frames/cpu-s last full hour / first: {result['rate_last_vs_first']}; "
                f"{result['wall_s']} s in all (start-up {result['startup_s']} s, after the "
                f"last line {result['tail_s']} s, VmHWM then {result['final_hwm_mib']} MiB), "
                f"log {result['log_bytes']:,} bytes")
    return rows


SWEEP_GRID = """[grid]
"strategy.spread.base_bps" = [1.0, 2.0]
"strategy.skew.linear_coef_bps" = [1.0, 2.0]
"""
"""The sweep's grid on the day: 4 runs (an even number, so 2 workers split it evenly)."""


def _descendants_cpu(root: int, seen: dict[int, float]) -> None:
    """Record in ``seen`` the CPU seconds so far of ``root`` and every process under it
    (the sweep's workers are not all reaped by it, so its rusage would miss them)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    for pid in parents:
        up = pid
        while up > 1 and up != root:
            up = parents.get(up, 0)
        if up == root:
            try:
                seen[pid] = max(seen.get(pid, 0.0), _cpu_s(pid))
            except (OSError, IndexError):
                continue


def measure_sweep(files: list[Path], config: Path, workers: int) -> dict[str, Any]:
    """The real ``mmdaemon sweep`` of :data:`SWEEP_GRID` on ``files`` with ``workers``
    processes: its wall time, and the CPU time (user + system) of it and its workers,
    polled from /proc every 0.2 s (a process's last 0.2 s before it exits may be missed)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(SWEEP_GRID)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        out_path = Path(tmp) / "stdout"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mmdaemon", "sweep", "--config", str(config), "--grid",
                 str(grid), *map(str, files), "--out", str(Path(tmp) / "out"), "--workers",
                 str(workers), "--json"], stdout=out, stderr=subprocess.DEVNULL)
            seen: dict[int, float] = {}
            while proc.poll() is None:
                _descendants_cpu(proc.pid, seen)
                time.sleep(0.2)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"mmdaemon sweep exited {proc.returncode}")
        runs = orjson.loads(out_path.read_bytes())["runs"]
    cpu = sum(seen.values())
    return {"workers": workers, "runs": runs, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "wall_s_per_run": round(wall / runs, 2),
            "cpu_s_per_run": round(cpu / runs, 2), "load_avg_1m_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "replay", "sweep"])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--sweep-hours", type=int, default=1,
                        help="sweep: the first N hours of the day (each worker holds them "
                             "decompressed in memory: about 145 MB an hour)")
    parser.add_argument("--replay-hours", type=int, default=None,
                        help="replay: the first N hours of the day only (default: all)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    args = parser.parse_args()
    files, manifest = day_files(args.hours)
    if args.command == "build":
        print(orjson.dumps({"folder": str(files[0].parent), **manifest}).decode())
        return
    if args.command == "sweep":
        sweeps = [measure_sweep(files[:args.sweep_hours], args.config, n) for n in (1, 2)]
        speedup = round(sweeps[0]["wall_s"] / sweeps[1]["wall_s"], 2)
        print(orjson.dumps({"hours": args.sweep_hours, "sweeps": sweeps,
                            "speedup_2_vs_1": speedup}).decode())
        for sw in sweeps:
            print(f"sweep {sw['runs']} runs on {args.sweep_hours} h, {sw['workers']} worker(s): "
                  f"{sw['wall_s']} s wall ({sw['wall_s_per_run']} s/run), {sw['cpu_s']} s CPU "
                  f"({sw['cpu_s_per_run']} s/run), load before {sw['load_avg_1m_before']}")
        print(f"speed-up 2 workers vs 1: {speedup}x")
        return
    files = files[:args.replay_hours]
    result = measure_replay(files, manifest, args.config)
    summary = result.pop("summary")
    # the summary's headline figures only: the whole of it (its config, every hour's
    # metrics) is the command's own output
    result["summary"] = {k: summary.get(k) for k in ("frames", "fills", "total_pnl",
                                                       "wall_s", "frames_per_s")}
    print(orjson.dumps({"build": {k: manifest[k] for k in ("build_s", "lines", "bytes")},
                        **result}).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
