"""Fills stamped after the last sample (a live journal whose venue's clock runs ahead of the
daemon's samples, as a sim replaying faster than 1x does): the run's metrics still add up."""

from mmdaemon.analytics import SampleRow, compute_metrics
from mmdaemon.model import Fill, Instrument, Side

S = 1_000_000_000
T0 = 1_723_161_600 * S  # 2024-08-09 00:00 UTC


def sample(t: int, mid: int, position: int) -> SampleRow:
    return SampleRow(1, t, mid - 1, mid + 1, float(mid), mid - 1, 1, mid + 1, 1, position,
                     "ACTIVE", 0, 0, 0)


def test_fills_after_the_last_sample_are_in_the_hour_tables_which_sum_to_the_total() -> None:
    inst = Instrument("ETHUSDT", "0.01", "0.001")
    samples = [sample(T0 + k * S, 300_000 + k, 0) for k in range(5)]
    # two hours after the last sample, at a mid far from the last sample's
    late = [Fill(1, Side.BUY, 310_000, 7, 0, True, T0 + 7_200 * S, 1, 2 * 310_001),
            Fill(2, Side.SELL, 290_000, 3, 0, True, T0 + 7_300 * S, 2, 2 * 290_001)]
    metrics = compute_metrics(late, samples, inst)
    hours = metrics["by_hour"]
    assert sum(h["inventory_pnl"] for h in hours) == metrics["inventory_pnl"]
    assert metrics["inventory_pnl"] != 0  # the late fills are marked at the last sample
    assert {h["hour"] for h in hours if h["inventory_pnl"]} == {2}
