"""The order-entry protocol's frames for a requote (:class:`QuoteFrames`, built with less
work on the wire-to-wire path, #23) are byte for byte what the Binance API module builds,
and their signatures are the ones the sim checks."""

from __future__ import annotations

import itertools

import orjson
import pytest

from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Side
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_orders import QuoteFrames, check_limit_maker

INSTR = BINANCE_SPOT_BTCUSDT
CASES = list(itertools.product(
    (Side.BUY, Side.SELL),
    (1, 9_700_012, 12_345_678_901),  # ticks
    (1, 1000, 123_456_789),  # lots
    ("mmsim-0", "mmsim-1f", "a-ffffffffffffffff"),
))


@pytest.mark.parametrize("window", [None, 5000, 60_000])
def test_places_and_replaces_are_the_api_modules_frames_byte_for_byte(
        window: int | None) -> None:
    creds = api.Credentials("k" * 60 + "{0}}", "s3cr3t/+={1}", window)  # braces: text
    frames = QuoteFrames(INSTR, creds)
    for n, (side, price, size, client_id) in enumerate(CASES):
        ts = 1_765_000_000_000 + n
        assert frames.place(side, price, size, client_id, n, ts) == api.order_place(
            INSTR, side, price, size, client_id, request_id=n, creds=creds, timestamp_ms=ts)
        assert frames.cancel_replace(client_id, side, price, size, n, ts) == \
            api.order_cancel_replace(INSTR, client_id, side, price, size, request_id=n,
                                     creds=creds, timestamp_ms=ts)


def test_the_signature_is_the_one_the_sim_accepts_and_a_changed_byte_is_refused() -> None:
    creds = api.Credentials("key-1", "secret-1", 5000)
    frame = orjson.loads(QuoteFrames(INSTR, creds).cancel_replace(
        "mmsim-2a", Side.SELL, 9_700_012, 1000, 7, 1_765_000_000_000))
    params = frame["params"]
    assert wire.verify_signature("secret-1", params)
    assert not wire.verify_signature("secret-2", params)
    params["price"] = "97000.13"
    assert not wire.verify_signature("secret-1", params)


def test_its_repr_shows_no_secret() -> None:
    frames = QuoteFrames(INSTR, api.Credentials("key-1", "very-secret", None))
    assert "very-secret" not in repr(frames) and "key-1" not in repr(frames)


@pytest.mark.parametrize("price,size", [(0, 1), (1, 0), (-5, 1), (True, 1), (1, 2.0),
                                        (1.5, 1), ("1", 1), (9_700_012, 1000)])
def test_the_check_before_a_frame_refuses_what_the_api_module_refuses_with_its_words(
        price: object, size: object) -> None:
    try:
        api.limit_maker_params(INSTR, Side.BUY, price, size)  # type: ignore[arg-type]
    except ValueError as exc:
        with pytest.raises(ValueError) as ours:
            check_limit_maker(price, size)  # type: ignore[arg-type]
        assert str(ours.value) == str(exc)
    else:
        check_limit_maker(price, size)  # type: ignore[arg-type]
