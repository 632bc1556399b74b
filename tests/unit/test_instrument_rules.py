"""The venue's exchangeInfo parsed into exact rules (mmdaemon.venues.binance_rules), and the
``[instrument]`` section completed and checked against them (mmdaemon.instrument_config).
The bodies are constructed in Binance's real shapes (tests/exchange_info.py); the official
SDKs' response models parse every one of them, so the shapes are the venue's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
    ExchangeInformationResponse,
)
from binance_sdk_spot.rest_api.models import ExchangeInfoResponse

from mmdaemon.instrument_config import InstrumentConfig, apply_rules
from mmdaemon.venues.binance_rules import PriceBand, RulesError, parse_exchange_info
from tests.exchange_info import spot_body, spot_symbol, usdm_body, usdm_symbol

ETH_SPOT = spot_symbol("ETHUSDT", tick="0.01000000", step="0.00010000",
                       min_qty="0.00010000", min_notional="5.00000000")
ETH_USDM = usdm_symbol("ETHUSDT", tick="0.01", step="0.001", min_qty="0.001", notional="20")


def _body(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def test_the_fixtures_parse_into_the_official_sdks_models() -> None:
    spot = ExchangeInfoResponse.from_dict(spot_body(spot_symbol(), ETH_SPOT))
    assert spot is not None and spot.symbols is not None and len(spot.symbols) == 2
    usdm = ExchangeInformationResponse.from_dict(usdm_body(usdm_symbol(), ETH_USDM))
    assert usdm is not None and usdm.symbols is not None
    assert usdm.symbols[1].filters is not None and usdm.symbols[1].filters[5].notional == "20"


def test_spot_rules_of_another_symbol_than_btcusdt_are_read_exactly() -> None:
    rules = parse_exchange_info(_body(spot_body(spot_symbol(), ETH_SPOT)), "spot", "ETHUSDT")
    assert (rules.symbol, rules.status, rules.trading) == ("ETHUSDT", "TRADING", True)
    assert rules.tick_size == Decimal("0.01") and rules.step_size == Decimal("0.0001")
    assert rules.min_qty == Decimal("0.0001") and rules.max_qty == Decimal("9000")
    assert rules.min_notional == Decimal("5") and rules.size_places == 8
    assert (rules.min_price, rules.max_price) == (Decimal("0.01"), Decimal("1000000"))
    assert rules.price_band == PriceBand(Decimal(5), Decimal("0.2"), Decimal(5), Decimal("0.2"))
    assert "LIMIT_MAKER" in rules.order_types and rules.post_only_missing() == ""


def test_usdm_rules_come_from_min_notional_notional_and_percent_price() -> None:
    body = _body(usdm_body(usdm_symbol(), ETH_USDM))
    eth = parse_exchange_info(body, "usdm", "ETHUSDT")
    assert (eth.tick_size, eth.step_size, eth.min_qty) == (
        Decimal("0.01"), Decimal("0.001"), Decimal("0.001"))
    assert eth.min_notional == Decimal(20) and eth.size_places == 3
    assert eth.price_band == PriceBand(Decimal("1.05"), Decimal("0.95"), Decimal("1.05"),
                                       Decimal("0.95"))
    assert "GTX" in eth.time_in_force and eth.post_only_missing() == ""
    btc = parse_exchange_info(body, "usdm", "BTCUSDT")
    assert (btc.tick_size, btc.min_notional) == (Decimal("0.1"), Decimal(100))


def _without_filter(entry: dict[str, Any], name: str) -> dict[str, Any]:
    return {**entry, "filters": [f for f in entry["filters"] if f["filterType"] != name]}


def _with_field(entry: dict[str, Any], name: str, key: str, value: object) -> dict[str, Any]:
    return {**entry, "filters": [{**f, key: value} if f["filterType"] == name else f
                                 for f in entry["filters"]]}


@pytest.mark.parametrize(("entry", "market", "message"), [
    (_without_filter(ETH_SPOT, "PRICE_FILTER"), "spot",
     "Binance spot exchangeInfo of ETHUSDT: no PRICE_FILTER filter"),
    (_without_filter(ETH_SPOT, "LOT_SIZE"), "spot",
     "Binance spot exchangeInfo of ETHUSDT: no LOT_SIZE filter"),
    (_with_field(ETH_SPOT, "PRICE_FILTER", "tickSize", "abc"), "spot",
     "of ETHUSDT: PRICE_FILTER: tickSize: expected a positive decimal, got 'abc'"),
    (_with_field(ETH_SPOT, "PRICE_FILTER", "tickSize", "0.00000000"), "spot",
     "PRICE_FILTER: tickSize: expected a positive decimal, got '0.00000000'"),
    (_with_field(ETH_SPOT, "LOT_SIZE", "stepSize", 0.001), "spot",
     "LOT_SIZE: stepSize: expected a positive decimal as text, got 0.001"),
    (_with_field(ETH_SPOT, "NOTIONAL", "minNotional", "-5"), "spot",
     "NOTIONAL: minNotional: expected a decimal >= 0, got '-5'"),
    (_with_field(ETH_USDM, "MIN_NOTIONAL", "notional", None), "usdm",
     "Binance USD-M exchangeInfo of ETHUSDT: MIN_NOTIONAL: notional: expected a decimal"),
    (_with_field(ETH_USDM, "PERCENT_PRICE", "multiplierUp", "NaN"), "usdm",
     "PERCENT_PRICE: multiplierUp: expected a positive decimal, got 'NaN'"),
    ({**ETH_SPOT, "baseAssetPrecision": "8"}, "spot",
     "baseAssetPrecision: expected an integer number of decimals 0..18, got '8'"),
    ({**ETH_SPOT, "filters": [{"minPrice": "1"}]}, "spot",
     "filters[0]: expected an object with a filterType"),
    ({**ETH_USDM, "timeInForce": None}, "usdm", "timeInForce: expected a list of names"),
])
def test_a_missing_or_malformed_filter_is_named(entry: dict[str, Any], market: str,
                                                message: str) -> None:
    doc = spot_body(entry) if market == "spot" else usdm_body(entry)
    with pytest.raises(RulesError) as err:
        parse_exchange_info(_body(doc), market, "ETHUSDT")  # type: ignore[arg-type]
    assert message in str(err.value)


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>", "Binance spot exchangeInfo: not JSON"),
    (b'{"code":-1121,"msg":"Invalid symbol."}', "expected an object with a 'symbols' list"),
    (_body(spot_body(spot_symbol())), "symbol ETHUSDT is not listed"),
])
def test_a_body_without_the_symbol_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_exchange_info(body, "spot", "ETHUSDT")


def _rules(entry: dict[str, Any] = ETH_SPOT, market: str = "spot") -> Any:
    doc = spot_body(entry) if market == "spot" else usdm_body(entry)
    return parse_exchange_info(_body(doc), market, entry["symbol"])  # type: ignore[arg-type]


def test_a_config_that_leaves_the_grids_out_gets_the_venues() -> None:
    inst, filled = apply_rules(InstrumentConfig("binance-spot", "ETHUSDT"), _rules())
    assert filled == ("tick_size", "lot_size", "size_step_lots", "min_size_lots",
                      "min_notional")
    # the lot is the finest size the venue writes (8 decimals), the order step 10,000 lots
    assert inst == InstrumentConfig("binance-spot", "ETHUSDT", "0.01", "0.00000001", 10_000,
                                    10_000, "5")
    usdm, _ = apply_rules(InstrumentConfig("binance-usdm", "ETHUSDT"), _rules(ETH_USDM, "usdm"))
    assert (usdm.tick_size, usdm.lot_size, usdm.size_step_lots, usdm.min_size_lots,
            usdm.min_notional) == ("0.01", "0.001", 1, 1, "20")


def test_a_config_that_agrees_is_kept_as_written_and_a_stricter_floor_too() -> None:
    stated = InstrumentConfig("binance-usdm", "BTCUSDT", "0.1", "0.001", 1, 5, "150")
    inst, filled = apply_rules(stated, _rules(usdm_symbol(), "usdm"))
    assert (inst, filled) == (stated, ())


@pytest.mark.parametrize(("stated", "message"), [
    (InstrumentConfig("binance-spot", "ETHUSDT", tick_size="0.1"),
     "instrument.tick_size: the config says 0.1, Binance ETHUSDT's PRICE_FILTER tickSize "
     "is 0.01"),
    (InstrumentConfig("binance-spot", "ETHUSDT", lot_size="0.001"),
     "instrument.lot_size: the config says 0.001, which does not divide Binance ETHUSDT's "
     "finest size (baseAssetPrecision 8), 0.00000001: a lot must divide every size the "
     "venue uses"),
    (InstrumentConfig("binance-spot", "ETHUSDT", size_step_lots=1000),
     "instrument.size_step_lots: the config says 1000 (x lot 0.00000001 = 0.00001), "
     "Binance ETHUSDT's LOT_SIZE stepSize is 0.0001 (10000 lots)"),
    (InstrumentConfig("binance-spot", "ETHUSDT", min_size_lots=1),
     "instrument.min_size_lots: the config says 1 (x lot 0.00000001 = 0.00000001), below "
     "Binance ETHUSDT's LOT_SIZE minQty 0.0001 (10000 lots)"),
    (InstrumentConfig("binance-spot", "ETHUSDT", min_notional="1"),
     "instrument.min_notional: the config says 1, below Binance ETHUSDT's minimum notional 5"),
])
def test_a_config_that_disagrees_names_the_key_and_both_values(stated: InstrumentConfig,
                                                               message: str) -> None:
    with pytest.raises(ValueError) as err:
        apply_rules(stated, _rules())
    assert str(err.value) == message


def test_a_symbol_not_trading_or_without_post_only_orders_is_refused() -> None:
    halted = _rules({**ETH_SPOT, "status": "BREAK"})
    with pytest.raises(ValueError, match=r"instrument\.symbol: Binance ETHUSDT's status is "
                                         r"BREAK, not TRADING"):
        apply_rules(InstrumentConfig("binance-spot", "ETHUSDT"), halted)
    no_maker = _rules({**ETH_SPOT, "orderTypes": ["LIMIT", "MARKET"]})
    with pytest.raises(ValueError, match="does not list orderTypes LIMIT_MAKER"):
        apply_rules(InstrumentConfig("binance-spot", "ETHUSDT"), no_maker)
    no_gtx = _rules({**ETH_USDM, "timeInForce": ["GTC", "IOC"]}, "usdm")
    with pytest.raises(ValueError, match="does not list timeInForce GTX"):
        apply_rules(InstrumentConfig("binance-usdm", "ETHUSDT"), no_gtx)


@pytest.mark.parametrize(("stated", "entry", "message"), [
    (InstrumentConfig("binance-spot", "ETHUSDT", lot_size="1e-40"), ETH_SPOT,
     "instrument.lot_size: 1e-40 is too fine for Binance ETHUSDT's finest size "
     "(baseAssetPrecision 8), 0.00000001: more than 4611686018427387903 lots"),
    (InstrumentConfig("binance-spot", "ETHUSDT"), {**ETH_SPOT, "filters": [
        {**f, "minQty": "1e30"} if f["filterType"] == "LOT_SIZE" else f
        for f in ETH_SPOT["filters"]]},
     "instrument.lot_size: 0.00000001 is too fine for Binance ETHUSDT's LOT_SIZE minQty, "
     "1000000000000000000000000000000: more than 4611686018427387903 lots"),
])
def test_a_lot_too_fine_for_the_venues_sizes_is_refused_not_a_decimal_error(
        stated: InstrumentConfig, entry: dict[str, Any], message: str) -> None:
    """A size the core could not count in lots (the venue's sizes over the lot beyond
    MAX_UNITS, which decimal's % cannot even divide): a ValueError naming the key, which
    the command turns into exit 2, not a decimal.InvalidOperation traceback."""
    with pytest.raises(ValueError) as err:
        apply_rules(stated, _rules(entry))
    assert type(err.value) is ValueError and str(err.value) == message
