"""Seed corpora for the atheris harnesses, built from the real recording and configs.

Each harness calls :func:`prepare` at start: it finds the corpus directory on the command
line (libFuzzer's positional arguments) or uses ``fuzz/corpus/<name>``, and writes the seeds
into it when it is empty, so that the first run starts from real frames rather than from
nothing. Run this file to (re)build every corpus up front::

    .venv/bin/python fuzz/seeds.py            # writes fuzz/corpus/{codec,config,recording}
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SPOT_RECORDING = REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"
CONFIGS = REPO / "config"
CORPUS = Path(__file__).resolve().parent / "corpus"
LINES = 3000  # of the real recording (the snapshot is line 8)


def real_lines(count: int = LINES) -> list[bytes]:
    """The first ``count`` lines ``<recv_ns> <frame>`` of the real spot recording."""
    with gzip.open(SPOT_RECORDING, "rb") as f:
        return [line.rstrip(b"\r\n") for line in itertools.islice(f, count)]


def real_frames(count: int = LINES) -> list[bytes]:
    return [line.partition(b" ")[2] for line in real_lines(count)]


def _small_snapshot(bids: dict[int, int], asks: dict[int, int], last_id: int,
                    depth: int = 10) -> bytes:
    from mmdaemon.model import BINANCE_SPOT_BTCUSDT as inst

    top_bids = sorted(bids.items(), reverse=True)[:depth]
    top_asks = sorted(asks.items())[:depth]
    return orjson.dumps({
        "lastUpdateId": last_id,
        "bids": [[inst.price_str(p), inst.size_str(s)] for p, s in top_bids],
        "asks": [[inst.price_str(p), inst.size_str(s)] for p, s in top_asks],
    })


def codec_seeds() -> list[bytes]:
    """Newline-separated frame sequences: a small snapshot of the reference book at a point
    of the real stream followed by the next real frames (so the diffs apply in sequence),
    plus single frames of every kind."""
    from mmdaemon.market import MarketState
    from mmdaemon.model import BINANCE_SPOT_BTCUSDT
    from mmdaemon.venues.binance import BinanceCodec

    frames = real_frames()
    state = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    seeds: list[bytes] = []
    for i, frame in enumerate(frames):
        state.on_frame(i, frame)
        if state.book.synced and i % 60 == 0 and i + 8 < len(frames):
            snap = _small_snapshot(state.book.bids.levels, state.book.asks.levels,
                                   state.book.last_id)
            seeds.append(b"\n".join([snap, *frames[i + 1 : i + 8]]))
    kinds = {b"depthUpdate": 0, b"bookTicker": 0, b'"trade"': 0}
    for frame in frames:
        for marker, seen in kinds.items():
            if marker in frame and seen < 10 and len(frame) < 4000:
                kinds[marker] += 1
                seeds.append(frame)
    seeds.append(b'{"result":null,"id":1}')
    return seeds


def config_seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CONFIGS.glob("*.toml"))]


def config_dictionary() -> list[bytes]:
    """TOML section and key names of the config, for libFuzzer's ``-dict``."""
    import dataclasses
    import typing

    from mmdaemon.config import Config

    names: set[str] = set()

    def walk(cls: type[object], prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            names.add(f.name)
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                names.add(f"[{prefix}{f.name}]")
                walk(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]

    walk(Config, "")
    extra = ['"', " = ", "\n", "[", "]", "true", "false", "inf", "nan", "1e999999999",
             '"NaN"', '"max"', "\\u0000"]
    return [n.encode() for n in sorted(names) + extra]


def recording_seeds() -> list[bytes]:
    """First byte: how the harness stores the rest (0 plain, 1 gzip, 2 gzip cut short,
    3 two files split at a NUL pair); then recording lines."""
    lines = real_lines(40)
    short = [line for line in lines if len(line) < 400]
    plain = b"\n".join(short[:12]) + b"\n"
    seeds = [b"\x00" + plain, b"\x01" + plain, b"\x02" + plain,
             b"\x03" + b"\n".join(short[:4]) + b"\x00\x00" + b"\n".join(short[4:8])]
    seeds.append(b"\x00" + SPOT_RECORDING.read_bytes()[:2048])  # a real gzip, cut short
    seeds.append(b"\x00" + gzip.compress(plain, mtime=0))  # a whole real gzip, as it is
    seeds.append(b"\x00" + b"123 {}\r\nnot a line\n\n" + b"1" * 30 + b" x\n")
    return seeds


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "codec": codec_seeds,
    "config": config_seeds,
    "recording": recording_seeds,
}
DICTIONARIES: dict[str, Callable[[], list[bytes]]] = {"config": config_dictionary}


def write_corpus(name: str, directory: Path) -> int:
    """Write ``name``'s seeds into ``directory`` (file name: content hash); returns count."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[name]()
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(seeds)


def _dict_entry(token: bytes) -> str:
    escaped = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token
    )
    return f'"{escaped}"'


def prepare(name: str, argv: list[str]) -> list[str]:
    """``argv`` for ``atheris.Setup`` with a seeded corpus directory (and ``-dict``).

    The first positional argument is the corpus directory (libFuzzer's convention); without
    one, ``fuzz/corpus/<name>`` is used. An empty or missing directory is seeded first. A
    file there means inputs to replay (a crash file): the arguments are left alone.
    """
    args = list(argv)
    dirs = [a for a in args[1:] if not a.startswith("-")]
    if dirs:
        corpus = Path(dirs[0])
        if corpus.is_file():  # inputs to replay (a crash file), not a corpus: run as given
            return args
    else:
        corpus = CORPUS / name
        args.append(str(corpus))
    if not corpus.is_dir() or not any(corpus.iterdir()):
        count = write_corpus(name, corpus)
        print(f"seeded {corpus} with {count} inputs", file=sys.stderr)
    if name in DICTIONARIES and not any(a.startswith("-dict=") for a in args):
        dict_path = corpus.with_name(corpus.name + ".dict")
        dict_path.write_text("\n".join(_dict_entry(t) for t in DICTIONARIES[name]()) + "\n")
        args.insert(1, f"-dict={dict_path}")
    return args


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    for harness in SEEDS:
        n = write_corpus(harness, CORPUS / harness)
        print(f"{CORPUS / harness}: {n} seeds")
