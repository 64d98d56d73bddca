"""Catalog search: every word must match; a name match ranks above a description, owner or team
match; scores are the documented weights added up."""

from __future__ import annotations

import datetime as dt

import pytest

from tallystick.catalog.fields import FieldInfo
from tallystick.catalog.search import Hit, SearchError, search
from tallystick.control.definitions import Stream
from tallystick.metrics.catalog import MetricDef

SEEN = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

STREAMS = (
    Stream(
        "signin",
        events=("signin.open", "signin.completed"),
        description="The sign-in dialog, for the UX team's experiment.",
        owner="ux-lead@example.org",
    ),
    Stream("product", events=("page.view", "project.commit"), owner="product@example.org"),
)
FIELDS = (
    FieldInfo(
        "user.id",
        "column",
        ("string",),
        SEEN,
        SEEN,
        per_day=12.0,
        trend="stable",
        event_names=("page.view", "signin.completed"),
        streams=("product", "signin"),
        personal="name suggests a personal identifier (user id)",
    ),
    FieldInfo(
        "data.load_ms",
        "data",
        ("integer",),
        SEEN,
        SEEN,
        per_day=3.5,
        trend="growing",
        event_names=("page.view",),
        streams=("product",),
    ),
    FieldInfo("data.legacy", "data", ("string",), SEEN, SEEN, in_lake=False),
)
METRICS = (
    MetricDef(
        "signin_funnel",
        "Sign-in dialog funnel",
        "funnel",
        {"steps": ("signin.open", "signin.completed")},
        description="Browsers that open the dialog and complete it.",
        owner="ux-lead@example.org",
        teams=("ux",),
    ),
    MetricDef(
        "weekly_active_users",
        "Weekly active users",
        "active",
        {"active": ("user.login",)},
        description="Distinct signed-in users with a core action; the KPI of leadership.",
        owner="head-of-product@example.org",
        teams=("leadership", "growth"),
        calculation="count distinct user.id",
    ),
    MetricDef(
        "error_rate",
        "Error rate",
        "ratio",
        {"numerator": "error.shown", "denominator": "page.view"},
        owner="sre@example.org",
        teams=("engineering",),
        sources=("error.shown", "page.view"),
        dashboards=("on-call",),
    ),
)


def found(
    text: str, kinds: list[str] | None = None, limit: int | None = None
) -> list[tuple[str, str, int, tuple[str, ...]]]:
    hits = search(text, STREAMS, FIELDS, METRICS, kinds=kinds, limit=limit)
    return [(h.kind, h.name, h.score, h.matched) for h in hits]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the whole name: 100 + the whole-name bonus 100; a whole part of a name: 80; events: 30
        (
            "signin",
            [
                ("stream", "signin", 200, ("name",)),
                ("metric", "signin_funnel", 80, ("name",)),
                ("field", "user.id", 30, ("events",)),
            ],
        ),
        # a name match (inside: 60) ranks above a description match (20) and an owner match (15)
        (
            "user",
            [
                ("field", "user.id", 80, ("name",)),
                ("metric", "weekly_active_users", 60, ("name",)),
            ],
        ),
        (
            "leadership",
            [("metric", "weekly_active_users", 20, ("description",))],
        ),
        ("growth", [("metric", "weekly_active_users", 15, ("owner",))]),
        # every word must match; scores add up: "funnel" 80 in the name, "ux" 15 in the teams
        ("ux funnel", [("metric", "signin_funnel", 95, ("name", "owner"))]),
        # separators are spaces: "user_id" is the words user and id, both whole parts of user.id,
        # and the whole name too; the KPI has "user" in its name and "id" in its calculation
        (
            "user_id",
            [
                ("field", "user.id", 260, ("name",)),
                ("metric", "weekly_active_users", 80, ("name", "description")),
            ],
        ),
        # the title counts (50), and a metric's events and sources (30)
        ("error", [("metric", "error_rate", 80, ("name",))]),
        ("error rate", [("metric", "error_rate", 260, ("name",))]),
        ("rate", [("metric", "error_rate", 80, ("name",))]),
        (
            "page view",
            [
                ("metric", "error_rate", 60, ("events",)),
                ("stream", "product", 60, ("events",)),
                ("field", "data.load_ms", 60, ("events",)),
                ("field", "user.id", 60, ("events",)),
            ],
        ),
        ("on-call", [("metric", "error_rate", 30, ("owner",))]),
        ("personal", [("field", "user.id", 15, ("owner",))]),
        # case is ignored and "-" separates words: "sign" and "in", each inside the names (60)
        (
            "SIGN-IN",
            [
                ("metric", "signin_funnel", 120, ("name",)),
                ("stream", "signin", 120, ("name",)),
                ("field", "user.id", 60, ("events",)),
                ("metric", "weekly_active_users", 50, ("events", "description")),
            ],
        ),
        ("nothing-like-this", []),
    ],
)
def test_ranking(text: str, expected: list[tuple[str, str, int, tuple[str, ...]]]) -> None:
    assert found(text) == expected


def test_kinds_and_limit() -> None:
    assert [h[1] for h in found("signin", kinds=["metric", "field"])] == [
        "signin_funnel",
        "user.id",
    ]
    assert [h[1] for h in found("signin", limit=1)] == ["signin"]


def test_summaries() -> None:
    hits = {h.name: h for h in search("a", STREAMS, FIELDS, METRICS)}
    assert hits["weekly_active_users"].summary == "Weekly active users"
    assert hits["data.load_ms"].summary == "integer; 3.5 events a day, growing"
    assert hits["data.legacy"].summary == "string; no longer seen"
    assert search("product", STREAMS, (), ())[0].summary == "receives page.view, project.commit"
    assert search("signin", STREAMS, (), ())[0].summary == (
        "The sign-in dialog, for the UX team's experiment."
    )
    assert Hit("stream", "s", "x", 1, ("name",)).as_dict() == {
        "kind": "stream",
        "name": "s",
        "summary": "x",
        "score": 1,
        "matched": ["name"],
    }


@pytest.mark.parametrize(
    ("text", "kinds", "message"),
    [
        ("  ", None, "give a word to search for"),
        ("._-", None, "give a word to search for"),
        ("x", ["metrics"], "unknown kind metrics: use metric, stream, field"),
    ],
)
def test_bad_searches_say_what_to_do(text: str, kinds: list[str] | None, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        search(text, STREAMS, FIELDS, METRICS, kinds=kinds)
