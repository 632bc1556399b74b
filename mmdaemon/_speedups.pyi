"""Types of the compiled module built from _speedups.c (see mmdaemon/speedups.py)."""

from collections.abc import Callable, Sequence
from typing import Any, overload

from mmdaemon.book import BookSide as _ReferenceSide
from mmdaemon.model import Level, MarketEvent

class Decoder:
    def __init__(
        self,
        symbol: str,
        price_unit: int,
        price_exp: int,
        size_unit: int,
        size_exp: int,
        price_parse: Callable[[object], int],
        size_parse: Callable[[object], int],
        top_cls: type[tuple[Any, ...]],
        trade_cls: type[tuple[Any, ...]],
        buy: object,
        sell: object,
        loads: Callable[[bytes | str], Any],
        levels_fallback: Callable[[list[list[str]]], list[Level]],
        ticker_fallback: Callable[[dict[str, Any], int], list[MarketEvent]],
        trade_fallback: Callable[[dict[str, Any], int], list[MarketEvent]],
        msg_fallback: Callable[[object, int], list[MarketEvent]],
        decode_fallback: Callable[[int, bytes | str], list[MarketEvent]],
        depth: Callable[..., list[MarketEvent]],
        snapshot: Callable[..., list[MarketEvent]],
        usdm: bool,
    ) -> None: ...
    def decode(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]: ...
    def levels(self, raw: list[list[str]]) -> list[Level]: ...
    def book_ticker(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]: ...
    def trade(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]: ...

class Levels(Sequence[Level]):
    """Packed (price, size) levels of a scanned depth diff or snapshot; equal to a list of
    tuples."""

    @overload
    def __getitem__(self, index: int) -> Level: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Level]: ...
    def __len__(self) -> int: ...

class BookSide(_ReferenceSide):
    """The compiled book side: the interface of mmdaemon.book.BookSide; ``levels`` is a
    new dict on every read."""
