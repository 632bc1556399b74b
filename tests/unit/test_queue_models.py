"""Queue-position models and the fill-through rule of the paper venue (issue #17, item 3).

Hand-built books use the synthetic instrument of tests/unit/test_fill_model.py (tick 0.01, lot 1,
latency 1,000 ns); the expected queue positions are worked out in the comments with
p = f(front) / (f(front) + f(back)) and gone = floor(d * p) (mmdaemon/exchange/queue.py).
The real-data tests replay the bundled recording with the same scripted orders for every
model (the orders depend on the market only, never on fills).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mmdaemon.book import OrderBook
from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.exchange.queue import (
    CONSERVATIVE,
    LogQueue,
    PowerQueue,
    QueueModel,
    QueuePos,
    make_queue_model,
)
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Side
from mmdaemon.wiring import make_exchange
from tests.conftest import REPO
from tests.helpers import write_config
from tests.unit.test_fill_model import (
    INSTR,
    LAT,
    Replay,
    _ops,
    _replay,
    _run_ops,
    book_at,
    change,
    check_plausible,
    check_stream,
    fills,
    make_book,
    real_venue,
    rest,
    trade,
    trade_at,
)

BUY, SELL = Side.BUY, Side.SELL
MODELS: dict[str, QueueModel] = {
    "conservative": CONSERVATIVE,
    "power2": PowerQueue(2),
    "power3": PowerQueue(3),
    "log": LogQueue(),
}
PROBABILISTIC = ("power2", "power3", "log")


def venue(model: QueueModel = CONSERVATIVE, fill_through: str = "whole") -> PaperVenue:
    return PaperVenue(INSTR, LAT, "0", "0", queue=model, fill_through=fill_through)


def behind(model: QueueModel, ahead: int, joined: int) -> tuple[PaperVenue, OrderBook, int]:
    """A bid of 5 lots at 100 that arrived behind ``ahead`` lots, then ``joined`` lots joined
    behind it. Returns the venue, the book and the time."""
    book = make_book([(100, ahead), (99, 500)], [(101, 50)])
    v = venue(model)
    t = rest(v, book, 1, BUY, 100, 5, 0)
    t += 1
    assert book_at(v, change(book, bids=[(100, ahead + joined)]), t) == []
    assert v.queue_ahead(1) == ahead  # joiners are behind us in every model
    return v, book, t


# ---- the models on hand-built books --------------------------------------------------------


def test_a_fill_at_our_price_is_whole_steps_whatever_the_model_left_ahead() -> None:
    """The power model can leave part of a size step ahead of us (an expected value); the
    venue trades whole steps only, so what the print leaves us is rounded down to them."""
    step = BINANCE_SPOT_BTCUSDT.size_step_lots  # 1,000 lots
    book = make_book([(100, 10 * step)], [(101, 50 * step)])
    v = PaperVenue(BINANCE_SPOT_BTCUSDT, LAT, "0", "0", exchange_filters=False,
                   queue=PowerQueue(2))
    t = rest(v, book, 1, BUY, 100, 5 * step, 0)
    assert book_at(v, change(book, bids=[(100, 15 * step)]), t + 1) == []  # 5 steps behind
    # 3 steps cancelled: p = 10^2 / (10^2 + 5^2) = 0.8 of them were ahead: 2,400 lots gone
    assert book_at(v, change(book, bids=[(100, 12 * step)]), t + 2) == []
    assert v.queue_ahead(1) == 7_600
    events = trade_at(v, trade(100, 9 * step, SELL, t + 3), t + 3)
    assert [f.size for f in fills(events)] == [step]  # 1,400 left for us: one whole step


@pytest.mark.parametrize(
    ("name", "near_back", "near_front"),
    [
        # 90 ahead, 10 behind; 10 cancelled (level 100 -> 90):
        #   power2: p = 90^2 / (90^2 + 10^2) = 8100/8200, gone = floor(9.88) = 9 -> 81
        #   power3: p = 729000/730000, gone = floor(9.986) = 9 -> 81
        #   log: p = ln 91 / (ln 91 + ln 11) = 0.653, gone = floor(6.53) = 6 -> 84
        # 10 ahead, 90 behind; 10 cancelled:
        #   power2: p = 100/8200, gone = floor(0.12) = 0 -> 10
        #   power3: p = 1000/730000, gone = 0 -> 10
        #   log: p = ln 11 / (ln 11 + ln 91) = 0.347, gone = floor(3.47) = 3 -> 7
        # conservative: every cancel behind us, 90 and 10 both fit in the 90 shown
        ("conservative", 90, 10),
        ("power2", 81, 10),
        ("power3", 81, 10),
        ("log", 84, 7),
    ],
)
def test_a_cancel_moves_us_up_by_the_expected_share_that_was_ahead(
    name: str, near_back: int, near_front: int
) -> None:
    for ahead, expected in ((90, near_back), (10, near_front)):
        v, book, t = behind(MODELS[name], ahead, 100 - ahead)
        assert book_at(v, change(book, bids=[(100, 90)]), t + 1) == []
        assert v.queue_ahead(1) == expected, (name, ahead)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_cancel_with_no_one_behind_us_was_ahead_of_us(name: str) -> None:
    # We arrived behind 50 and nobody joined: 20 lots leaving must all have been ahead
    # (power/log: back = 0 gives p = 1; conservative: 50 ahead no longer fits in 30 shown).
    v, book, t = behind(MODELS[name], 50, 0)
    assert book_at(v, change(book, bids=[(100, 30)]), t + 1) == []
    assert v.queue_ahead(1) == 30


def test_the_share_ahead_grows_with_our_distance_from_the_front() -> None:
    # Level 100 lots, 10 cancelled, we are `front` lots from the front (back = 100 - front).
    # Lots we move up, front = 10, 30, 50, 70, 90 (p as in the test above):
    #   power2: 100/8200 -> 0, 900/5800 -> 1, 1/2 -> 5, 4900/5800 -> 8, 8100/8200 -> 9
    #   power3: 1000/730000 -> 0, 27000/370000 -> 0, 5, 343000/370000 -> 9, 9
    #   log: 0.347 -> 3, 0.446 -> 4, 5, 0.554 -> 5, 0.653 -> 6
    fronts = (10, 30, 50, 70, 90)
    moved = {
        name: [f - MODELS[name].on_level(QueuePos(f, 100, 0), 90).ahead for f in fronts]
        for name in PROBABILISTIC
    }
    assert moved == {
        "power2": [0, 1, 5, 8, 9],
        "power3": [0, 0, 5, 9, 9],
        "log": [3, 4, 5, 5, 6],
    }
    for name in PROBABILISTIC:
        assert moved[name] == sorted(moved[name])  # further back: more of it was ahead
    # The order of the models: in the front half of the queue log moves us most and a
    # higher power least; in the back half the reverse; all agree at the middle (p = 1/2).
    for i, front in enumerate(fronts):
        power2, power3, log = moved["power2"][i], moved["power3"][i], moved["log"][i]
        if front < 50:
            assert log >= power2 >= power3 and log > power3
        elif front > 50:
            assert log <= power2 <= power3 and log < power3
        else:
            assert log == power2 == power3 == 5


def expected_ahead_after(front: int, back: int, d: int, gone: int) -> int:
    """ahead' for ``gone`` lots of ``d`` cancelled from ahead of us (module docstring)."""
    return min(front - min(gone, front), front + back - d)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 2 * 10**6),
       st.integers(1, 10))
