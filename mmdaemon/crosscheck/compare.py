"""The comparison: our fills against hftbacktest's, matched one to one, each one left
over classified by why it differs (a difference of rule, or unexplained), and the table
(see :mod:`mmdaemon.crosscheck`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mmdaemon.crosscheck.backtest import Print, TheirRun
from mmdaemon.crosscheck.our_log import FillKey
from mmdaemon.model import Instrument, Side

TRADE_THROUGH = "trade through our price: we fill the print's size, hftbacktest the whole order"
REST_OF_ORDER = "rest of an order hftbacktest had filled whole on a trade through"
SELF_CROSS = ("post-only against our own resting order: we refuse it, hftbacktest (our "
              "orders are not in its book) accepts it")
RULE_CLASSES = (TRADE_THROUGH, REST_OF_ORDER, SELF_CROSS)
"""Differences of rule, not of implementation:

- A public trade printed at a price worse than ours (a buy above our ask) means the market
  went through our order: our venue fills us up to that print's size, print by print (the
  sweep's prints add up to what really traded through us), where hftbacktest's
  partial-fill exchange fills the whole order on the first print (its documented "full
  execution" condition). Our order log goes on as our daemon reacted to the partial fill
  (it requotes the rest), so the rest of that order fills later on our side only.
- A post-only order (or amend) at or through our own resting opposite order would trade
  with it on the venue: our venue refuses it as crossing, as the venue would. hftbacktest
  keeps our orders out of its book and checks the public book only, so it accepts it and
  may fill it. Counted so only when our log shows such an order of ours resting then
  (:func:`mmdaemon.crosscheck.our_log.read_self_crosses`)."""

Pair = tuple[FillKey | None, FillKey | None]


@dataclass
class Agreement:
    """Our fills against hftbacktest's, one to one (see :mod:`mmdaemon.crosscheck`)."""

    matched: list[FillKey]
    ours_only: list[FillKey]
    theirs_only: list[FillKey]
    classes: dict[str, list[Pair]]  # why, (ours, theirs)
    ghosts: int = 0  # hftbacktest fills of amend replacements our venue would have refused

    @staticmethod
    def volume(fills: Iterable[FillKey]) -> int:
        return sum(f.size for f in fills)

    @property
    def ours(self) -> int:
        return len(self.matched) + len(self.ours_only)

    @property
    def theirs(self) -> int:
        return len(self.matched) + len(self.theirs_only)

    @property
    def ours_volume(self) -> int:
        return self.volume(self.matched) + self.volume(self.ours_only)

    @property
    def theirs_volume(self) -> int:
        return self.volume(self.matched) + self.volume(self.theirs_only)

    @property
    def matched_share(self) -> float:
        """Matched fills / our fills (1.0 when neither side has any)."""
        return len(self.matched) / self.ours if self.ours else float(not self.theirs)

    @property
    def volume_gap(self) -> float:
        """(their volume - ours) / ours; 0.0 when both are 0."""
        ours = self.ours_volume
        if not ours:
            return 0.0 if not self.theirs_volume else float("inf")
        return (self.theirs_volume - ours) / ours

    @property
    def unexplained(self) -> int:
        """Fills (either side) left over by anything but a difference of rule."""
        return sum(len(pairs) for why, pairs in self.classes.items()
                   if why not in RULE_CLASSES)

    def _alike(self, fills: Iterable[FillKey]) -> list[FillKey]:
        ruled = {f.order_id for why in RULE_CLASSES for pair in self.classes.get(why, [])
                 for f in pair if f is not None}
        return [f for f in fills if f.order_id not in ruled]

    @property
    def alike_share(self) -> float:
        """Among the fills of orders both models treat by the same rules (no difference of
        :data:`RULE_CLASSES` on them): matched / (matched + either side's unmatched). This
        compares the implementations where the rules agree; 1.0 when there are none."""
        matched = len(self._alike(self.matched))
        total = matched + len(self._alike(self.ours_only)) + len(self._alike(self.theirs_only))
        return matched / total if total else 1.0

    @property
    def alike_volume_gap(self) -> float:
        """:attr:`volume_gap` over the fills of orders both models treat alike."""
        ours = self.volume(self._alike((*self.matched, *self.ours_only)))
        theirs = self.volume(self._alike((*self.matched, *self.theirs_only)))
        if not ours:
            return 0.0 if not theirs else float("inf")
        return (theirs - ours) / ours

    def goal_met(self, share: float = 0.95, volume: float = 0.05) -> bool:
        """The issue's goal: ``share`` of our fills matched one to one and the filled
        volumes within ``volume`` of each other."""
        return self.matched_share >= share and abs(self.volume_gap) <= volume


def compare(ours: Sequence[FillKey], their_run: TheirRun, prints: dict[int, list[Print]],
            self_crosses: dict[int, int] | None = None) -> Agreement:
    """Match fills exactly, then name why each one left over differs."""
    left = Counter(their_run.fills)
    matched: list[FillKey] = []
    ours_only: list[FillKey] = []
    for fill in ours:
        if left[fill]:
            left[fill] -= 1
            matched.append(fill)
        else:
            ours_only.append(fill)
    theirs_only = sorted(left.elements(), key=lambda f: (f.ts_ns, f.order_id))
    classes = _classify(ours_only, theirs_only, their_run, prints, self_crosses or {})
    return Agreement(matched, ours_only, theirs_only, classes, len(their_run.ghost_fills))


def _through(fill: FillKey, prints: dict[int, list[Print]]) -> bool:
    """A print at the fill's time traded through its price (beyond it, against it)."""
    for p in prints.get(fill.ts_ns, ()):
        if fill.side is Side.SELL and p.aggressor is Side.BUY and p.price > fill.price:
            return True
        if fill.side is Side.BUY and p.aggressor is Side.SELL and p.price < fill.price:
            return True
    return False


def _classify(ours_only: Sequence[FillKey], theirs_only: Sequence[FillKey],
              their_run: TheirRun, prints: dict[int, list[Print]],
              self_crosses: dict[int, int]) -> dict[str, list[Pair]]:
    """Pair the unmatched fills of one order at one time, then name each difference."""
    classes: dict[str, list[Pair]] = defaultdict(list)
    theirs_at = {(f.order_id, f.ts_ns): f for f in theirs_only}
    through_at: dict[int, int] = {}  # order: time of its first trade-through difference
    rest: list[FillKey] = []
    for fill in ours_only:
        other = theirs_at.pop((fill.order_id, fill.ts_ns), None)
        if other is None:
            rest.append(fill)
        elif fill.size < other.size and _through(fill, prints):
            classes[TRADE_THROUGH].append((fill, other))
            through_at.setdefault(fill.order_id, fill.ts_ns)
        else:
            why = "same event, we filled less" if fill.size < other.size else \
                "same event, we filled more"
            classes[why].append((fill, other))
    for fill in rest:
        since = through_at.get(fill.order_id)
        if since is not None and since < fill.ts_ns:
            classes[REST_OF_ORDER].append((fill, None))
        else:
            classes[_why_ours_only(fill, their_run)].append((fill, None))
    for fill in theirs_at.values():
        refused = self_crosses.get(fill.order_id)
        if refused is not None and refused <= fill.ts_ns:
            classes[SELF_CROSS].append((None, fill))
        else:
            classes["hftbacktest only"].append((None, fill))
    return dict(classes)


def _why_ours_only(fill: FillKey, their_run: TheirRun) -> str:
    history = their_run.history.get(fill.order_id)
    if history is None:
        return "ours only: the order never reached hftbacktest"
    closed = [what for when, what in history if when <= fill.ts_ns]
    if closed and closed[-1] == "filled":
        return "ours only: hftbacktest had filled the order already"
    if closed and closed[-1] == "expired":
        return "ours only: hftbacktest refused the order (post-only cross)"
    if closed and closed[-1] == "canceled":
        return "ours only: hftbacktest had the order cancelled"
    return "ours only: resting in hftbacktest, not reached"


def table(agreement: Agreement, instrument: Instrument, title: str) -> str:
    """The agreement table and the classes of difference, as Markdown."""
    lot = instrument.lot_size

    def vol(lots: int) -> str:
        return f"{lots * lot:f}".rstrip("0").rstrip(".") or "0"

    a = agreement
    lines = [
        f"### {title}",
        "",
        "| | fills | volume |",
        "|---|---:|---:|",
        f"| ours | {a.ours} | {vol(a.ours_volume)} |",
        f"| hftbacktest | {a.theirs} | {vol(a.theirs_volume)} |",
        f"| matched one to one | {len(a.matched)} ({a.matched_share:.1%} of ours) | "
        f"{vol(a.volume(a.matched))} |",
        f"| ours only | {len(a.ours_only)} | {vol(a.volume(a.ours_only))} |",
        f"| hftbacktest only | {len(a.theirs_only)} | {vol(a.volume(a.theirs_only))} |",
        f"| volume, hftbacktest vs ours | | {a.volume_gap:+.2%} |",
        f"| orders both models treat alike: matched, volume gap | {a.alike_share:.1%} | "
        f"{a.alike_volume_gap:+.2%} |",
    ]
    if a.ghosts:
        lines.append(f"| hftbacktest fills of amends we would have refused (left out) | "
                     f"{a.ghosts} | |")
    if a.classes:
        lines += ["", "| difference | count | example: ours / hftbacktest (order, side, "
                      "price ticks, lots, ns) |", "|---|---:|---|"]
        for why, pairs in sorted(a.classes.items(), key=lambda kv: -len(kv[1])):
            ours, theirs = pairs[0]
            lines.append(f"| {why} | {len(pairs)} | {_fill_text(ours)} / "
                         f"{_fill_text(theirs)} |")
    return "\n".join(lines)


def _fill_text(fill: FillKey | None) -> str:
    if fill is None:
        return "-"
    return f"{fill.order_id} {fill.side.name} {fill.price} {fill.size} {fill.ts_ns}"
