"""Exact decimal conversion at the codec edge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmdaemon.model import BINANCE_SPOT_BTCUSDT, MAX_UNITS, DecimalScaler, Instrument


def test_binance_price_is_exact_ticks() -> None:
    assert DecimalScaler("0.01").to_units("61837.63000000") == 6183763
    # a float path would give 6183762.999999999 -> 6183762 with int()
    assert DecimalScaler("0.1").to_units("61800.20") == 618002
    assert DecimalScaler("0.00000001").to_units("3.78826000") == 378826000
    assert DecimalScaler("5").to_units("15") == 3
    assert DecimalScaler("0.01").to_units("7") == 700


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1.0", "negative value"),
        ("abc", "not a plain decimal"),
        ("", "not a plain decimal"),
        ("1e5", "not a plain decimal"),
        ("1_000", "not a plain decimal"),
        (" 7", "not a plain decimal"),
        ("٣", "not a plain decimal"),  # non-ASCII digit that int() would accept
        ("1.2.3", "not a plain decimal"),
        ("61837.635", "not a multiple of 0.01"),
    ],
)
def test_bad_decimal_strings_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        DecimalScaler("0.01").to_units(text)


@given(
    units=st.integers(min_value=0, max_value=10**15),
    unit=st.sampled_from(["0.01", "0.1", "0.00000001", "0.001", "1", "0.05", "25"]),
    extra_zeros=st.integers(min_value=0, max_value=6),
)
def test_round_trip_is_exact(units: int, unit: str, extra_zeros: int) -> None:
    scaler = DecimalScaler(unit)
    text = scaler.to_str(units, 8) + ("0" * extra_zeros if "." in scaler.to_str(units, 8) else "")
    assert scaler.to_units(text) == units
    assert scaler.to_decimal(units) == Decimal(units) * Decimal(unit)


def test_cache_is_bounded() -> None:
    scaler = DecimalScaler("0.01", max_cache=8)
    for i in range(100):
        assert scaler.to_units(f"{i}.00") == i * 100
    assert len(scaler.memo) <= 8


def test_instrument_formats_prices_and_sizes() -> None:
    inst = BINANCE_SPOT_BTCUSDT
    assert inst.price_str(6183763) == "61837.63"
    assert inst.size_str(378826000) == "3.78826000"
    with pytest.raises(ValueError, match="size_step_lots"):
        Instrument("X", "0.01", "1", size_step_lots=0)
    with pytest.raises(ValueError, match="must be a positive decimal"):
        Instrument("X", "0", "1")


def test_absurdly_long_decimal_text_is_refused_before_any_arithmetic() -> None:
    scaler = DecimalScaler("0.01")
    with pytest.raises(ValueError, match="characters"):
        scaler.to_units("1." + "0" * 1_000_000)
    assert len(scaler._steps) == 0  # nothing computed or cached for it


@given(units=st.integers(min_value=-(10**30), max_value=10**30),
       unit=st.sampled_from(["0.12345678901", "0.01000000", "0.00000001", "25", "1E+1"]))
def test_decimal_text_of_units_is_exact_however_many_digits(units: int, unit: str) -> None:
    # a Decimal product rounds to the context's 28 digits: a fine unit times a large count
    # would be written as a price the core never decided
    scaler = DecimalScaler(unit)
    coefficient, exponent = Decimal(unit).as_tuple()[1:]
    assert isinstance(exponent, int)
    digits = str(abs(units) * int("".join(map(str, coefficient))))
    expected = Decimal((0 if units >= 0 else 1, tuple(int(d) for d in digits), exponent))
    assert scaler.to_decimal(units).as_tuple() == expected.as_tuple()
    if 0 <= units <= MAX_UNITS:  # what the core holds reads back as it was
        assert scaler.to_units(scaler.to_str(units, max(0, -exponent))) == units