def test_power_is_the_exact_floor_of_the_expected_value(
    front: int, back: int, d: int, n: int
) -> None:
    assume(front + back > 0)
    d = min(d, front + back)
    gone = Fraction(d * front**n, front**n + back**n).__floor__()
    got = PowerQueue(n).on_level(QueuePos(front, front + back, 0), front + back - d).ahead
    assert got == expected_ahead_after(front, back, d, gone)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 2 * 10**6))
def test_log_never_rounds_up_and_gives_up_at_most_one_lot(front: int, back: int, d: int) -> None:
    assume(front + back > 0)
    d = min(d, front + back)
    with localcontext() as ctx:
        ctx.prec = 60
        ln_front, ln_back = Decimal(1 + front).ln(), Decimal(1 + back).ln()
        exact = d * ln_front / (ln_front + ln_back)
        # an exact rational p (ln 2 / ln 8 = 1/3) shows as x.999...: the integer it is
        floor = int(exact.to_integral_value(ROUND_FLOOR) if abs(
            exact - exact.to_integral_value()) > Decimal("1e-40") else exact.to_integral_value())
    got = LogQueue().on_level(QueuePos(front, front + back, 0), front + back - d).ahead
    assert expected_ahead_after(front, back, d, floor) <= got  # never moved up more
    assert got <= expected_ahead_after(front, back, d, max(floor - 1, 0))


