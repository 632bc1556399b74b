"""Stoikov's micro-price: the fit on chains with a known answer and on the real recordings,
the table's format, and the fair-value mode that reads it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmdaemon.commands.fit_microprice import _tops
from mmdaemon.config_file import load_config
from mmdaemon.quoting.fair_value import FairValue, FairValueParams
from mmdaemon.quoting.microprice_fit import (
    TABLE_VERSION,
    Fit,
    MicropriceTable,
    TableError,
    Top,
    fit,
    imbalance_bucket,
    parse_table,
    table_document,
)
from tests.conftest import REPO, SPOT_FILES
from tests.unit.test_quoting_components import make_book

# three buckets of one spread state: all on the ask, balanced, all on the bid
ASK_HEAVY, EVEN, BID_HEAVY = (1, 9), (5, 5), (9, 1)


def top(bid: int, sizes: tuple[int, int], spread: int = 1) -> Top:
    return bid, bid + spread, sizes[0], sizes[1]


def geometric_chain(ups: int, stays: int) -> list[Top | None]:
    """From the bid-heavy state: ``ups`` moves of the mid up one tick into the bid-heavy
    state again, ``stays`` returns to the balanced state with no move; from the balanced
    state always to the bid-heavy one (the mirror, added by the fit, makes it half and half).
    So p = ups / (ups + stays), G1 = p, B v = p v for v = (-1, 0, 1), and g* = p / (1 - p)."""
    tops: list[Top | None] = [top(100, EVEN), top(100, BID_HEAVY)]
    bid = 100
    for _ in range(ups):
        bid += 1
        tops.append(top(bid, BID_HEAVY))
    for _ in range(stays):
        tops += [top(bid, EVEN), top(bid, BID_HEAVY)]
    return tops


def test_a_chain_solved_by_hand_gives_p_over_one_minus_p() -> None:
    # p = 1/4: g* = 1/3 tick on the bid-heavy side, -1/3 on the other, 0 when balanced
    result = fit(geometric_chain(ups=1, stays=3), buckets=3, spreads=1)
    assert result.converged and result.iterations > 2  # the iteration did the work
    assert result.g(1, 2) == pytest.approx(1 / 3, abs=1e-9)
    assert result.g(1, 0) == pytest.approx(-1 / 3, abs=1e-9)
    assert result.g(1, 1) == pytest.approx(0.0, abs=1e-12)
    # p = 1/2: g* = 1 tick
    assert fit(geometric_chain(ups=2, stays=2), buckets=3, spreads=1).g(1, 2) == (
        pytest.approx(1.0, abs=1e-9))
    assert result.samples == (0, 4, 4)  # as observed: 4 steps out of each, none from I0


def test_steps_that_change_nothing_leave_g_as_it_was() -> None:
    """The sampling: a size change inside its bucket is a self-loop, and self-loops cancel
    out of (1 - Q)^-1, so every book event or only state changes give the same g*."""
    plain = fit(geometric_chain(ups=1, stays=3), buckets=3, spreads=1)
    padded: list[Top | None] = []
    for each in geometric_chain(ups=1, stays=3):
        padded.append(each)
        if each is not None and each[2] > each[3]:  # bid-heavy: 9/1 and 8/1, one bucket
            padded += [(each[0], each[1], 8, 1), each]
    again = fit(padded, buckets=3, spreads=1)
    assert again.self_loops == 10 and plain.self_loops == 0
    assert again.g_ticks == pytest.approx(plain.g_ticks, abs=1e-12)
    assert again.samples == plain.samples


def test_large_moves_wide_spreads_and_breaks_are_kept_out() -> None:
    chain = geometric_chain(ups=1, stays=3)
    # a 5-tick jump, a spread of 3 ticks (outside 1..1) and a break: none is a step
    extra: list[Top | None] = [top(200, BID_HEAVY), top(200, EVEN, spread=3), None,
                               top(300, EVEN)]
    result = fit([*chain, *extra], buckets=3, spreads=1)
    assert (result.large_moves, result.outside) == (1, 1)
    assert result.steps == fit(chain, buckets=3, spreads=1).steps
    assert result.g(1, 2) == pytest.approx(1 / 3, abs=1e-9)
    # the same jump with the paper's filter widened: now a step, and it moves g*
    wide = fit([*chain, top(105, BID_HEAVY)], buckets=3, spreads=1, max_move_ticks=10)
    assert wide.large_moves == 0 and wide.g(1, 2) > 1 / 3 + 0.1


def random_walk(seed: int, count: int) -> list[Top | None]:
    """A top of book that leans: the next mid move tends toward the heavier side now."""
    rng = random.Random(seed)
    tops: list[Top | None] = []
    bid, spread, lean = 10_000, 1, 0.5
    for _ in range(count):
        if rng.random() < 0.3:
            up = rng.random() < lean
            if spread == 1:
                spread = 2
                bid += 0 if up else -1  # the ask (or the bid) side emptied: half a tick
            else:
                spread = 1
                bid += 1 if up else 0
        bid_size, ask_size = rng.randint(1, 50), rng.randint(1, 50)
        lean = bid_size / (bid_size + ask_size)
        tops.append((bid, bid + spread, bid_size, ask_size))
    return tops


@pytest.mark.parametrize("buckets", [3, 5, 9])
def test_a_symmetrised_fit_is_odd_in_the_imbalance(buckets: int) -> None:
    result = fit(random_walk(7, 20_000), buckets=buckets, spreads=2)
    assert result.converged and result.steps > 1000
    for spread in (1, 2):
        values = [result.g(spread, b) for b in range(buckets)]
        assert all(v is not None for v in values)
        for b in range(buckets):
            assert values[b] == pytest.approx(-values[buckets - 1 - b], abs=1e-9)  # type: ignore[operator]
        assert values[buckets // 2] == pytest.approx(0.0, abs=1e-9)
        assert values[-1] > 0  # the walk leans toward the heavy side, so g* does


def test_imbalance_buckets_are_exact_and_mirror_each_other() -> None:
    assert [imbalance_bucket(b, 10 - b, 5) for b in range(1, 10)] == [0, 1, 1, 2, 2, 2, 3, 3, 4]
    for n in (1, 3, 5, 21):
        for bid in range(1, 30):
            for ask in range(1, 30):
                b = imbalance_bucket(bid, ask, n)
                assert 0 <= b < n and imbalance_bucket(ask, bid, n) == n - 1 - b
                # I * n lies in [b, b + 1]: a boundary value goes to the bucket nearer 1/2
                assert b * (bid + ask) <= n * bid <= (b + 1) * (bid + ask)


@pytest.mark.parametrize(("buckets", "spreads", "message"), [
    (4, 2, "buckets: expected an odd integer"), (23, 2, "buckets: expected an odd"),
    (5, 0, "spreads: expected an integer from 1"), (5, 11, "spreads: expected"),
])
def test_a_bad_grid_is_refused(buckets: int, spreads: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit([], buckets=buckets, spreads=spreads)


def spot_fit(buckets: int = 5, spreads: int = 2) -> Fit:
    config = load_config(REPO / "config" / "dryrun.toml")
    return fit(_tops(config, [str(p) for p in SPOT_FILES]), buckets, spreads)


def test_the_fit_on_the_bundled_spot_recording() -> None:
    result = spot_fit()
    assert result.converged and result.steps > 4000
    for spread in (1, 2):
        values = [result.g(spread, b) for b in range(5)]
        assert all(v is not None for v in values)
        assert values == sorted(values) and values[0] < 0 < values[-1]  # type: ignore[operator]
    # inside the spread for the usual one-tick book: a fair value between bid and ask
    assert all(abs(g) < 0.5 for g in result.g_ticks[:5])  # type: ignore[arg-type]
    # the shipped table is this fit
    shipped = json.loads((REPO / "config" / "stoikov-btcusdt-spot.json").read_text())
    assert [g for row in shipped["g_ticks"] for g in row] == pytest.approx(
        list(result.g_ticks), abs=1e-9)


def test_the_fit_on_the_usdm_recording(usdm_file: Path) -> None:
    config = load_config(REPO / "config" / "dryrun-usdm.toml")
    result = fit(_tops(config, [str(usdm_file)]), 5, 2)
    assert result.converged and result.steps > 2000
    spread1 = [result.g(1, b) for b in range(5)]
    assert spread1 == sorted(spread1) and spread1[0] < 0 < spread1[-1]  # type: ignore[operator]
    assert all(abs(g) < 0.5 for g in spread1)  # type: ignore[arg-type]


# -- the table ------------------------------------------------------------------------------

SPOT = ("binance-spot", "BTCUSDT", "0.01")


def document(**changes: object) -> bytes:
    doc = json.loads(table_document(fit(geometric_chain(1, 3), 3, 1), *SPOT, ["x.gz"]))
    doc.update(changes)
    return json.dumps(doc).encode()


def test_a_table_round_trips_through_its_file() -> None:
    table = parse_table(document(), *SPOT)
    assert (table.buckets, table.spreads) == (3, 1)
    assert table.g_ticks == pytest.approx((-1 / 3, 0.0, 1 / 3), abs=1e-9)
    # the grid's decimal, however written
    assert parse_table(document(tick_size="0.010"), *SPOT).tick_size == "0.01"


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a micro-price table"),
    (document(format="other"), "not a micro-price table"),
    (document(version=TABLE_VERSION + 1), f"table version {TABLE_VERSION + 1}, this mmdaemon"),
    (document(symbol="ETHUSDT"), "fitted for binance-spot ETHUSDT tick 0.01, but the "
                                 "instrument is binance-spot BTCUSDT"),
    (document(tick_size="0.1"), "fitted for binance-spot BTCUSDT tick 0.1"),
    (document(venue="binance-usdm"), "fitted for binance-usdm BTCUSDT"),
    (document(buckets=4), "buckets: expected an odd integer"),
    (document(g_ticks=[[0.1, 0.2]]), "g_ticks: expected 1 rows"),
    (document(g_ticks=[[0.1, "x", 0.2]]), r"g_ticks\[0\]\[1\] \(spread 1, bucket 1\)"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_bad_table_is_refused_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(TableError, match=message):
        parse_table(body, *SPOT)


# -- the fair-value mode --------------------------------------------------------------------


def stoikov(g: tuple[float | None, ...], buckets: int = 3, spreads: int = 2) -> FairValue:
    table = MicropriceTable(*SPOT, buckets, spreads, g)
    return FairValue(FairValueParams(mode="stoikov", stoikov_table="t.json", stoikov=table))


def test_stoikov_mode_is_mid_plus_g_of_the_state() -> None:
    fv = stoikov((-0.3, 0.0, 0.3, -0.6, None, 0.6))
    assert fv.from_book(make_book([(100, 9)], [(101, 1)])) == 100.5 + 0.3
    assert fv.from_book(make_book([(100, 1)], [(101, 9)])) == 100.5 - 0.3
    assert fv.from_book(make_book([(100, 5)], [(101, 5)])) == 100.5
    assert fv.from_book(make_book([(100, 9)], [(102, 1)])) == 101.0 + 0.6
    # no value (a state not fitted, a spread wider than the table's): the weighted mid
    weighted = FairValue(FairValueParams(mode="weighted_mid"))
    for book in (make_book([(100, 5)], [(102, 5)]), make_book([(100, 9)], [(103, 1)])):
        assert fv.from_book(book) == weighted.from_book(book)


def test_stoikov_mode_needs_its_table() -> None:
    with pytest.raises(ValueError, match=r"FairValueParams\.stoikov_table: expected the path"):
        FairValueParams(mode="stoikov")
    with pytest.raises(ValueError, match=r"FairValueParams\.stoikov: mode 'stoikov' needs"):
        FairValue(FairValueParams(mode="stoikov", stoikov_table="t.json"))
