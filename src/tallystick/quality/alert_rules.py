"""Judging alert rules (pure: no I/O): measured counts in, a verdict and its message out.

``quality.alert_sql`` measures (DuckDB over the lake); this module decides whether a rule fires
and says why in words a person on call can act on; ``notice`` decides what an evaluation
announces given the rule's previous one. See ``control.definitions.Alert`` for the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tallystick.control.definitions import Alert

MIN_BASELINE_WEEKS: Final = 2
"""A volume rule judges against at least this many earlier weeks (or all of its ``weeks`` when
it asks for fewer): one week alone may have been unusual."""


@dataclass(frozen=True, slots=True)
class VolumeCounts:
    """Events of a stream in the window, and in the same window 1, 2, … weeks earlier."""

    current: int
    weeks: tuple[int | None, ...]
    """Week k−1 holds the count k weeks earlier; ``None``: the stream stored nothing in that
    window (it did not exist yet, or was down), so the week is no baseline."""


@dataclass(frozen=True, slots=True)
class RateCounts:
    """``part`` of ``whole``: events lacking a key of all events, failed events of stored plus
    failed, messages lost of messages expected. ``detail`` breaks ``part`` down for the
    message (``("data.project_id missing", 12)``)."""

    part: int
    whole: int
    detail: tuple[tuple[str, int], ...] = ()


Counts = VolumeCounts | RateCounts


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's outcome: whether it fires, the measured ``value`` (events, or a rate from 0 to
    1), what it was held against (``expected``: the baseline mean, or the highest rate allowed)
    and a message."""

    fired: bool
    value: float | None
    expected: float | None
    message: str


def _percent(rate: float) -> str:
    return f"{rate * 100:.3g} %"


def _count(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def _hours(alert: Alert) -> str:
    return f"the last {alert.window_hours:g} h"


def judge(alert: Alert, counts: Counts) -> Verdict:
    if isinstance(counts, VolumeCounts):
        return judge_volume(alert, counts)
    return judge_rate(alert, counts)


def judge_volume(alert: Alert, counts: VolumeCounts) -> Verdict:
    """Fires when the window's events fall below ``(1 − drop) ×`` or rise above ``(1 + spike)
    ×`` the mean of the earlier weeks that had data; quiet, saying why, without enough of them
    or when that mean is below ``min_events``."""
    now = counts.current
    seen = [n for n in counts.weeks if n is not None]
    needed = min(MIN_BASELINE_WEEKS, alert.weeks)
    head = f"{_count(now)} events in {_hours(alert)}"
    if len(seen) < needed:
        return Verdict(
            False,
            float(now),
            None,
            f"{head}; not enough baseline to judge: {len(seen)} of the {alert.weeks} earlier "
            f"weeks have data, {needed} needed",
        )
    mean = sum(seen) / len(seen)
    basis = (
        f"the mean of the same {alert.window_hours:g} h on the same weekday over "
        f"{len(seen)} earlier week{'s' if len(seen) > 1 else ''} ({_count(mean)})"
    )
    if mean < alert.min_events:
        return Verdict(
            False,
            float(now),
            mean,
            f"{head}; baseline too small to judge: {basis} is below min_events {alert.min_events}",
        )
    change = now / mean - 1
    if alert.drop is not None and now < (1 - alert.drop) * mean:
        return Verdict(
            True,
            float(now),
            mean,
            f"{head}: {_percent(-change)} below {basis}; the rule fires below "
            f"{_percent(alert.drop)} down",
        )
    if alert.spike is not None and now > (1 + alert.spike) * mean:
        return Verdict(
            True,
            float(now),
            mean,
            f"{head}: {_percent(change)} above {basis}; the rule fires above "
            f"{_percent(alert.spike)} up",
        )
    direction = "above" if change >= 0 else "below"
    return Verdict(False, float(now), mean, f"{head}: {_percent(abs(change))} {direction} {basis}")


_WHAT: Final = {
    # rule: (one part, several parts, the whole)
    "keys": ("event lacks or mistypes a key", "events lack or mistype a key", "events"),
    "failed_rate": ("event failed", "events failed", "events (stored + failed)"),
    "loss_rate": ("message was lost", "messages were lost", "messages expected"),
}


def judge_rate(alert: Alert, counts: RateCounts) -> Verdict:
    """Fires when ``part / whole`` is above ``max_rate``; quiet, saying so, when ``whole`` is
    below ``min_events``."""
    one, several, of = _WHAT[alert.rule]
    rate = counts.part / counts.whole if counts.whole else None
    if counts.whole < alert.min_events:
        return Verdict(
            False,
            rate,
            alert.max_rate,
            f"only {_count(counts.whole)} {of} in {_hours(alert)}: too few to judge "
            f"(min_events {alert.min_events})",
        )
    assert rate is not None
    text = (
        f"{_percent(rate)} of {_count(counts.whole)} {of} in {_hours(alert)}: "
        f"{_count(counts.part)} {one if counts.part == 1 else several}"
    )
    details = [f"{what} {_count(n)}" for what, n in counts.detail if n]
    if details:
        text += f" ({', '.join(details)})"
    fired = rate > alert.max_rate
    limit = f"above the limit of {_percent(alert.max_rate)}" if fired else "within the limit"
    if not fired:
        limit += f" of {_percent(alert.max_rate)}"
    return Verdict(fired, rate, alert.max_rate, f"{text}; {limit}")


def notice(previous: bool | None, fired: bool) -> str | None:
    """What an evaluation announces, given whether the rule fired at its previous evaluation
    (``None``: never evaluated): ``fired`` when it starts firing, ``resolved`` when it stops,
    nothing while it stays as it was."""
    if fired and not previous:
        return "fired"
    if previous and not fired:
        return "resolved"
    return None


def baseline_weeks(alert: Alert) -> Sequence[int]:
    """The weeks back that make up a volume rule's baseline (1..``weeks``)."""
    return range(1, alert.weeks + 1)