def test_log_gives_up_a_lot_rather_than_risk_rounding_up() -> None:
    # front 1, back 3: p = ln 2 / (ln 2 + ln 4) = 1/3 exactly; 3 cancelled: 1 expected ahead.
    # The float product may land on either side of 1; lowered before the floor it gives 0,
    # so we stay 1 ahead (one lot in our disfavour, the documented price).
    assert LogQueue().on_level(QueuePos(1, 4, 0), 1).ahead == 1


@pytest.mark.parametrize("name", list(MODELS))
def test_level_increases_never_move_us_up(name: str) -> None:
    v, book, t = behind(MODELS[name], 50, 0)
    for size in (80, 200, 1_000):
        t += 1
        assert book_at(v, change(book, bids=[(100, size)]), t) == []
        assert v.queue_ahead(1) == 50
    # A decrease after joins is a cancel again, judged from where we are: 50 ahead and
    # 950 behind, 100 cancelled: power p tiny -> 0; log p = ln 51 / (ln 51 + ln 951) = 0.365
    # -> floor(36.5) = 36 -> 14 ahead; conservative: 50 fits in 900.
    t += 1
    assert book_at(v, change(book, bids=[(100, 900)]), t) == []
    assert v.queue_ahead(1) == {"log": 14}.get(name, 50)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_decrease_explained_by_trades_is_not_taken_for_a_cancel(name: str) -> None:
    v, book, t = behind(MODELS[name], 50, 50)  # 50 ahead, 50 behind
    # A trade of 10 at our price takes 10 from the front: 40 ahead (every model).
    assert fills(trade_at(v, trade(100, 10, SELL, t + 1), t + 1)) == []
    assert v.queue_ahead(1) == 40
    # The depth stream then shows the level 100 -> 90: all of it the trade, nothing moves.
    assert book_at(v, change(book, bids=[(100, 90)]), t + 2) == []
    assert v.queue_ahead(1) == 40
    # Then 10 more leave with no trade: a cancel. front 40, back 50:
    #   power2: 10 x 1600/4100 = 3.9 -> 3 -> 37;  power3: 10 x 64000/189000 = 3.4 -> 3 -> 37
    #   log: ln 41 / (ln 41 + ln 51) = 0.486 -> 4 -> 36;  conservative: 40 fits in 80
    assert book_at(v, change(book, bids=[(100, 80)]), t + 3) == []
    assert v.queue_ahead(1) == {"power2": 37, "power3": 37, "log": 36}.get(name, 40)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_trade_and_a_cancel_in_one_depth_update(name: str) -> None:
    v, book, t = behind(MODELS[name], 50, 50)  # 50 ahead, 50 behind
    assert fills(trade_at(v, trade(100, 10, SELL, t + 1), t + 1)) == []  # 40 ahead
    # The depth stream shows 100 -> 70: 10 of it the trade, d = 20 cancelled, with
    # front 40 and back 100 - 10 - 40 = 50 (the trade took from the front):
    #   power2: 20 x 1600/4100 = 7.8 -> 7 -> 33;  power3: 20 x 64000/189000 = 6.8 -> 6 -> 34
    #   log: 20 x ln 41 / (ln 41 + ln 51) = 9.7 -> 9 -> 31;  conservative: 40 fits in 70
    assert book_at(v, change(book, bids=[(100, 70)]), t + 2) == []
    assert v.queue_ahead(1) == {"power2": 33, "power3": 34, "log": 31}.get(name, 40)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_level_emptied_puts_us_at_the_front_not_past_it(name: str) -> None:
    # 10 ahead, 5 behind, all 15 cancelled: power2's d x p = 15 x 100/125 = 12 is more than
    # the 10 ahead; we are at the front (0 ahead), and the next trade fills us by its size.
    v, book, t = behind(MODELS[name], 10, 5)
    assert book_at(v, change(book, bids=[(100, 0)]), t + 1) == []
    assert v.queue_ahead(1) == 0
    assert [f.size for f in fills(trade_at(v, trade(100, 3, SELL, t + 2), t + 2))] == [3]


