"""What every metric of :func:`mmdaemon.analytics.compute_metrics` means, with its unit:
the definitions section of the report (:mod:`mmdaemon.report`)."""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "total_pnl": "Mark-to-market PnL after fees and funding, quote currency: cash + position "
                 "x final mark - fees + funding, the final mark being the last sample's mid "
                 "(best bid + best ask)/2 (the last fill's price if no sample has a book). "
                 "Equals spread capture + inventory PnL - fees + funding exactly.",
    "spread_capture_pnl": "Sum over fills of side x size x (mid at the fill - price), quote "
                          "currency: the edge earned against the mid when each fill happened. "
                          "The mid at a fill is the book's before the event that filled us "
                          "(journals from before it was recorded: the latest sample's).",
    "inventory_pnl": "Sum over fills of side x size x (final mark - mid at the fill), quote "
                     "currency: the mark-to-market of the inventory the fills left behind "
                     "(= total - spread capture + fees).",
    "fees": "Sum of fees, quote currency; positive = paid, negative = rebates received.",
    "funding": "Sum of the funding payments on a perpetual-futures position, quote currency; "
               "positive = received, negative = paid (0 on spot and in a paper run). Each "
               "is journaled once, as the venue booked it.",
    "funding_payments": "Number of funding payments journaled.",
    "pnl_per_hour_extrapolated": "Total PnL / sampled hours, quote currency per hour: the "
                                 "run's average rate scaled to an hour, an extrapolation "
                                 "for runs shorter than that (sampled_s says how short).",
    "pnl_per_day_extrapolated": "Total PnL / sampled days, quote currency per day: the run's "
                                "average rate scaled to a day, an extrapolation for runs "
                                "shorter than a day (sampled_s says how short).",
    "sharpe": "Mean / standard deviation of the mark-to-market PnL changes over fixed "
              "intervals of event time (sharpe_interval_s, from the first sample with a book; "
              "the path starts at 0 and ends at the total PnL), times sqrt(seconds per year / "
              "interval), with a 365-day year. The last, partial interval counts, weighted by "
              "its length (merged into the one before when shorter than half an interval), so "
              "the mean has the sign of the total PnL. PnL changes, not returns on capital. "
              "None below sharpe_min_intervals intervals, with sharpe_unavailable_reason; "
              "sharpe_intervals is the count it rests on.",
    "max_drawdown": "Largest fall of the sampled mark-to-market PnL from its running peak "
                    "(the peak starts at 0), quote currency.",
    "currency": "The currency every money figure is in: the instrument's quote asset (USDT "
                "for BTCUSDT; USD for a LOBSTER equity).",
    "markout_bps": "Markout at horizon h, bps: 1e4 x sum over fills of side x size x (mid at "
                   "t+h - price) / sum of size x mid before the fill (notional-weighted: the "
                   "markout money per unit of notional traded). The mid before a fill is the "
                   "book's before the market event that filled us; the mid at t+h is the "
                   "book's after every event at or before t+h (exact, not a sample). "
                   "= edge_bps + mid_move_bps. Over the fills resolved at h only.",
    "edge_bps": "1e4 x sum of side x size x (mid before the fill - price) / sum of size x mid "
                "before the fill, over the fills resolved at h.",
    "mid_move_bps": "1e4 x sum of side x size x (mid at t+h - mid before the fill) / sum of "
                    "size x mid before the fill; negative = the market moved against us.",
    "markout_pnl": "Sum over the fills resolved at h of side x size x (mid at t+h - price), "
                   "in quote currency (named by currency: USDT for BTCUSDT).",
    "resolved_fills": "Fills whose markout at h is known. unresolved_fills = fills - "
                      "resolved: the run ended before an event came after t+h, the fill's "
                      "report came after such an event, a side of the book was empty, or the "
                      "journal predates exact markouts. Never counted in the rates.",
    "fills_with_sampled_mid": "Fills whose mid at the fill is a report sample's (taken at "
                              "the fill, i.e. after the event that filled us: a journal "
                              "from before exact mids); exact + sampled + without = fills.",
    "mid_at_fill_age_ms_median": "Median age, ms, of the sample whose mid serves as the mid "
                                 "at a fill, over fills the journal has no exact mid before "
                                 "for (fills_with_exact_mid have it; None when all do). The "
                                 "split between spread capture and inventory PnL (not the "
                                 "total) is only as good as this is small.",
    "win_rate": "Lots with a positive markout (mid at t+h better for us than our price) / "
                "lots resolved, at the shortest horizon (per horizon in markouts). Zero "
                "markouts are neither wins nor negative.",
    "negative_markout_rate": "Lots with a negative markout (side x (mid at t+h - price) < 0: "
                             "the mid at t+h is worse for us than our own price) / lots "
                             "resolved, at the shortest horizon.",
    "adverse_move_rate": "Lots after which the mid moved against us at all (side x (mid at "
                         "t+h - mid before the fill) < 0), whatever the edge / lots resolved, "
                         "at the shortest horizon.",
    "avg_spread_captured_bps": "Size-weighted mean of side x (mid at the fill - price) / mid "
                               "at the fill x 1e4, bps, over fills with a mid.",
    "avg_abs_inventory": "Time-weighted mean of |position| over the samples (each sample "
                         "holds until the next one of its run), base currency.",
    "max_abs_inventory": "Largest |position| reached, after any fill or at any sample, base "
                         "currency.",
    "inventory_turnover": "Traded volume (both sides) / time-weighted mean |position|: how "
                          "many times the average inventory was turned over in the run; "
                          "inventory_turnover_per_day_extrapolated divides by the sampled "
                          "days (an extrapolation for runs shorter than a day).",
    "fill_rate": "Fills per order request that offered liquidity (places + amends).",
    "order_to_trade": "Order requests (places + amends + cancels, from the samples' "
                      "counters, summed over runs) per fill.",
    "quote_uptime": "Share of sampled time with a two-sided quote whose spread, "
                    "(ask - bid) / ((ask + bid)/2) x 1e4, is at most max_spread_bps.",
    "two_sided_share": "Share of sampled time quoting both sides, whatever the spread.",
    "quoted_spread_bps_mean": "Time-weighted mean quoted spread while two-sided, bps of the "
                              "quote's midpoint.",
    "market_spread_bps_mean": "Time-weighted mean of the market's best-bid/best-ask spread, "
                              "bps of the mid.",
    "two_sided_samples": "Samples quoting both sides, and two_sided_s the time they held "
                         "(s): the sample size of quoted_spread_bps_mean.",
    "market_samples": "Samples with a two-sided market book, and market_s the time they held "
                      "(s): the sample size of market_spread_bps_mean.",
    "marked_samples": "Samples with a two-sided book, each a point of the PnL path behind the "
                      "drawdown and the Sharpe ratio.",
    "fills_with_mid": "Fills with a mid at the fill (exact or sampled): the sample size of "
                      "avg_spread_captured_bps.",
    "by_hour": "The same metrics per hour of day in the time zone tz: fills, volume and "
               "markouts by the fill's time; inventory PnL by the time of the sample that "
               "closes each step; sampled time, inventory, uptime and order requests by the "
               "sample's time. PnL and fills of all hours sum to the totals; markout_fills and "
               "markout_lots are the fills and lots resolved at the short horizon behind "
               "the markout figures of the hour.",
}
"""What every reported metric means, with its unit (rendered by :mod:`mmdaemon.report`)."""
