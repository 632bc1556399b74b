"""The pure half of `mmdaemon status` (mmdaemon.status): a stopped instance's figures from
its journal's fills, and when a kill counts as confirmed."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.model import Fill, Side
from mmdaemon.status import (
    LatchView,
    StoppedFacts,
    Versions,
    kill_confirmed,
    render_text,
    stopped_status,
)

VERSIONS = Versions("0.1.0", "3.11.7", "/etc/mmdaemon/btcusdt.toml", "ab" * 32)


def stopped(fills: list[Fill], mid_x2: int | None, latch: LatchView,
            journal_killed: bool = False) -> dict[str, Any]:
    return stopped_status(StoppedFacts(
        "BTCUSDT", "binance-spot", "binance", "USDT", Decimal("0.01"), Decimal("0.00000001"),
        fills, [], mid_x2, "ACTIVE", journal_killed, "operator_kill_switch" if journal_killed
        else "", 1_796_651_270_228_024_877, latch, VERSIONS))


def test_a_stopped_instances_position_and_pnl_add_up_from_its_fills_at_the_last_mid() -> None:
    # bought 3000 lots at 100 ticks, sold 1000 at 110, fee 5000 units each; last mid 105
    fills = [Fill(1, Side.BUY, 100, 3000, 5000, True, 1, 1),
             Fill(2, Side.SELL, 110, 1000, 5000, True, 2, 2)]
    s = stopped(fills, 210, LatchView(False, "", None))
    money = Fraction(Decimal("0.01")) * Fraction(Decimal("0.00000001"))
    realized = 1000 * (110 - 100)
    unrealized = 2000 * (105 - 100)
    assert s["position"] == {"lots": 2000, "base": "0.00002000"}
    assert s["pnl"]["realized"] == pytest.approx(float(realized * money))
    assert s["pnl"]["unrealized"] == pytest.approx(float(unrealized * money))
    assert s["pnl"]["fees"] == pytest.approx(float(10_000 * money))
    assert s["pnl"]["total"] == pytest.approx(float((realized + unrealized - 10_000) * money))
    assert s["state"] == "ACTIVE" and s["reason"] == "" and s["instance"] == "stopped"
    assert s["open_orders"] == {"ours": None, "venue": None}  # not known while stopped
    assert s["last_record"] == "2026-12-07T13:47:50.228+00:00"


def test_a_stopped_instance_with_a_position_and_no_mark_has_no_total() -> None:
    s = stopped([Fill(1, Side.BUY, 100, 3000, 0, True, 1, 1)], None, LatchView(False, "", None))
    assert s["pnl"]["total"] is None and s["pnl"]["unrealized"] is None
    assert "total n/a (no mark)" in render_text(s)


def test_a_latched_kill_makes_a_stopped_instance_killed_with_the_latchs_reason() -> None:
    s = stopped([], None, LatchView(True, "max_loss", 1_796_651_267_548_145_247))
    assert s["state"] == "KILLED" and s["reason"] == "max_loss"
    assert s["kill_latch"]["since"] == "2026-12-07T13:47:47.548+00:00"
    assert "LATCHED since 2026-12-07T13:47:47.548+00:00 by max_loss" in render_text(s)
    assert not kill_confirmed(s)  # a stopped instance confirms nothing


def running(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"instance": "running", "state": "KILLED", "kill_journaled": True,
                            "kill_latch": {"latched": True}, "open_orders": {"ours": 0,
                                                                             "venue": 0}}
    return {**base, **changes}


@pytest.mark.parametrize("missing", [
    {"state": "HALTED"},
    {"kill_journaled": False},
    {"kill_latch": {"latched": False}},
    {"open_orders": {"ours": 1, "venue": 0}},
    {"open_orders": {"ours": 0, "venue": 1}},  # the venue still holds one
    {"open_orders": {"ours": 0, "venue": None}},
])
def test_a_kill_is_confirmed_only_with_every_part_of_it(missing: dict[str, Any]) -> None:
    assert kill_confirmed(running())
    assert not kill_confirmed(running(**missing))


@pytest.mark.parametrize(("fills", "base"), [
    ([], "0.00000000"),  # flat: not "0E-8"
    ([Fill(1, Side.BUY, 100, 5, 0, True, 1, 1)], "0.00000005"),  # a partial fill's few lots
    ([Fill(1, Side.SELL, 100, 7, 0, True, 1, 1)], "-0.00000007"),
])
def test_the_position_in_base_currency_is_a_plain_decimal_never_an_exponent(
        fills: list[Fill], base: str) -> None:
    s = stopped(fills, 200, LatchView(False, "", None))
    assert s["position"]["base"] == base
    assert f"= {base} base" in render_text(s)


def test_pnl_and_mark_print_to_the_cent_and_below_never_rounded_to_8_digits_nor_as_an_exponent(
        ) -> None:
    # sold 100_000_000 lots (1 BTC) at 1_234_567.89 (in ticks of 0.01); an ETHBTC-sized
    # fee of 1234 units of 1e-10 = 0.0000001234 quote
    fills = [Fill(1, Side.SELL, 123_456_789, 100_000_000, 1234, True, 1, 1)]
    s = stopped(fills, 2 * 123_456_789, LatchView(False, "", None))
    text = render_text(s)
    assert "(mark 1234567.89)" in text, text
    assert "fees 0.00000012" in text, text
    assert "e-0" not in text and "e+0" not in text, text


def documented_fields() -> set[str]:
    """The `status --json` fields deploy/README.md's table lists (``pnl.total`` for a
    nested one)."""
    text = (Path(__file__).parents[2] / "deploy" / "README.md").read_text()
    table = text.split("`status --json` fields", 1)[1].split("\n\n", 2)[1]
    return {name for row in table.splitlines()[2:]
            for name in re.findall(r"`([a-z_0-9.]+)`", row.split("|")[1])}


def flat_fields(status: dict[str, Any]) -> set[str]:
    return {f"{key}.{sub}" if isinstance(value, dict) else key
            for key, value in status.items()
            for sub in (value if isinstance(value, dict) else [None])}


def test_every_status_json_field_is_documented_in_the_runbook_and_no_other() -> None:
    s = stopped([Fill(1, Side.BUY, 100, 3000, 0, True, 1, 1)], 210, LatchView(False, "", None))
    assert flat_fields(s) == documented_fields()


def test_a_stopped_instances_text_warns_that_a_crashed_run_may_have_left_orders_at_the_venue(
        ) -> None:
    # a SIGKILL'd or OOM-killed run writes no `stopped` line: its orders may still rest
    text = render_text(stopped([], 200, LatchView(False, "", None)))
    assert "after a crash, orders may still rest at the venue" in text, text


def test_a_btc_quoted_instruments_pnl_and_mark_are_exact_and_add_up_to_the_total() -> None:
    """ETHBTC: tick 1e-8 BTC, lot 0.001 ETH, one notional unit 1e-11 BTC. Bought 2 lots at
    6,183,763 ticks, sold 1 at 400 ticks more (realised 400 units = 4e-9 BTC); last mid
    400.5 ticks above the cost (unrealised 400.5 units). Rounded to 1e-8 every figure read
    "total 0.00000001 = realized 0 + unrealized 0", and the mark lost its half tick."""
    fills = [Fill(1, Side.BUY, 6_183_763, 2, 0, True, 1, 1),
             Fill(2, Side.SELL, 6_184_163, 1, 0, True, 2, 2)]
    s = stopped_status(StoppedFacts(
        "ETHBTC", "binance-spot", "binance", "BTC", Decimal("0.00000001"), Decimal("0.001"),
        fills, [], 2 * 6_183_763 + 801, "ACTIVE", False, "", 1_796_651_270_228_024_877,
        LatchView(False, "", None), VERSIONS))
    assert s["pnl"]["realized"] == float(Decimal("0.000000004"))
    assert s["pnl"]["unrealized"] == float(Decimal("0.000000004005"))
    assert s["pnl"]["total"] == float(Decimal("0.000000008005"))
    assert s["pnl"]["mark"] == float(Decimal("0.061841635"))
    text = render_text(s)
    line = next(x for x in text.splitlines() if x.startswith("pnl:"))
    total, realized, unrealized, fees, funding, mark = (
        Decimal(x) for x in re.findall(r"-?\d+(?:\.\d+)?", line))
    assert total == realized + unrealized - fees + funding == Decimal("0.000000008005"), line
    assert mark == Decimal("0.061841635"), line
