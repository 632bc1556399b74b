"""Our side of the cross-check: the dry run's order log (``orders.csv``) and fills
(``fills.csv``) as ``mmdaemon export`` writes them, read into the actions we sent and the
fills we got (see :mod:`mmdaemon.crosscheck`)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from mmdaemon.model import Side

ACTION_EVENTS = ("place", "amend", "cancel")


class CrossCheckError(ValueError):
    """Input the cross-check cannot use: names the file or setting and the fix."""


class Action(NamedTuple):
    """One order action we sent: ``kind`` place / amend / cancel, at ``ts_ns`` (daemon
    clock); ``price`` ticks and ``size`` lots (total size) for place and amend."""

    ts_ns: int
    kind: str
    order_id: int
    side: Side
    price: int
    size: int


class FillKey(NamedTuple):
    """A fill as compared: order, side, price (ticks), size (lots), venue time (ns, our
    clock). Fills of one order at one time are summed into one."""

    order_id: int
    side: Side
    price: int
    size: int
    ts_ns: int


def _int(row: dict[str, str], key: str, path: Path, line: int) -> int:
    text = row.get(key) or ""
    try:
        return int(text)
    except ValueError:
        raise CrossCheckError(f"{path}:{line}: column {key!r}: expected an integer, got "
                              f"{text!r} (write it with 'mmdaemon export')") from None


def _side(text: str, path: Path, line: int) -> Side:
    try:
        return Side[text.strip().upper()]
    except KeyError:
        raise CrossCheckError(f"{path}:{line}: column 'side': expected BUY or SELL, got "
                              f"{text!r}") from None


def _rows(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise CrossCheckError(f"{path}: cannot read it: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise CrossCheckError(f"{path}: no column {', '.join(missing)}: expected the CSV "
                                  "that 'mmdaemon export' writes")
        yield from enumerate(reader, start=2)


def read_actions(path: Path) -> list[Action]:
    """Our ``place`` / ``amend`` / ``cancel`` rows of an ``orders.csv``, in file order (the
    journal's, which is sending order)."""
    out: list[Action] = []
    for line, row in _rows(path, ("ts_ns", "event", "order_id", "side", "price_ticks",
                                  "size_lots")):
        kind = row["event"]
        if kind not in ACTION_EVENTS:
            continue  # a venue answer
        priced = kind != "cancel"
        out.append(Action(
            _int(row, "ts_ns", path, line), kind, _int(row, "order_id", path, line),
            _side(row["side"], path, line),
            _int(row, "price_ticks", path, line) if priced else 0,
            _int(row, "size_lots", path, line) if priced else 0))
    return out


def read_self_crosses(path: Path) -> dict[int, int]:
    """Orders of an ``orders.csv`` that our venue ended as crossing *our own* resting order:
    a post-only place rejected, or an amend that would cross cancelled, while an order of
    ours on the other side rested at or through the price asked (as the log's answers show
    it: acknowledged and not yet filled or closed). Order id -> the time of that answer
    (ns, our clock)."""
    out: dict[int, int] = {}
    asked: dict[int, tuple[Side, int]] = {}  # order: side and price of its last request
    resting: dict[int, tuple[Side, int]] = {}  # acknowledged, open orders: side, price
    for line, row in _rows(path, ("ts_ns", "event", "order_id", "side", "price_ticks",
                                  "reason")):
        kind, order_id = row["event"], _int(row, "order_id", path, line)
        if kind in ("place", "amend"):
            asked[order_id] = (_side(row["side"], path, line),
                               _int(row, "price_ticks", path, line))
        elif kind == "ack":
            resting[order_id] = (_side(row["side"], path, line),
                                 _int(row, "price_ticks", path, line))
        elif kind in ("filled", "canceled", "reject", "expired"):
            resting.pop(order_id, None)
            if "would cross" in row["reason"] and order_id in asked:
                side, price = asked[order_id]
                if any(other is not side and (o_price <= price if side is Side.BUY
                                              else o_price >= price)
                       for other, o_price in resting.values()):
                    out.setdefault(order_id, _int(row, "ts_ns", path, line))
    return out


def read_fills(path: Path) -> list[FillKey]:
    """The fills of a ``fills.csv``, at the venue's time (``venue_ns``, ours: the event
    that filled us), summed per (order, time)."""
    sums: dict[tuple[int, Side, int, int], int] = defaultdict(int)
    for line, row in _rows(path, ("venue_ns", "order_id", "side", "price_ticks",
                                  "size_lots")):
        key = (_int(row, "order_id", path, line), _side(row["side"], path, line),
               _int(row, "price_ticks", path, line), _int(row, "venue_ns", path, line))
        sums[key] += _int(row, "size_lots", path, line)
    return sorted((FillKey(o, s, p, lots, t) for (o, s, p, t), lots in sums.items()),
                  key=lambda f: (f.ts_ns, f.order_id))
