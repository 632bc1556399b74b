"""Latency models of the simulation: feed, order entry and response, constant or empirical.

Three one-way delays, all in integer ns:

- **feed**: venue event -> our receipt of the market data that shows it. The daemon's view of
  the market lags the venue by this much.
- **entry**: our request sent -> the venue acts on it.
- **response**: the venue acted (ack, reject, cancel, fill) -> our receipt of its report.

Each is a constant or drawn from an empirical distribution (a list of measured samples), by a
seeded generator: the same seed and the same sequence of draws give the same delays, so a
dry run stays deterministic. The file format (``mmdaemon-latency``, version 1) is JSON::

    {"format": "mmdaemon-latency", "version": 1, "source": "...",
     "feed_ns": [...], "entry_ns": [...], "response_ns": [...]}

Each list holds measured one-way delays in ns (integers from 0 to 60 s, at most
:data:`MAX_SAMPLES`; the file at most :data:`MAX_FILE_BYTES`); a kind with an empty or
missing list is not in the file and falls back to the configured constant. ``mmdaemon run
--latency-out FILE`` writes one (see :class:`LatencyRecorder`). Reading and writing the
file is :mod:`mmdaemon.exchange.latency_file`'s; this module only parses and encodes it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from mmdaemon.model import BookUpdate, Trade

FORMAT = "mmdaemon-latency"
VERSION = 1
KINDS = ("feed", "entry", "response")
MAX_SAMPLES = 100_000  # per kind, in a file and in a recorder: flat memory on a long run
MAX_DELAY_NS = 60_000_000_000  # one delay: the bound of the configured constants (60 s)
MAX_PLAUSIBLE_NS = 10 * 1_000_000_000  # a measured delay beyond this: two clocks apart
MAX_FILE_BYTES = 16 * 1024 * 1024  # 3 x 100,000 samples of up to 12 digits, and room


class LatencyFileError(ValueError):
    """A latency file that cannot be used: names the file and what is wrong with it."""


class Latency(Protocol):
    """One delay: :meth:`draw` returns the next one, in ns (>= 0)."""

    def draw(self) -> int: ...


class Constant:
    """The same delay every time (ns)."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        if isinstance(ns, bool) or not isinstance(ns, int) or ns < 0:
            raise ValueError(f"latency: expected an integer >= 0 (ns), got {ns!r}")
        self.ns = ns

    def draw(self) -> int:
        return self.ns

    def __repr__(self) -> str:
        return f"Constant({self.ns} ns)"


class Empirical:
    """Delays drawn uniformly, with replacement, from measured samples (ns), seeded."""

    __slots__ = ("_n", "_rng", "samples")

    def __init__(self, samples: Iterable[int], seed: int) -> None:
        self.samples = sorted(samples)
        if not self.samples:
            raise ValueError("latency: an empirical distribution needs at least one sample")
        self._n = len(self.samples)
        self._rng = random.Random(seed)

    def draw(self) -> int:
        return self.samples[int(self._rng.random() * self._n)]

    def quantile(self, q: float) -> int:
        """The ``q`` quantile of the samples (nearest rank), ns."""
        return self.samples[min(self._n - 1, int(q * self._n))]

    def __repr__(self) -> str:
        return f"Empirical({self._n} samples, median {self.quantile(0.5)} ns)"


@dataclass(frozen=True)
class LatencyModel:
    """The three delays of a simulated venue (see the module docstring)."""

    feed: Latency
    entry: Latency
    response: Latency

    @classmethod
    def constant(cls, feed_ns: int = 0, entry_ns: int = 0, response_ns: int = 0) -> LatencyModel:
        return cls(Constant(feed_ns), Constant(entry_ns), Constant(response_ns))


def model_from(constants_ns: Mapping[str, int], samples: Mapping[str, list[int]],
               seed: int) -> LatencyModel:
    """The model: each kind from ``samples`` if it has them, else its constant.

    Each kind gets its own generator (seeded from ``seed`` and the kind), so adding feed
    samples to a file does not change the entry delays drawn.
    """
    parts: dict[str, Latency] = {}
    for index, kind in enumerate(KINDS):
        if samples.get(kind):
            parts[kind] = Empirical(samples[kind], seed * len(KINDS) + index)
        else:
            parts[kind] = Constant(constants_ns[kind])
    return LatencyModel(parts["feed"], parts["entry"], parts["response"])


