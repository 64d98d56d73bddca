"""Calendar arithmetic for periods (pure): a period is named by its first UTC date."""

from __future__ import annotations

import datetime as dt

from tallystick.metrics.params import Grain


def period_start(day: dt.date, grain: Grain) -> dt.date:
    """The first date of the day, week (Monday) or calendar month containing ``day``."""
    if grain == "day":
        return day
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def add_periods(start: dt.date, grain: Grain, k: int) -> dt.date:
    """The start of the period ``k`` periods after the one containing ``start``."""
    start = period_start(start, grain)
    if grain == "day":
        return start + dt.timedelta(days=k)
    if grain == "week":
        return start + dt.timedelta(weeks=k)
    months = start.year * 12 + (start.month - 1) + k
    return dt.date(months // 12, months % 12 + 1, 1)


def periods_between(date_from: dt.date, date_to: dt.date, grain: Grain) -> list[dt.date]:
    """Starts of every period intersecting ``[date_from, date_to]`` (inclusive), ascending."""
    out = [period_start(date_from, grain)]
    while (nxt := add_periods(out[-1], grain, 1)) <= date_to:
        out.append(nxt)
    return out
