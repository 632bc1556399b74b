"""Stoikov's micro-price: the fit of its adjustment table from top-of-book states, and the
table's file format.

After S. Stoikov, "The micro-price: a high-frequency estimator of future prices",
Quantitative Finance 18(12), 2018. The micro-price is the expected mid in the limit of
many mid changes, ``P = M + g*(I, S)``, with ``I = B / (A + B)`` the top-of-book imbalance
(B, A the best bid and ask sizes) and ``S`` the spread. Here, in integer units:

- **state** ``x = (s, b)``: ``s`` the spread in ticks, 1..k (``spreads``); ``b`` the bucket
  of I among ``n`` (``buckets``, odd) equal-width buckets (:func:`imbalance_bucket`). An
  observation with a wider spread (or a crossed or locked book, or an empty side) is
  outside the fitted states: it is skipped, and the transition runs from the last state
  inside to the next one, with the mid change over the excursion (the chain watched only
  while it is inside is still a Markov chain).
- **sampling (the paper's dt)**: one step per change of the discretised state (x and the
  mid). A step that changes neither the bucket, the spread nor the mid (a size change
  within its bucket) is a self-loop; dropping self-loops leaves every quantity below
  exactly as it was (with ``D`` their probabilities, ``I - Q`` becomes ``(I - D)(I - Q)``
  and ``R``, ``T`` become ``(I - D)R``, ``(I - D)T``, and the factor cancels, in the
  counts too), so they only inflate the sample counts and are not counted.
- **mid changes**: ``dM`` in half ticks (the mid of a one-tick spread sits on a half tick).
  As in the paper, only steps with ``|dM| <= max_move_ticks`` (default 1 tick: the set
  K = {-1, -1/2, 0, 1/2, 1} ticks) are kept; larger jumps are dropped and counted.
- **estimates** from the step counts out of each state x:
  ``Q[x][y] = P(dM = 0, next = y | x)``, ``T[x][y] = P(dM != 0, next = y | x)``,
  ``R1[x] = sum_k k P(dM = k | x)`` (ticks);
  ``G1 = (1 - Q)^-1 R1`` is the expected mid change at the first mid change, and
  ``B = (1 - Q)^-1 T`` the distribution of the state right after it.
- **g***: ``g^1 = G1``, ``g^(i+1) = G1 + B g^i``, iterated until no entry moves by more than
  :data:`TOLERANCE_TICKS` (converged) or for :data:`MAX_ITERATIONS` steps at most.
- **symmetrised** as the paper does: every step is counted twice, as observed and mirrored
  (``b -> n - 1 - b``, ``dM -> -dM``), so ``g*(s, b) = -g*(s, n - 1 - b)`` exactly, the middle
  bucket (no imbalance) gives 0, and ``B* G1 = 0``, the paper's condition for the limit to
  exist.

A state with no step out of it or its mirror has no estimate (``None``): the fair value
falls back to the weighted mid there. Pure: the states come from the caller (the command
``mmdaemon fit-microprice`` reads recordings); :func:`parse_table` checks a table's bytes,
which the config loader reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

TABLE_FORMAT = "mmdaemon-stoikov-microprice"
TABLE_VERSION = 1
"""The table file: ``format`` names it, ``version`` is bumped when its meaning changes; a
table of another version is refused, not guessed at."""

MAX_TABLE_BYTES = 1 << 20
"""A table is a few KB (21 x 10 states at most); a larger file is not one."""

MAX_BUCKETS = 21
MAX_SPREADS = 10
MAX_ITERATIONS = 1000
TOLERANCE_TICKS = 1e-10
FEW_SAMPLES = 100
"""Below this many steps out of a state (as observed, before mirroring) the fit notes it:
its g rests on a handful of mid changes."""

Top = tuple[int, int, int, int]
"""One observation: best bid, best ask (ticks), bid size, ask size (lots)."""


class TableError(ValueError):
    """A table file that cannot be used; the message says what is wrong with it."""


def imbalance_bucket(bid_size: int, ask_size: int, buckets: int) -> int:
    """The bucket of I = B / (B + A) among ``buckets`` (odd) equal-width buckets of [0, 1],
    0 = all on the ask, ``buckets - 1`` = all on the bid. Exact in integers and symmetric:
    ``imbalance_bucket(a, b, n) == n - 1 - imbalance_bucket(b, a, n)`` for any sizes > 0,
    a boundary value going to the bucket nearer the middle; B == A is the middle bucket."""
    total = bid_size + ask_size
    if bid_size < ask_size:
        return buckets * bid_size // total
    if bid_size > ask_size:
        return buckets - 1 - buckets * ask_size // total
    return buckets // 2


def check_grid(buckets: object, spreads: object) -> None:
    """``buckets`` must be odd in 1..21 (an odd count has a middle bucket, where I = 1/2
    belongs, so the mirror maps the buckets onto each other), ``spreads`` in 1..10."""
    if (isinstance(buckets, bool) or not isinstance(buckets, int) or buckets % 2 == 0
            or not 1 <= buckets <= MAX_BUCKETS):
        raise ValueError(f"buckets: expected an odd integer from 1 to {MAX_BUCKETS} (an odd "
                         f"count has a middle bucket for I = 1/2), got {buckets!r}")
    if isinstance(spreads, bool) or not isinstance(spreads, int) or not (
            1 <= spreads <= MAX_SPREADS):
        raise ValueError(f"spreads: expected an integer from 1 to {MAX_SPREADS} (spread "
                         f"states of 1..k ticks), got {spreads!r}")


@dataclass(frozen=True, slots=True)
class Fit:
    """What :func:`fit` found. States are flat, index ``(spread - 1) * buckets + bucket``.

    ``g_ticks``: g* per state in ticks (None: no step out of the state or its mirror).
    ``samples``: steps out of each state as observed (before mirroring).
    ``observations``: tops given; ``outside``: those outside the fitted states;
    ``steps``: steps counted (per direction, before mirroring); ``self_loops``: steps that
    changed nothing discrete; ``large_moves``: steps dropped for ``|dM| > max_move_ticks``;
    ``iterations``: iterations of ``g^(i+1) = G1 + B g^i``; ``converged``: the last moved
    no entry by more than :data:`TOLERANCE_TICKS`.
    """

    buckets: int
    spreads: int
    max_move_ticks: int
    g_ticks: tuple[float | None, ...]
    samples: tuple[int, ...]
    observations: int
    outside: int
    steps: int
    self_loops: int
    large_moves: int
    iterations: int
    converged: bool

    def g(self, spread: int, bucket: int) -> float | None:
        """g* in ticks of spread ``spread`` (ticks) and imbalance bucket ``bucket``."""
        return self.g_ticks[(spread - 1) * self.buckets + bucket]


def fit(tops: Iterable[Top | None], buckets: int = 5, spreads: int = 2,
        max_move_ticks: int = 1) -> Fit:
    """Fit g* on ``tops``, observations in time order (see the module docstring); a None
    breaks the chain (no step runs across it: a new recording, a gap). Raises ValueError on
    a bad grid, or when the chain has a set of states it never leaves without a mid change
    (``1 - Q`` is singular: more data or fewer states)."""
    check_grid(buckets, spreads)
    if isinstance(max_move_ticks, bool) or not isinstance(max_move_ticks, int) or (
            max_move_ticks < 1):
        raise ValueError(f"max_move_ticks: expected an integer >= 1, got {max_move_ticks!r}")
    size = buckets * spreads
    max_move = 2 * max_move_ticks  # half ticks
    # counts[x][(y, dM)]: steps out of x into y with mid change dM (half ticks), mirrored in
    counts: list[dict[tuple[int, int], int]] = [{} for _ in range(size)]
    samples = [0] * size
    observations = outside = steps = self_loops = large = 0
    last: tuple[int, int] | None = None  # (state, mid in half ticks) of the last inside top
    for top in tops:
        if top is None:
            last = None
            continue
        observations += 1
        bid, ask, bid_size, ask_size = top
        spread = ask - bid
        if not 0 < spread <= spreads or bid_size <= 0 or ask_size <= 0:
            outside += 1
            continue
        state = (spread - 1) * buckets + imbalance_bucket(bid_size, ask_size, buckets)
        mid = bid + ask
        if last is not None:
            before, before_mid = last
            move = mid - before_mid
            if move == 0 and state == before:
                self_loops += 1
            elif abs(move) > max_move:
                large += 1
            else:
                steps += 1
                samples[before] += 1
                _count(counts[before], state, move)
                _count(counts[_mirror(before, buckets)], _mirror(state, buckets), -move)
        last = state, mid
    g, iterations, converged = _solve_g(counts, size)
    totals = [sum(row.values()) for row in counts]
    return Fit(buckets, spreads, max_move_ticks,
               tuple(g[x] if totals[x] else None for x in range(size)), tuple(samples),
               observations, outside, steps, self_loops, large, iterations, converged)


def _count(row: dict[tuple[int, int], int], state: int, move: int) -> None:
    key = (state, move)
    row[key] = row.get(key, 0) + 1


def _mirror(state: int, buckets: int) -> int:
    """The state with the imbalance mirrored (I -> 1 - I), the spread kept."""
    spread_row, bucket = divmod(state, buckets)
    return spread_row * buckets + buckets - 1 - bucket


def _solve_g(counts: list[dict[tuple[int, int], int]], size: int
             ) -> tuple[list[float], int, bool]:
    """g* in ticks from the step counts; (g, iterations, converged)."""
    # I - Q, and the right-hand sides [R1 | T] of (I - Q) [G1 | B] = [R1 | T]
    lhs = [[float(x == y) for y in range(size)] for x in range(size)]
    rhs = [[0.0] * (size + 1) for _ in range(size)]
    for x, row in enumerate(counts):
        total = sum(row.values())
        for (y, move), n in row.items():
            p = n / total
            if move == 0:
                lhs[x][y] -= p
            else:
                rhs[x][0] += p * move / 2  # half ticks -> ticks
                rhs[x][1 + y] += p
    solved = _gauss(lhs, rhs)
    g1 = [row[0] for row in solved]
    after = [row[1:] for row in solved]  # B
    g = g1
    for iteration in range(1, MAX_ITERATIONS + 1):
        new = [g1[x] + sum(b * gy for b, gy in zip(after[x], g, strict=True) if b)
               for x in range(size)]
        moved = max((abs(a - b) for a, b in zip(new, g, strict=True)), default=0.0)
        g = new
        if moved <= TOLERANCE_TICKS:
            return g, iteration, True
    return g, MAX_ITERATIONS, False


def _gauss(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """X with ``a X = b`` (Gauss-Jordan with partial pivoting; ``a`` and ``b`` are
    consumed). Raises ValueError naming the states when ``a`` is singular."""
    size = len(a)
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            raise ValueError(f"the chain never leaves state {col} (and the states it reaches "
                             f"without a mid change) with a mid change: 1 - Q is singular; "
                             f"fit on more data or on fewer states")
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        inverse = 1.0 / a[col][col]
        a[col] = [v * inverse for v in a[col]]
        b[col] = [v * inverse for v in b[col]]
        for r in range(size):
            factor = a[r][col]
            if r != col and factor:
                a[r] = [v - factor * p for v, p in zip(a[r], a[col], strict=True)]
                b[r] = [v - factor * p for v, p in zip(b[r], b[col], strict=True)]
    return b


@dataclass(frozen=True, slots=True)
class MicropriceTable:
    """A fitted table as the fair value reads it: for which market (``venue``, ``symbol``,
    ``tick_size`` as a decimal string), the grid, and g* in ticks per state, flat, index
    ``(spread - 1) * buckets + bucket`` (None: not fitted, the weighted mid is used)."""

    venue: str
    symbol: str
    tick_size: str
    buckets: int
    spreads: int
    g_ticks: tuple[float | None, ...]


def table_document(result: Fit, venue: str, symbol: str, tick_size: str,
                   recordings: list[str]) -> bytes:
    """The table file of ``result`` for the market named, fitted on ``recordings`` (names
    kept for the reader): JSON, one key a line, g (ticks, to 1e-9: the solve's rounding
    noise goes) and the sample counts as one row per spread state."""
    n = result.buckets

    def rows(values: tuple[Any, ...]) -> str:
        return "[\n" + ",\n".join(f"  {json.dumps(list(values[i:i + n]))}"
                                   for i in range(0, len(values), n)) + "\n ]"

    head = {
        "format": TABLE_FORMAT, "version": TABLE_VERSION,
        "venue": venue, "symbol": symbol, "tick_size": tick_size,
        "buckets": n, "spreads": result.spreads, "max_move_ticks": result.max_move_ticks,
        "observations": result.observations, "outside": result.outside,
        "steps": result.steps, "self_loops": result.self_loops,
        "large_moves": result.large_moves, "iterations": result.iterations,
        "converged": result.converged, "recordings": recordings,
    }
    g = tuple(None if v is None else round(v, 9) + 0.0 for v in result.g_ticks)  # no -0.0
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
    lines += [f' "g_ticks": {rows(g)}', f' "samples": {rows(result.samples)}']
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def parse_table(body: bytes, venue: str, symbol: str, tick_size: str) -> MicropriceTable:
    """The table in ``body`` (a file's bytes), checked against the market it will price
    (``tick_size`` a decimal string). Raises :class:`TableError` saying what is wrong: not
    a table, another version, another market, a bad grid or value."""
    if len(body) > MAX_TABLE_BYTES:
        raise TableError(f"larger than {MAX_TABLE_BYTES} bytes: not a micro-price table")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TableError(f"not JSON ({exc}): write it with mmdaemon fit-microprice") from None
    if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
        raise TableError(f"not a micro-price table (expected \"format\": \"{TABLE_FORMAT}\"): "
                         f"write it with mmdaemon fit-microprice")
    if doc.get("version") != TABLE_VERSION:
        raise TableError(f"table version {doc.get('version')!r}, this mmdaemon reads version "
                         f"{TABLE_VERSION}: fit it again with this mmdaemon's fit-microprice")
    theirs = (doc.get("venue"), doc.get("symbol"), _decimal(doc.get("tick_size")))
    ours = (venue, symbol, _decimal(tick_size))
    if theirs != ours:
        raise TableError(f"fitted for {doc.get('venue')} {doc.get('symbol')} tick "
                         f"{doc.get('tick_size')}, but the instrument is {venue} {symbol} "
                         f"tick {tick_size}: fit a table on this instrument's recordings")
    buckets, spreads = doc.get("buckets"), doc.get("spreads")
    try:
        check_grid(buckets, spreads)
    except ValueError as exc:
        raise TableError(str(exc)) from None
    assert isinstance(buckets, int) and isinstance(spreads, int)  # checked just above
    rows = doc.get("g_ticks")
    if not (isinstance(rows, list) and len(rows) == spreads and all(
            isinstance(row, list) and len(row) == buckets for row in rows)):
        raise TableError(f"g_ticks: expected {spreads} rows (spreads) of {buckets} values "
                         f"(buckets)")
    flat: list[float | None] = []
    for s, row in enumerate(rows, start=1):
        for b, value in enumerate(row):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, int | float) or not math.isfinite(value)):
                raise TableError(f"g_ticks[{s - 1}][{b}] (spread {s}, bucket {b}): expected a "
                                 f"finite number of ticks or null, got {value!r}")
            flat.append(None if value is None else float(value))
    return MicropriceTable(venue, symbol, tick_size, buckets, spreads, tuple(flat))


def _decimal(value: object) -> Decimal | None:
    try:
        return Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        return None