@pytest.mark.parametrize("name", list(MODELS))
def test_the_trade_and_the_depth_update_counted_once_when_the_trade_fills_others_first(
    name: str,
) -> None:
    # Our better bid at 101 takes the whole of a trade through it at 100: nothing of it
    # reaches our bid at 100, but the public level at 100 still lost those lots, so its
    # later decrease is the trade, not a cancel (taken for a cancel with 50 ahead and 50
    # behind, power and log would move us up 5).
    book = make_book([(100, 50), (99, 5)], [(102, 50)])
    v = venue(MODELS[name])
    t = rest(v, book, 1, BUY, 100, 5, 0)
    t = rest(v, book, 2, BUY, 101, 10, t)
    assert book_at(v, change(book, bids=[(100, 100)]), t + 1) == []  # 50 join behind us
    assert [f.order_id for f in fills(trade_at(v, trade(100, 10, SELL, t + 2), t + 2))] == [2]
    assert v.queue_ahead(1) == 50  # none of it reached us
    assert book_at(v, change(book, bids=[(100, 90)]), t + 3) == []
    assert v.queue_ahead(1) == 50


@pytest.mark.parametrize("name", list(MODELS))
def test_after_a_gap_every_model_only_caps(name: str) -> None:
    v, book, t = behind(MODELS[name], 90, 10)
    book.invalidate()  # a gap: what happened meanwhile is unknown
    assert book_at(v, change(book, bids=[(100, 95)]), t + 1) == []
    # resynced by a snapshot showing 90 at our price: capped at 90, nothing more
    assert book_at(v, make_book([(100, 90), (99, 500)], [(101, 50)]), t + 2) == []
    assert v.queue_ahead(1) == 90


def test_conservative_is_the_default_and_moves_us_only_when_it_must() -> None:
    v = PaperVenue(INSTR, LAT, "0", "0")
    assert v.queue_model is CONSERVATIVE and v.fill_through == "whole"
    v, book, t = behind(CONSERVATIVE, 90, 10)
    for size, expected in ((95, 90), (90, 90), (60, 60), (70, 60)):
        t += 1
        assert book_at(v, change(book, bids=[(100, size)]), t) == []
        assert v.queue_ahead(1) == expected


