"""The demo generator: deterministic, valid monoschema events with a realistic shape."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest
from growthbook.core import chooseVariation, gbhash, getBucketRanges

from tallystick.demo import experiment as demo_experiment
from tallystick.demo import generator
from tallystick.demo.generator import (
    EVENT_NAMES,
    EXPERIMENT,
    EXPERIMENT_EXPOSURE,
    FUNNEL,
    SESSION_END,
    SIGNIN_OPEN,
    DemoSpec,
    day_factor,
    generate,
    is_bot,
    summary,
)
from tallystick.flags.evaluate import compile_ruleset
from tallystick.flags.exposures import exposure_event
from tallystick.schema import Event

END = dt.date(2026, 6, 30)
Events = list[dict[str, Any]]


@pytest.fixture(scope="module")
def small() -> Events:
    return list(generate(users=60, days=30, end=END, seed=3))


@pytest.fixture(scope="module")
def large() -> Events:
    return list(generate(users=300, days=120, end=END, seed=7))


def _day(event: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(event["client_ts"][:10])


def test_same_seed_same_events_and_different_seed_different(small: Events) -> None:
    again = list(generate(users=60, days=30, end=END, seed=3))
    assert again == small
    other = list(generate(users=60, days=30, end=END, seed=4))
    assert other != small
    assert {e["event_id"] for e in other}.isdisjoint(e["event_id"] for e in small)


def test_every_event_validates_against_the_monoschema(small: Events) -> None:
    assert len(small) > 500
    decode = msgspec.json.Decoder(Event).decode
    for event in small:
        converted = msgspec.convert(event, Event)
        raw = msgspec.json.encode(event)
        assert len(raw) < 32 * 1024
        assert decode(raw) == converted
        assert event["name"] in EVENT_NAMES
        assert event["client_ts"].endswith("Z")
        assert event["sent_ts"] >= event["client_ts"]


def test_event_ids_are_unique_uuid4(small: Events) -> None:
    ids = [e["event_id"] for e in small]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_fast_uuid_matches_the_uuid_module() -> None:
    gen = generator._Gen(DemoSpec(users=0, days=1, end=END), 0)
    gen.getrandbits = random.Random(5).getrandbits
    reference = random.Random(5)
    for _ in range(2000):
        assert gen.uuid() == str(uuid.UUID(int=reference.getrandbits(128), version=4))


def test_sessions_are_contiguous_from_one_and_in_order(small: Events) -> None:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in small:
        sessions[event["session"]["id"]].append(event)
    assert len(sessions) > 50
    for events in sessions.values():
        assert [e["session"]["seq"] for e in events] == list(range(1, len(events) + 1))
        stamps = [e["client_ts"] for e in events]
        assert stamps == sorted(stamps)
        assert len({e["app"]["instance"] for e in events}) == 1
        web = events[0]["client"]["platform"] == "web"
        if web:
            assert events[0]["name"] == "session.start"
            assert all("page" in e for e in events)
        else:
            assert events[0]["client"]["library"] == "tallystick-python"
            assert all("page" not in e for e in events)


def test_timestamps_stay_in_the_window(large: Events) -> None:
    first = (END - dt.timedelta(days=119)).isoformat()
    after = (END + dt.timedelta(days=1)).isoformat()
    assert min(e["client_ts"] for e in large) >= first
    assert max(e["sent_ts"] for e in large) < after


def test_default_end_is_now_and_nothing_is_in_the_future() -> None:
    before = dt.datetime.now(dt.UTC)
    events = list(generate(users=40, days=2, seed=1))
    after = dt.datetime.now(dt.UTC)
    assert events
    latest = max(dt.datetime.fromisoformat(e["sent_ts"]) for e in events)
    assert latest <= after
    assert min(_day(e) for e in events) >= before.date() - dt.timedelta(days=1)


def test_identity_logged_in_and_anonymous_events(small: Events) -> None:
    logged_in = [e for e in small if e["user"]["is_logged_in"]]
    anonymous = [e for e in small if not e["user"]["is_logged_in"]]
    assert logged_in
    assert anonymous
    assert all(e["user"]["id"].startswith("u-") for e in logged_in)
    assert all("id" not in e["user"] and e["user"]["anonymous_id"] for e in anonymous)
    # Visitors who never sign in: anonymous ids that never appear next to a user id.
    stitched = {e["user"].get("anonymous_id") for e in logged_in}
    assert {e["user"]["anonymous_id"] for e in anonymous} - stitched


def test_summary_of_the_default_shape(large: Events) -> None:
    s = summary(large)
    assert s["events"] == len(large)
    names = s["by_name"]
    for name in EVENT_NAMES:
        assert names.get(name, 0) > 0, name
    assert 100 <= s["users"] <= 300
    assert s["bot_events"] > 0
    assert 0.005 < s["error_rate"] < 0.04


def test_funnel_drops_off_and_variant_b_converts_better(large: Events) -> None:
    stats = summary(large)
    for counts in stats["funnel"].values():
        assert counts[0] > 100
        assert counts == sorted(counts, reverse=True)
        assert counts[3] < counts[0]
    assert stats["conversion"]["b"] >= stats["conversion"]["a"]
    for event in large:
        if event["name"] in FUNNEL:
            assert event["data"]["variant"] in ("a", "b")
            assert event["data"]["duration_ms"] >= 1
            if EXPERIMENT in event.get("experiments", {}):
                assert event["experiments"][EXPERIMENT] == event["data"]["variant"]


def test_sites_adopt_and_users_grow(large: Events) -> None:
    spec = DemoSpec(users=300, days=120, end=END, sites=12)
    assert len({e["app"]["instance"] for e in large}) == 12
    first_month = spec.start + dt.timedelta(days=30)
    last_month = END - dt.timedelta(days=29)
    early = [e for e in large if _day(e) < first_month]
    late = [e for e in large if _day(e) >= last_month]

    def active(events: Events) -> int:
        return len({e["user"]["id"] for e in events if e["user"].get("id")})

    assert active(late) > 1.3 * active(early)
    assert len({e["app"]["instance"] for e in late}) > len({e["app"]["instance"] for e in early})
    signups = Counter(
        _day(e) < spec.start + dt.timedelta(days=60) for e in large if e["name"] == "user.signup"
    )
    assert signups[False] > signups[True]


def test_weekends_are_quieter(large: Events) -> None:
    weekday = Counter(_day(e).weekday() for e in large)
    assert weekday[5] + weekday[6] < 0.5 * (weekday[1] + weekday[2])
    assert day_factor(dt.date(2026, 12, 24)) < 0.3 * day_factor(dt.date(2026, 12, 10))


def test_errors_and_the_incident_week(large: Events) -> None:
    spec = DemoSpec(users=300, days=120, end=END)
    first, last = spec.incident
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for event in large:
        index = (_day(event) - spec.start).days
        (inside if first <= index < last else outside)[event["name"]] += 1
    rate_in = inside["error.shown"] / inside["page.view"]
    rate_out = outside["error.shown"] / outside["page.view"]
    assert 0.005 < rate_out < 0.03
    assert rate_in > 2 * rate_out
    codes = {e["data"]["code"] for e in large if e["name"] == "error.shown"}
    assert codes == {"404", "403", "500", "timeout"}


def test_workflow_runs_searches_and_agents(large: Events) -> None:
    runs = [e for e in large if e["name"] == "workflow.run"]
    statuses = Counter(e["data"]["status"] for e in runs)
    assert set(statuses) == {"success", "failed"}
    assert statuses["failed"] < statuses["success"]
    assert {e["client"]["library"] for e in runs} == {"tallystick-js", "tallystick-python"}
    searches = [e for e in large if e["name"] == "search.query"]
    assert all(e["data"]["query_length"] >= 1 and e["data"]["results"] >= 0 for e in searches)
    agents = {e["agent"]["user_agent"] for e in large}
    assert any("Googlebot" in a for a in agents)
    assert any("HeadlessChrome" in a for a in agents)
    assert any("Firefox/" in a for a in agents)
    assert any("Edg/" in a for a in agents)
    assert is_bot("Mozilla/5.0 (compatible; Googlebot/2.1)")
    assert not is_bot(None)
    views = [e for e in large if e["name"] == "page.view"]
    assert all(e["data"]["load_ms"] >= 1 for e in views)
    assert len({e["app"]["version"] for e in large}) >= 4


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="days"):
        list(generate(days=0, end=END))
    with pytest.raises(ValueError, match="sites"):
        list(generate(sites=0, end=END))


def test_more_sites_than_the_catalog() -> None:
    events = list(generate(users=80, days=60, end=END, sites=20, seed=2))
    instances = {e["app"]["instance"] for e in events}
    assert len(instances) > 12
    assert any(i.startswith("institute-") for i in instances)


# -- the signin-dialog experiment -------------------------------------------------------------


def _exposures(events: Events) -> Events:
    return [e for e in events if e["name"] == EXPERIMENT_EXPOSURE]


def _growthbook_variant(anonymous_id: str) -> str:
    """The variation the growthbook package assigns (independent of tallystick.flags)."""
    n = gbhash(EXPERIMENT, anonymous_id, 2)
    assert n is not None
    return ("a", "b")[chooseVariation(n, getBucketRanges(2, 1.0, [0.5, 0.5]))]


def test_one_exposure_per_browser_with_the_flags_engines_variant(large: Events) -> None:
    exposures = _exposures(large)
    browsers = [e["user"]["anonymous_id"] for e in exposures]
    assert len(browsers) > 150
    assert len(set(browsers)) == len(browsers)  # deduplicated, as the SDK does
    flags = compile_ruleset(demo_experiment.ruleset_document(), "prod")
    start = (DemoSpec(users=300, days=120, end=END).start + dt.timedelta(days=24)).isoformat()
    assert DemoSpec(users=300, days=120, end=END).experiment_start == 24
    for event in exposures:
        anon = event["user"]["anonymous_id"]
        evaluation = flags.evaluate("signin-dialog", {"anonymous_id": anon})
        # the SDK's exposure event, field for field
        sdk = exposure_event(evaluation)
        assert (event["name"], event["data"], event["experiments"]) == (
            sdk.name,
            sdk.data,
            sdk.experiments,
        )
        assert event["data"]["variation"] == _growthbook_variant(anon)
        assert event["data"]["hash_attribute"] == "anonymous_id"
        assert event["data"]["unit"] == anon
        assert event["client_ts"] >= start
        assert event["client"]["platform"] == "web"
    assert set(Counter(e["data"]["variation"] for e in exposures)) == {"a", "b"}


def test_a_browser_is_exposed_when_it_is_first_shown_the_dialog(large: Events) -> None:
    sessions: dict[str, Events] = defaultdict(list)
    for event in large:
        sessions[event["session"]["id"]].append(event)
    exposed: set[str] = set()
    shown_after_start: set[str] = set()
    for events in sorted(sessions.values(), key=lambda es: es[0]["client_ts"]):
        names = [e["name"] for e in events]
        if EXPERIMENT_EXPOSURE in names:
            at = names.index(EXPERIMENT_EXPOSURE)
            exposure = events[at]
            # in the session, just before the dialog opens, with the session's variant
            assert names[at + 1] == SIGNIN_OPEN
            assert events[at + 1]["data"]["variant"] == exposure["data"]["variation"]
            assert all(e["experiments"] == exposure["experiments"] for e in events)
            assert not exposure["user"]["is_logged_in"]
            exposed.add(exposure["user"]["anonymous_id"])
        opens = [e for e in events if e["name"] == SIGNIN_OPEN]
        if opens and EXPERIMENT in events[0].get("experiments", {}):
            shown_after_start.add(opens[0]["user"]["anonymous_id"])
        elif opens:
            assert opens[0]["data"]["variant"] == "a"  # before the start, or the monitor
    assert exposed == shown_after_start


def _bounce(events: Events) -> dict[str, tuple[int, float, float]]:
    """Per variant: exposed browsers, their bounce rate from their first exposure, and the
    variance of that ratio (delta method over browsers), in plain Python."""
    first: dict[str, tuple[str, str]] = {}
    for e in _exposures(events):
        first.setdefault(e["user"]["anonymous_id"], (e["client_ts"], e["data"]["variation"]))
    num: Counter[str] = Counter()
    den: Counter[str] = Counter()
    for e in events:
        anon = e["user"].get("anonymous_id")
        if e["name"] == SESSION_END and anon in first and e["client_ts"] >= first[anon][0]:
            den[anon] += 1
            num[anon] += e["data"]["pageviews"] == 1
    out = {}
    for variant in ("a", "b"):
        units = [a for a, (_, v) in first.items() if v == variant]
        n = len(units)
        xs, ys = [num[a] for a in units], [den[a] for a in units]
        mx, my = sum(xs) / n, sum(ys) / n
        vx = sum((x - mx) ** 2 for x in xs) / (n - 1)
        vy = sum((y - my) ** 2 for y in ys) / (n - 1)
        cxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (n - 1)
        r = mx / my
        out[variant] = (n, r, (vx - 2 * r * cxy + r * r * vy) / (my * my * n))
    return out


def test_variant_b_lowers_the_bounce_rate(large: Events) -> None:
    bounce = _bounce(large)
    (_, a, _), (_, b, _) = bounce["a"], bounce["b"]
    assert 0.05 < b < a < 0.2
    assert b < 0.8 * a
    s = summary(large)
    assert s["bounce_rate"] == pytest.approx({"a": a, "b": b})
    assert sum(s["exposures"].values()) == len(_exposures(large))
    assert s["conversion"]["b"] > s["conversion"]["a"] + 0.05


def test_at_the_default_size_the_effect_is_clear() -> None:
    """What `tally demo` builds by default: the bounce rate's difference is far beyond noise
    and the split of browsers is 50/50 within chance (no sample-ratio mismatch)."""
    events = list(generate(end=END))
    bounce = _bounce(events)
    (na, a, va), (nb, b, vb) = bounce["a"], bounce["b"]
    z = (b - a) / math.sqrt(va + vb)
    assert z < -4
    assert -0.5 < (b - a) / a < -0.2
    chi2 = (na - nb) ** 2 / (na + nb)  # 1 degree of freedom
    assert chi2 < 10.8  # p > 0.001
