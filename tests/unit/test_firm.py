"""The firm risk bus's pure core: heartbeat records, aggregation, limits, peak, link health."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmdaemon.risk.firm import (
    AssetLimit,
    BadHeartbeat,
    DeskPeak,
    Exposure,
    FirmLimits,
    Heartbeat,
    Identity,
    Keys,
    LinkHealth,
    aggregate,
    decimal_text,
    decode,
    encode,
    evaluate,
)

BTC = Identity("btc-a", "desk1", "BTC", "USDT", tick_size="0.01", lot_size="0.00000001")


def hb(instance: str, base: str = "BTC", lots: int = 100_000_000, notional: str | None = "60000",
       pnl: str | None = "0", quote: str = "USDT") -> Heartbeat:
    return Heartbeat(instance, "desk1", base, quote, lots, "0.00000001",
                     None if notional is None else Fraction(Decimal(notional)),
                     None if pnl is None else Fraction(Decimal(pnl)), "ACTIVE", 1,
                     1_700_000_000_000)


def test_own_heartbeat_converts_ticks_and_lots_exactly() -> None:
    # 0.003 BTC short at a mark of 61,837.635 (a half tick): notional is exact
    exposure = Exposure(-300_000, Fraction(12_367_527, 2), Fraction(-123_456_789), "REDUCING")
    beat = BTC.heartbeat(exposure, seq=7, ts_ms=1)
    assert beat.notional == Fraction(Decimal("185.512905"))
    assert beat.position == Fraction(Decimal("-0.003"))
    assert beat.pnl == Fraction(Decimal("-0.0123456789"))  # units of 1e-10 USDT
    wire = orjson.loads(encode(beat))
    assert wire["notional"] == "185.512905" and wire["pnl"] == "-0.0123456789"
    assert wire["position_lots"] == -300_000 and wire["state"] == "REDUCING"
    assert decode(encode(beat)) == beat
    # no mark yet: a flat instance still has a known (zero) notional, a positioned one not
    assert BTC.heartbeat(Exposure(0, None, Fraction(0), "HALTED"), 1, 1).notional == 0
    assert BTC.heartbeat(Exposure(5, None, Fraction(0), "HALTED"), 1, 1).notional is None


@given(st.fractions(max_denominator=10**6).filter(lambda f: f.denominator in (1, 2, 4, 5, 8,
                                                                              10, 1000)))
def test_decimal_text_round_trips_exactly(value: Fraction) -> None:
    assert Fraction(Decimal(decimal_text(value))) == value


def test_decimal_text_forms() -> None:
    assert decimal_text(Fraction(0)) == "0"
    assert decimal_text(Fraction(-1, 8)) == "-0.125"
    assert decimal_text(Fraction(12_500)) == "12500"
    assert decimal_text(Fraction(1, 3)) == "0.333333333333333333"  # no finite form: 18 places


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.update(v=2), "v: expected 1"),
    (lambda r: r.update(position_lots="5"), "position_lots: expected int"),
    (lambda r: r.update(position_lots=True), "position_lots: expected int"),
    (lambda r: r.update(notional=1.5), "notional: expected decimal text"),
    (lambda r: r.update(notional="-1"), "notional: expected an absolute"),
    (lambda r: r.update(pnl="NaN"), "pnl: not a finite decimal"),
    (lambda r: r.update(pnl="1e-99999"), "pnl: exponent out of range"),
    (lambda r: r.update(pnl="9" * 65), "pnl: expected decimal text of 1..64"),
    (lambda r: r.update(lot_size="0"), "lot_size: expected a positive"),
    (lambda r: r.update(state="SLEEPING"), "state: expected one of"),
    (lambda r: r.pop("instance"), "instance: expected str"),
])
def test_bad_records_are_refused_with_the_field_named(mutate: object, message: str) -> None:
    record = orjson.loads(encode(hb("x")))
    mutate(record)  # type: ignore[operator]
    with pytest.raises(BadHeartbeat, match=message):
        decode(orjson.dumps(record))


def test_records_that_are_not_heartbeats() -> None:
    for data in (b"", b"[1]", b"not json", b"{" + b" " * 5000 + b"}"):
        with pytest.raises(BadHeartbeat):
            decode(data)
    record = orjson.loads(encode(hb("x")))
    record["added_later"] = {"by": "a newer version"}  # extra fields are ignored
    assert decode(orjson.dumps(record)).instance == "x"


def test_aggregate_is_gross_per_asset_and_sums_pnl_in_the_desk_currency() -> None:
    beats = [hb("a", lots=100, notional="600", pnl="-10"),
             hb("b", lots=-50, notional="300", pnl="4.5"),
             hb("c", lots=7, notional=None, pnl="1"),
             hb("d", base="ETH", notional="2000", pnl="-1"),
             hb("e", lots=0, quote="USDC", notional="100", pnl="-500")]
    agg = aggregate(beats, "USDT")
    btc = agg.assets["BTC"]
    # a long and a short do not offset: 600 + 300; e's 100 is USDC, not USDT: not summed
    assert btc.gross_notional == 900 and btc.not_comparable == ("e",)
    assert btc.net_position == Fraction(Decimal("0.00000057"))  # 100 - 50 + 7 + 0 lots
    assert btc.instances == ("a", "b", "c", "e") and btc.unknown == ("c",)
    assert agg.assets["ETH"].gross_notional == 2000
    assert agg.pnl == Fraction(Decimal("-5.5"))  # e's USDC is not summed with USDT
    assert agg.other_currency == ("e",) and "e" not in agg.instances


def test_notional_in_another_quote_currency_fails_an_asset_limit_closed() -> None:
    # an ETHBTC instance: its notional is in BTC, which must never be summed as USDT
    limits = FirmLimits(assets=(AssetLimit("ETH", Fraction(100_000), "reduce"),),
                        currency="USDT")
    ethusdt = hb("eth-usdt", base="ETH", notional="20000")
    ethbtc = hb("eth-btc", base="ETH", quote="BTC", notional="0.5")
    agg = aggregate([ethusdt, ethbtc], "USDT")
    assert agg.assets["ETH"].gross_notional == 20_000  # not 20,000.5
    (breach,) = evaluate(agg, limits, peak=None)  # cannot be checked: breached, saying why
    assert breach.name == "firm_notional_ETH" and breach.values["not_comparable"] == ["eth-btc"]
    assert breach.values["gross_notional"] == "20000" and breach.values["currency"] == "USDT"
    # a flat ETHBTC instance holds nothing: zero is zero in any currency
    flat = hb("eth-btc", base="ETH", quote="BTC", lots=0, notional="0")
    assert evaluate(aggregate([ethusdt, flat], "USDT"), limits, peak=None) == []


def test_unknown_pnl_is_published_as_null_and_left_out_of_the_desk() -> None:
    # 0.1 BTC bought at 60,000 after a restart, no book yet: cash - fees is -6,000 USDT,
    # which is the position's cost, not a loss
    cost_units = Fraction(-6_000) / Fraction(Decimal("0.01")) / Fraction(Decimal("1e-8"))
    beat = BTC.heartbeat(Exposure(10_000_000, None, cost_units, "HALTED"), 1, 1)
    assert beat.pnl is None and beat.notional is None
    assert orjson.loads(encode(beat))["pnl"] is None and decode(encode(beat)) == beat
    # flat, cash - fees is the whole PnL, and known
    flat = BTC.heartbeat(Exposure(0, None, Fraction(-10**10), "HALTED"), 1, 1)
    assert flat.pnl == -1
    limits = FirmLimits(currency="USDT", max_loss=Fraction(1000),
                        max_drawdown=Fraction(1000))
    agg = aggregate([beat, hb("b", pnl="50"), hb("c", pnl="-20")], "USDT")
    assert agg.pnl == 30 and agg.instances == ("b", "c") and agg.unknown_pnl == ("btc-a",)
    assert not agg.complete
    assert evaluate(agg, limits, peak=Fraction(30)) == []  # no -6,000 "loss"
    # unknown instances are named beside the desk values when a limit trips
    losing = aggregate([beat, hb("b", pnl="-1000")], "USDT")
    (loss,) = evaluate(losing, limits, peak=None)
    assert loss.values["unknown_pnl"] == ["btc-a"] and loss.values["instances"] == ["b"]
    # an incomplete sum never moves the peak; a complete one does
    peak = DeskPeak()
    assert peak.observe_desk(agg) is None
    peak.observe(Fraction(10))
    assert peak.observe_desk(agg) == 10
    assert peak.observe_desk(aggregate([hb("b", pnl="50")], "USDT")) == 50


def test_limits_breach_at_the_limit_with_the_values_that_tripped_them() -> None:
    limits = FirmLimits(assets=(AssetLimit("BTC", Fraction(900), "reduce"),
                                AssetLimit("ETH", Fraction(10**6), "kill")),
                        currency="USDT", max_loss=Fraction(5), max_loss_action="kill",
                        max_drawdown=Fraction(20), max_drawdown_action="reduce")
    agg = aggregate([hb("a", notional="600", pnl="-3"), hb("b", notional="300", pnl="-2")],
                    "USDT")
    breaches = {b.name: b for b in evaluate(agg, limits, peak=Fraction(10))}
    assert set(breaches) == {"firm_notional_BTC", "firm_loss"}
    notional = breaches["firm_notional_BTC"]
    assert notional.action == "reduce"
    assert notional.values["gross_notional"] == "900" and notional.values["limit"] == "900"
    assert notional.values["instances"] == ["a", "b"]
    assert breaches["firm_loss"].values["desk_pnl"] == "-5"
    # drawdown from the peak: 15 below 10 is 25 >= 20
    deeper = aggregate([hb("a", notional="1", pnl="-15")], "USDT")
    names = {b.name: b for b in evaluate(deeper, limits, peak=Fraction(10))}
    assert names["firm_drawdown"].values["drawdown"] == "25"
    assert names["firm_drawdown"].action == "reduce"
    assert limits.names() == [("firm_notional_BTC", "reduce"), ("firm_notional_ETH", "kill"),
                              ("firm_loss", "kill"), ("firm_drawdown", "reduce")]
    assert evaluate(aggregate([], "USDT"), limits, peak=None) == []


def test_desk_peak_and_link_health() -> None:
    peak = DeskPeak()
    assert peak.observe(Fraction(-1)) == -1 and peak.observe(Fraction(5)) == 5
    assert peak.observe(Fraction(2)) == 5
    peak.reset()
    assert peak.observe(Fraction(2)) == 2
    link = LinkHealth(grace_ns=1_000)
    assert not link.ready and not link.lost(10**9)  # never connected: not ready, not "lost"
    link.ok(100)
    link.failed()
    assert link.ready and not link.lost(1_100) and link.lost(1_101)
    assert link.silent_ns(1_101) == 1_001 and link.failures == 1
    link.ok(2_000)
    assert not link.lost(2_500) and link.failures == 0


def test_keys_share_one_cluster_slot_per_desk() -> None:
    keys = Keys("mmdaemon", "desk1")
    assert keys.heartbeat("btc-a") == "mmdaemon:{desk1}:hb:btc-a"
    assert keys.instances == "mmdaemon:{desk1}:instances"
    assert keys.kill == "mmdaemon:{desk1}:kill"
    assert keys.channel == "mmdaemon:{desk1}:control"