def parse_latency_file(body: bytes, path: object) -> dict[str, list[int]]:
    """The samples by kind in ``body``, the contents of the latency file ``path`` (read at
    most :data:`MAX_FILE_BYTES` + 1 bytes of it); :class:`LatencyFileError` says what is
    wrong."""
    if len(body) > MAX_FILE_BYTES:
        raise LatencyFileError(f"latency file {path}: larger than {MAX_FILE_BYTES} bytes: not "
                               f"a latency file (at most {MAX_SAMPLES} samples per kind)")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LatencyFileError(f"latency file {path}: not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise LatencyFileError(
            f"latency file {path}: expected a JSON object with \"format\": \"{FORMAT}\""
        )
    if raw.get("version") != VERSION:
        raise LatencyFileError(
            f"latency file {path}: version {raw.get('version')!r}, this build reads {VERSION}"
        )
    out: dict[str, list[int]] = {}
    for kind in KINDS:
        values = raw.get(f"{kind}_ns", [])
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DELAY_NS
            for v in values
        ):
            raise LatencyFileError(
                f"latency file {path}: {kind}_ns: expected a list of integers from 0 to "
                f"{MAX_DELAY_NS} (ns: up to 60 s, as the configured delays)"
            )
        if len(values) > MAX_SAMPLES:
            raise LatencyFileError(
                f"latency file {path}: {kind}_ns: {len(values)} samples, at most {MAX_SAMPLES}"
            )
        out[kind] = values
    if not any(out.values()):
        raise LatencyFileError(f"latency file {path}: no samples in feed_ns, entry_ns or "
                               "response_ns")
    return out


class LatencyRecorder:
    """Measured delays of a running daemon, kept as a seeded reservoir per kind.

    At most :data:`MAX_SAMPLES` per kind: once full, each new sample replaces a random one
    with the reservoir's probability, so the kept samples stay a uniform sample of the run
    and memory stays flat.
    """

    def __init__(self, source: str, seed: int = 0) -> None:
        self.source = source
        self.samples: dict[str, list[int]] = {kind: [] for kind in KINDS}
        self.seen: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._rng = random.Random(seed)
        self.clocks_apart = 0  # feed events whose venue time is off our clock

    def feed(self, recv_ns: int, events: Iterable[object]) -> int | None:
        """Feed latency samples (receipt ``recv_ns`` - each book update's or trade's venue
        event time, ns) from a live feed on wall time. A value outside
        0..:data:`MAX_PLAUSIBLE_NS` says the two clocks disagree (a venue replaying old
        data, an unsynced host), not how long the data took: it is counted, never kept.
        Returns the first such delay of the run (ns) for the caller to log once, else None."""
        first = None
        for event in events:
            kind = type(event)
            if kind is BookUpdate or kind is Trade:
                exch_ns = event.exch_ns  # type: ignore[attr-defined]
                if not exch_ns:
                    continue
                delay = recv_ns - exch_ns
                if 0 <= delay <= MAX_PLAUSIBLE_NS:
                    self.add("feed", delay)
                else:
                    self.clocks_apart += 1
                    if self.clocks_apart == 1:
                        first = delay
        return first

    def add(self, kind: str, ns: int) -> None:
        """One measured delay of ``kind`` (negative values, from clocks apart, are dropped)."""
        if ns < 0:
            return
        kept = self.samples[kind]
        seen = self.seen[kind] = self.seen[kind] + 1
        if len(kept) < MAX_SAMPLES:
            kept.append(ns)
        else:
            slot = int(self._rng.random() * seen)
            if slot < MAX_SAMPLES:
                kept[slot] = ns

    def round_trip(self, rtt_ns: int) -> None:
        """One order-entry request's round trip: half each way (one clock cannot split it);
        beyond :data:`MAX_PLAUSIBLE_NS` it is two clocks apart, not a measurement."""
        if 0 <= rtt_ns <= MAX_PLAUSIBLE_NS:
            self.add("entry", rtt_ns // 2)
            self.add("response", rtt_ns - rtt_ns // 2)

    def document(self) -> bytes:
        """The latency file's contents: the kept samples, in the file format above."""
        body: dict[str, object] = {"format": FORMAT, "version": VERSION, "source": self.source}
        body.update({f"{kind}_ns": self.samples[kind] for kind in KINDS})
        return orjson.dumps(body)