def test_model_and_option_validation() -> None:
    assert make_queue_model("conservative", 2) is CONSERVATIVE
    assert isinstance(make_queue_model("log", 2), LogQueue)
    power = make_queue_model("power", 3)
    assert isinstance(power, PowerQueue) and power.n == 3
    with pytest.raises(ValueError, match="queue model: expected one of conservative, power, log"):
        make_queue_model("fifo", 2)
    for n in (0, 11, 2.0, True):
        with pytest.raises(ValueError, match="queue power: expected an integer from 1 to 10"):
            PowerQueue(n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PaperVenue\.queue: expected a QueueModel"):
        PaperVenue(INSTR, LAT, "0", "0", queue="power")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PaperVenue\.fill_through: expected one of 'whole', "
                                         r"'traded', got 'all'"):
        PaperVenue(INSTR, LAT, "0", "0", fill_through="all")


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_invariants_on_random_streams_with_every_model(ops: list[tuple[object, ...]]) -> None:
    # _run_ops also checks queue_ahead <= the displayed size after every book event
    for model in MODELS.values():
        for fill_through in ("whole", "traded"):
            run = _run_ops(ops, model, fill_through)
            assert run == _run_ops(ops, model, fill_through)  # deterministic
            check_stream(run)


# ---- fill through the book -----------------------------------------------------------------


def through_scenario(fill_through: str) -> list[tuple[int, int]]:
    """(time, lots) of the fills of a bid of 8 lots at 100 behind 10 lots, after a trade of
    4 at 100 (to the queue ahead), the book moving through it, a trade of 3 at 99 and one
    more book update through it."""
    book = make_book([(100, 10), (99, 5)], [(101, 50)])
    v = venue(fill_through=fill_through)
    assert fills(trade_at(v, trade(100, 6, SELL, 0), 0)) == []  # before we rest: not ours
    t = rest(v, book, 1, BUY, 100, 8, 1)
    out = trade_at(v, trade(100, 4, SELL, t + 1), t + 1)  # all to the 10 ahead of us
    # the bids at 100 leave, a seller offers at 100: the book is through our bid
    out += book_at(v, change(book, bids=[(100, 0)], asks=[(100, 20)]), t + 2)
    out += trade_at(v, trade(99, 3, SELL, t + 3), t + 3)  # a sell through our bid
    out += book_at(v, change(book, asks=[(100, 15)]), t + 4)
    return [(f.ts_ns - t, f.size) for f in fills(out)]


def test_fill_through_whole_fills_the_rest_when_the_book_goes_through() -> None:
    assert through_scenario("whole") == [(2, 8)]


def test_fill_through_traded_fills_only_what_traded_at_or_through_our_price() -> None:
    # 4 lots printed at our price since we rested (the 6 before do not count): the book
    # through us fills 4; the trade through us at 99 fills 3 of it; the next book update
    # through us has nothing left to fill (the 3 printed at 99 were used by that fill).
    assert through_scenario("traded") == [(2, 4), (3, 3)]


# ---- the real recording --------------------------------------------------------------------


@pytest.fixture(scope="module")
def replays() -> dict[tuple[str, str], Replay]:
    runs = {(name, "whole"): _replay(real_venue(model)) for name, model in MODELS.items()}
    runs["conservative", "traded"] = _replay(real_venue(CONSERVATIVE, "traded"))
    runs["power2", "traded"] = _replay(real_venue(MODELS["power2"], "traded"))
    return runs


def filled_by_order(replay: Replay) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for e in replay.events:
        if isinstance(e, Fill):
            out[e.order_id] += e.size
    return out


@pytest.mark.parametrize("key", [(n, "whole") for n in MODELS]
                         + [("conservative", "traded"), ("power2", "traded")], ids=str)
def test_real_recording_invariants_hold_with_every_model(
    replays: dict[tuple[str, str], Replay], key: tuple[str, str]
) -> None:
    check_plausible(replays[key])


