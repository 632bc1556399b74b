"""How a venue's market keeps time, for the run's metrics: the time zone of its
hour-of-day tables, and its trading seconds a day and a year (the per-day extrapolations
and the Sharpe ratio's annualisation). A table of facts: no clock is read."""

from __future__ import annotations

from typing import Any

SECONDS_PER_DAY = 86_400
SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY  # crypto trades every day (market_hours: equities)


def market_hours(venue: str) -> dict[str, Any]:
    """How a venue's market keeps time, as :func:`mmdaemon.analytics.compute_metrics`
    options: the time zone of its hour-of-day tables, its trading seconds a year (the
    Sharpe's annualisation) and a day (the per-day extrapolations). Crypto trades around
    the UTC clock every day; US equities (LOBSTER) 6.5 h a day (09:30-16:00 New York), 252
    days a year."""
    if venue == "lobster":
        day = 6.5 * 3600
        return {"tz": "America/New_York", "trading_day_s": day, "seconds_per_year": 252 * day}
    return {"tz": "UTC", "trading_day_s": SECONDS_PER_DAY, "seconds_per_year": SECONDS_PER_YEAR}
