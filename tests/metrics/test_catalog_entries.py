"""The extended metric catalog entry: calculation, code references, dates, privacy, access,
retention, SLO and dashboards parse into the definition; bad values are reported with their line
and how to fix them."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from tallystick.metrics.catalog import MetricDef, parse_text

BASE = """\
name: wau
title: Weekly active users
type: active
params: {active: user.login}
"""

FULL = (
    BASE
    + """\
calculation: |
  Distinct user.id of the week's user.login events.
code_refs:
  - reports/wau.sql
  - https://git.example.org/analytics/wau
implemented: 2025-03-01
modified: "2026-01-15"
sunset: 2027-12-31
privacy: personal
access: [product, leadership]
retention_days: 400
slo: fresh by 06:00 UTC, 99 % of days
dashboards: [board-weekly]
teams: [growth]
"""
)


def parse_one(text: str) -> MetricDef:
    metrics, problems = parse_text(text, "metrics/m.yaml")
    assert problems == []
    (metric,) = metrics
    return metric


def test_every_new_field_parses() -> None:
    metric = parse_one(FULL)
    assert metric.calculation == "Distinct user.id of the week's user.login events."
    assert metric.code_refs == ("reports/wau.sql", "https://git.example.org/analytics/wau")
    assert metric.implemented == dt.date(2025, 3, 1)
    assert metric.modified == dt.date(2026, 1, 15)  # quoted dates are dates too
    assert metric.sunset == dt.date(2027, 12, 31)
    assert metric.privacy == "personal"
    assert metric.access == ("product", "leadership")
    assert metric.retention_days == 400
    assert metric.slo == "fresh by 06:00 UTC, 99 % of days"
    assert metric.dashboards == ("board-weekly",)
    assert metric.teams == ("growth",)
    listed = metric.to_dict()
    assert {k: listed[k] for k in ("implemented", "modified", "sunset")} == {
        "implemented": "2025-03-01",
        "modified": "2026-01-15",
        "sunset": "2027-12-31",
    }
    assert listed["access"] == ["product", "leadership"]
    assert listed["code_refs"] == ["reports/wau.sql", "https://git.example.org/analytics/wau"]


def test_the_new_fields_are_optional() -> None:
    listed = parse_one(BASE).to_dict()
    assert {
        k: listed[k]
        for k in (
            "calculation",
            "code_refs",
            "implemented",
            "modified",
            "sunset",
            "privacy",
            "access",
            "retention_days",
            "slo",
            "dashboards",
        )
    } == {
        "calculation": None,
        "code_refs": [],
        "implemented": None,
        "modified": None,
        "sunset": None,
        "privacy": None,
        "access": [],
        "retention_days": None,
        "slo": None,
        "dashboards": [],
    }


def test_access_may_be_one_text() -> None:
    assert parse_one(BASE + "access: everyone at the company\n").access == (
        "everyone at the company",
    )


def test_changing_the_entry_does_not_change_the_results() -> None:
    assert parse_one(FULL).definition_hash() == parse_one(BASE).definition_hash()


BAD: list[tuple[str, str, int, list[str]]] = [
    ("privacy", "privacy: secret\n", 5, ["privacy 'secret' is not allowed", "public, internal"]),
    ("privacy typo", "privacy: personl\n", 5, ["did you mean 'personal'?"]),
    (
        "date",
        "implemented: 2025-13-01\n",
        5,
        ["implemented '2025-13-01' is not a date", "YYYY-MM-DD"],
    ),
    ("date text", "sunset: next year\n", 5, ["sunset 'next year' is not a date"]),
    (
        "a time",
        "modified: 2026-01-15 10:00:00\n",
        5,
        ["modified is a date, not a time", "2026-01-15"],
    ),
    (
        "dates out of order",
        "implemented: 2026-02-01\nmodified: 2026-01-15\n",
        6,
        ["modified (2026-01-15) is before implemented (2026-02-01)"],
    ),
    (
        "sunset before implemented",
        "sunset: 2024-01-01\nimplemented: 2025-01-01\n",
        5,
        ["sunset (2024-01-01) is before implemented (2025-01-01)"],
    ),
    ("retention zero", "retention_days: 0\n", 5, ["retention_days must be a whole number of days"]),
    ("retention text", "retention_days: a year\n", 5, ["retention_days must be a whole number"]),
    ("retention float", "retention_days: 30.5\n", 5, ["retention_days must be a whole number"]),
    ("retention bool", "retention_days: true\n", 5, ["retention_days must be a whole number"]),
    ("code_refs text", "code_refs: reports/wau.sql\n", 5, ["code_refs must be a list"]),
    ("code_refs entry", "code_refs: [reports/wau.sql, '']\n", 5, ["every entry of code_refs"]),
    ("dashboards mapping", "dashboards: {a: b}\n", 5, ["dashboards must be a list"]),
    ("access number", "access: 7\n", 5, ["access must be text or a list of names"]),
    ("access mapping", "access: {team: product}\n", 5, ["access must be a list"]),
    ("calculation list", "calculation: [a, b]\n", 5, ["calculation must be a single value"]),
    ("slo number", "slo: 99.9\n", 5, ["slo must be text, got a number (99.9)", "quotes"]),
    ("misspelt key", "retention: 30\n", 5, ["unknown key 'retention'", "retention_days"]),
]


@pytest.mark.parametrize(("text", "line", "parts"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_values_name_the_line_and_the_fix(text: str, line: int, parts: list[str]) -> None:
    metrics, problems = parse_text(BASE + textwrap.dedent(text), "metrics/m.yaml")
    assert metrics == []
    assert len(problems) == 1, problems
    message = str(problems[0])
    assert message.startswith(f"metrics/m.yaml:{line}: "), message
    assert " — " in message, message
    for part in parts:
        assert part in message, message