def test_real_recording_the_same_orders_fill_at_least_as_much_as_conservative(
    replays: dict[tuple[str, str], Replay],
) -> None:
    # The conservative model assumes every cancel was behind us, so any model that puts
    # some of a cancel ahead of us can only have fewer lots ahead and fill sooner and more.
    # The scripted quotes keep one order per side, so no two of ours share a level.
    base = replays["conservative", "whole"]
    base_filled = filled_by_order(base)
    for name in PROBABILISTIC:
        run = replays[name, "whole"]
        assert run.sent == base.sent  # the same orders
        filled = filled_by_order(run)
        assert all(filled.get(oid, 0) >= lots for oid, lots in base_filled.items()), name
        # at the touch, cancels ahead of us happen: the model must have moved some order up
        assert sum(filled.values()) > sum(base_filled.values()), name


def test_real_recording_fill_through_traded_never_fills_more_than_traded(
    replays: dict[tuple[str, str], Replay],
) -> None:
    for name in ("conservative", "power2"):
        whole, traded = replays[name, "whole"], replays[name, "traded"]
        assert traded.sent == whole.sent
        whole_filled = filled_by_order(whole)
        assert all(whole_filled.get(oid, 0) >= lots
                   for oid, lots in filled_by_order(traded).items())
        # Each fill by the book is at most the lots printed at or through the order's price
        # on its side since it arrived, less what filled the order before.
        arrival = {e.order_id: e.ts_ns for e in traded.events
                   if not isinstance(e, Fill) and e.status.name == "NEW"}
        filled_before: dict[int, int] = defaultdict(int)
        book_fills = {(f.order_id, f.ts_ns, f.size) for f, _ in traded.book_fills}
        assert book_fills  # the recording does go through our quotes
        for e in traded.events:
            if not isinstance(e, Fill):
                continue
            if (e.order_id, e.ts_ns, e.size) in book_fills:
                printed = sum(
                    tr.size for tr in traded.trades
                    if tr.aggressor == -e.side
                    and (tr.price <= e.price if e.side is BUY else tr.price >= e.price)
                    and arrival[e.order_id] <= tr.recv_ns <= e.ts_ns
                )
                assert e.size <= printed - filled_before[e.order_id], e
            filled_before[e.order_id] += e.size


# ---- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"queue_model": "fifo"},
         "exchange.queue_model: expected one of 'conservative', 'power', 'log', got str 'fifo'"),
        ({"fill_through": "all"},
         "exchange.fill_through: expected one of 'whole', 'traded', got str 'all'"),
        ({"trade_through": "all"},
         "exchange.trade_through: expected one of 'print', 'whole', got str 'all'"),
        ({"queue_power": 0}, "exchange.queue_power: expected an integer from 1 to 10 "
                             "(the n of f(x) = x**n), got 0"),
        ({"queue_power": 11}, "exchange.queue_power: expected an integer from 1 to 10"),
        ({"queue_power": 2.5}, "exchange.queue_power: expected an integer, got float 2.5"),
    ],
)
def test_bad_queue_config_names_the_key(tmp_path: Path, values: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, {"exchange": values}))
    assert message in str(err.value)


def test_config_keys_reach_the_paper_venue(tmp_path: Path) -> None:
    dry = load_config(REPO / "config" / "dryrun.toml")  # the shipped values: the defaults
    assert (dry.exchange.queue_model, dry.exchange.fill_through,
            dry.exchange.trade_through) == ("conservative", "whole", "print")
    for values, model_type in (({}, QueueModel), ({"queue_model": "log"}, LogQueue),
                               ({"queue_model": "power", "queue_power": 3}, PowerQueue)):
        config = load_config(write_config(tmp_path, {"exchange": {
            **values, "fill_through": "traded", "trade_through": "whole"}}))
        exchange = make_exchange(config, config.instrument.build(), None, lambda: 0)
        assert isinstance(exchange, PaperExchange)
        model = exchange.venue.queue_model
        assert type(model) is model_type and exchange.venue.fill_through == "traded"
        assert exchange.venue.trade_through == "whole"
        assert model.name == config.exchange.queue_model
        if isinstance(model, PowerQueue):
            assert model.n == 3

