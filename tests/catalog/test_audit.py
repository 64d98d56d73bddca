"""The audit on a small real lake, a real SQLite control store and a catalog folder, every
section checked against answers worked out by hand; an empty install; the pure parts.

Today is Monday 2026-03-16 (midnight UTC): failures count from 2026-02-14, streams expiring up
to 2026-04-15 are listed.

The lake: ``signin.open`` ×3 (stream web) and ``page.view`` ×2 (stored twice: in web, and in
short, which keeps neither app nor client library) from portal / js; ``debug.oops`` ×2 in the
unrouted stream; ``legacy.ping`` ×1 in a file from before streams (no ``stream`` column),
received long ago. Failed records: 3 from portal / js (2 invalid_field, 1 missing_field), 1
unreadable request (malformed_json), 1 too old to count.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics.lakerows import to_table
from tallystick.catalog.audit import (
    SECTION_KEYS,
    AuditError,
    Facts,
    Report,
    audit,
    readers,
    report,
)
from tallystick.catalog.fields import read_fields
from tallystick.config import Settings
from tallystick.control.definitions import parse_configuration, parse_stream
from tallystick.control.store import ControlStore
from tallystick.metrics.catalog import MetricDef, parse_text
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import Lake

TODAY = dt.date(2026, 3, 16)
NOW = dt.datetime(2026, 3, 16, tzinfo=dt.UTC)


def at(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00+00:00")


CATALOG = """\
- name: signin_opens
  title: Sign-in opens
  description: Opens of the sign-in dialog.
  type: count
  params: {event: signin.open}
  owner: o@x.org
- name: page_views
  title: Page views
  description: Views.
  type: count
  params: {event: page.view}
  teams: [web]
- name: ghost_metric
  title: Ghost
  description: Counts an event nobody sends.
  type: count
  params: {event: ghost.event}
  owner: g@x.org
- name: bare
  title: Bare
  type: count
  params: {event: signin.open}
  owner: b@x.org
- name: calc_only
  title: Described by its calculation
  type: count
  params: {event: signin.open}
  owner: c@x.org
  calculation: Count of signin.open events.
"""
BROKEN = """\
- name: Bad Name
  title: Broken
  type: count
  params: {event: signin.open}
"""
CONFIG = {
    "streams": [
        {
            "name": "web",
            "owner": "web@x.org",
            "events": ["signin.*", "page.view"],
            "retention_days": 400,
            "expires": "2026-03-26",
        },
        {"name": "short", "owner": "short@x.org", "events": ["page.view"], "retention_days": 30},
        {"name": "archive", "events": ["archive.*"], "expires": "2026-03-15"},
    ],
    "models": [
        {"name": "m_signins", "stream": "web", "owner": "data@x.org", "fields": ["event_id"]}
    ],
}


def _event(n: int, name: str, day: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "name": name,
        "client_ts": at(day),
        "received_ts": at("03-10"),
        "app_id": "portal",
        "client_library": "js",
        **fields,
    }


def _rows() -> list[dict[str, Any]]:
    rows = [
        _event(i, "signin.open", f"03-0{1 + i}", user_id=f"u{i}", stream="web", data={"step": 1})
        for i in (1, 2, 3)
    ]
    for stream in ("web", "short"):
        # the short stream's copies keep only user.id: no app, no client library; stored
        # first, they are the copies the de-duplicated `events` view picks
        kept: dict[str, Any] = {}
        if stream == "short":
            kept = {"app_id": None, "client_library": None, "received_ts": at("03-09")}
        rows += [
            _event(4, "page.view", "03-04", user_id="u1", stream=stream, data={"c": "x"}, **kept),
            _event(
                5,
                "page.view",
                "03-06",
                user_id="u2",
                stream=stream,
                data={"contact": "a@b.org"},
                **kept,
            ),
        ]
    rows += [
        _event(6, "debug.oops", "03-05", stream="unrouted"),
        _event(7, "debug.oops", "03-07", stream="unrouted"),
    ]
    return rows


def _failed(raw: str, code: str, received: dt.datetime) -> FailedEvent:
    return FailedEvent(received, "http", code, "bad", raw)


FROM_PORTAL = json.dumps(
    {"name": "signin.open", "app": {"id": "portal"}, "client": {"library": "js"}}
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data=tmp_path_factory.mktemp("audit") / "data")
    lake = Lake(settings.lake_dir)
    lake.write_events(to_table(_rows()), "recent")
    old = to_table(
        [
            {
                "event_id": "e8",
                "name": "legacy.ping",
                "client_ts": at("03-01"),
                "received_ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                "app_id": "old",
                "client_library": "py",
            }
        ]
    ).drop_columns(["stream"])
    lake.write_events(old, "before-streams")
    lake.write_failed(
        [
            _failed(FROM_PORTAL, "invalid_field", at("03-10")),
            _failed(FROM_PORTAL, "invalid_field", at("03-10")),
            _failed(FROM_PORTAL, "missing_field", at("03-11")),
            _failed("{not json", "malformed_json", at("03-11")),
            _failed(FROM_PORTAL, "invalid_field", at("01-05")),
        ],
        "failed",
    )
    (lake.root / "metrics" / "old_metric" / "grain=week").mkdir(parents=True)
    catalog = settings.catalog_dir
    catalog.mkdir(parents=True)
    (catalog / "all.yaml").write_text(CATALOG)
    (catalog / "broken.yaml").write_text(BROKEN)
    return settings


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[ControlStore]:
    with ControlStore.for_settings(settings) as store:
        store.apply(parse_configuration(CONFIG), actor="test")
        store.record_metric_run("signin_opens", 0.5, 3, "cli", at=at("03-12"))
        store.record_metric_run("signin_opens", 1.5, 3, "http", at=at("03-13"))
        store.record_metric_run("page_views", 0.2, 1, "http", at=at("03-13"))
        store.record_metric_run("retired_metric", 0.9, 2, "http", at=at("03-01"))
        yield store


@pytest.fixture(scope="module")
def result(settings: Settings, store: ControlStore) -> Report:
    return report(settings, today=TODAY, store=store)


def rows(result: Report, key: str) -> list[dict[str, Any]]:
    return [dict(r) for r in result.section(key).rows]


def test_every_section_in_order(result: Report) -> None:
    assert tuple(s.key for s in result.sections) == SECTION_KEYS
    assert all(s.count and s.why and s.columns for s in result.sections)
    assert result.today == TODAY
    assert result.generated_at == NOW


def test_metrics_without_a_definition_or_owner(result: Report) -> None:
    found = rows(result, "undefined_metrics")
    assert [(r["metric"], r["problem"], r["where"], r["ask"]) for r in found] == [
        ("page_views", "no owner", "metrics/all.yaml:7", "team web (no owner named)"),
        ("bare", "no description or calculation", "metrics/all.yaml:19", "b@x.org"),
        ("(invalid entry)", found[2]["problem"], "metrics/broken.yaml:1", found[2]["ask"]),
        (
            "old_metric",
            "no catalog entry",
            "materialised results in metrics/old_metric",
            "nobody named: whoever asks for it",
        ),
        (
            "retired_metric",
            "no catalog entry",
            "queried 1 time, last 2026-03-01",
            "nobody named: whoever asks for it",
        ),
    ]
    assert str(found[2]["problem"]).startswith("does not validate: metric name 'Bad Name'")


def test_metrics_that_reference_events_never_seen(result: Report) -> None:
    assert rows(result, "unseen_events") == [
        {
            "metric": "ghost_metric",
            "events never seen": "ghost.event",
            "status": "active",
            "ask": "g@x.org",
        }
    ]


def test_streams_no_metric_or_model_reads(result: Report) -> None:
    assert rows(result, "unread_streams") == [
        {
            "stream": "archive",
            "events": 0,
            "routes": "archive.*",
            "status": "expired",
            "ask": "no owner named: whoever changed it last (tally streams log NAME)",
        }
    ]


def test_undeclared_events(result: Report) -> None:
    # debug.oops is stored in the unrouted stream; legacy.ping predates streams and no
    # stream routes it now
    assert rows(result, "undeclared_events") == [
        {
            "event": "debug.oops",
            "events": 2,
            "first seen": "2026-03-05",
            "last seen": "2026-03-07",
            "sent by": "portal / js",
            "ask": "the team of portal / js",
        },
        {
            "event": "legacy.ping",
            "events": 1,
            "first seen": "2026-03-01",
            "last seen": "2026-03-01",
            "sent by": "old / py",
            "ask": "the team of old / py",
        },
    ]


def test_streams_expiring_within_30_days(result: Report) -> None:
    assert [
        (r["stream"], r["expires"], r["status"], r["ask"]) for r in rows(result, "expiring_streams")
    ] == [
        (
            "archive",
            "2026-03-15",
            "expired 1 day ago",
            "no owner named: whoever changed it last (tally streams log NAME)",
        ),
        ("web", "2026-03-26", "expires in 10 days", "web@x.org"),
    ]


def test_data_kept_beyond_90_days_and_who_needs_it(result: Report) -> None:
    assert [(r["stream"], r["kept"], r["needed by"]) for r in rows(result, "long_retention")] == [
        ("archive", "until deleted", "nobody reads it"),
        (
            "web",
            "400 days",
            "o@x.org: metric signin_opens; team web (no owner named): metric page_views; "
            "b@x.org: metric bare; c@x.org: metric calc_only; data@x.org: model m_signins",
        ),
        ("unrouted", "until deleted", "g@x.org: metric ghost_metric"),
    ]


def test_most_expensive_metrics(result: Report) -> None:
    assert rows(result, "expensive_metrics") == [
        {
            "metric": "signin_opens",
            "mean seconds": 1.0,
            "max seconds": 1.5,
            "runs": 2,
            "last run": "2026-03-13T10:00:00Z",
            "ask": "o@x.org",
        },
        {
            "metric": "retired_metric",
            "mean seconds": 0.9,
            "max seconds": 0.9,
            "runs": 1,
            "last run": "2026-03-01T10:00:00Z",
            "ask": "not in the catalog any more",
        },
        {
            "metric": "page_views",
            "mean seconds": 0.2,
            "max seconds": 0.2,
            "runs": 1,
            "last run": "2026-03-13T10:00:00Z",
            "ask": "team web (no owner named)",
        },
    ]


def test_unreliable_sources(result: Report) -> None:
    # portal / js: 3 failed + 7 accepted since 2026-02-14; the unreadable request against
    # everything received then (7 accepted + 4 failed)
    assert rows(result, "unreliable_sources") == [
        {
            "source": "portal / js",
            "failed": 3,
            "received": 10,
            "failed %": 30.0,
            "errors": "invalid_field ×2, missing_field ×1",
            "ask": "the team of portal / js; see tally failed",
        },
        {
            "source": "unknown sender (malformed_json)",
            "failed": 1,
            "received": 11,
            "failed %": 9.09,
            "errors": "malformed_json ×1",
            "ask": "whoever sends it: the payloads are in tally failed",
        },
    ]
    assert "tally quality loss" in result.section("unreliable_sources").note


def test_fields_that_look_personal(result: Report) -> None:
    assert rows(result, "personal_fields") == [
        {
            "field": "data.contact",
            "why": "values look like e-mail addresses",
            "events": "page.view",
            "stored in": "short, web",
            "ask": "short@x.org, web@x.org",
        },
        {
            "field": "user.id",
            "why": "name suggests a personal identifier (user id)",
            "events": "page.view, signin.open",
            "stored in": "short, web",
            "ask": "short@x.org, web@x.org",
        },
    ]


def test_the_field_catalog_is_measured_once_a_day(store: ControlStore, result: Report) -> None:
    stored = read_fields(store)
    assert {f.name for f in stored} >= {"data.contact", "user.id"}
    assert {f.as_of for f in stored} == {TODAY}


def test_an_empty_install_has_every_section_and_nothing_in_them(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "empty")
    settings.data.mkdir()
    result = report(settings, today=TODAY)
    assert [(s.key, s.count) for s in result.sections] == [(k, 0) for k in SECTION_KEYS]
    assert "No query times recorded yet" in result.section("expensive_metrics").note
    assert (settings.data / "control.db").is_file()


def test_a_missing_data_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=r"no data directory at .*--data DIR"):
        report(Settings(data=tmp_path / "nowhere"))


# -- pure parts ------------------------------------------------------------------------------


def _metric(text: str) -> MetricDef:
    metrics, problems = parse_text(text, "m.yaml")
    assert problems == []
    return metrics[0]


@pytest.mark.parametrize(
    ("params", "events"),
    [
        ("{event: a.b}", ("a.b",)),
        ("{numerator: n, denominator: d, unit: event}", ("n", "d")),
        ("{steps: [s1, s2, s1]}", ("s1", "s2")),
        ("{actions: 'x, y', active: [y, z]}", ("x", "y", "z")),
        ("{cohort_event: c, return_events: [r, c]}", ("c", "r")),
    ],
)
def test_metric_events(params: str, events: tuple[str, ...]) -> None:
    kinds = {"a.b": "count", "n": "ratio", "s1": "funnel", "x": "core", "c": "retention"}
    kind = kinds[events[0]]
    assert _metric(f"name: m\ntitle: M\ntype: {kind}\nparams: {params}\n").events == events


def _stream(**raw: Any) -> Any:
    return parse_stream({"name": "s", "events": ["x.*"], **raw})


@pytest.mark.parametrize(
    ("expires", "status"),
    [
        (NOW - dt.timedelta(days=2), "expired 2 days ago"),
        (NOW, "expired today"),
        (NOW + dt.timedelta(hours=1), "expires today"),
        (NOW + dt.timedelta(days=1), "expires in 1 day"),
        (NOW + dt.timedelta(days=30), "expires in 30 days"),
        (NOW + dt.timedelta(days=30, seconds=1), None),
        (None, None),
    ],
)
def test_expiry_statuses(expires: dt.datetime | None, status: str | None) -> None:
    config = parse_configuration(
        {"streams": [{"name": "s", "events": ["x.*"], "expires": expires and expires.isoformat()}]}
    )
    found = audit(Facts(configuration=config), NOW).section("expiring_streams").rows
    assert [r["status"] for r in found] == ([status] if status else [])


@pytest.mark.parametrize(
    ("retention", "listed"), [(None, "until deleted"), (91, "91 days"), (90, None), (1, None)]
)
def test_retention_threshold(retention: int | None, listed: str | None) -> None:
    stream: dict[str, Any] = {"name": "s", "events": ["x.*"]}
    if retention is not None:
        stream["retention_days"] = retention
    config = parse_configuration({"streams": [stream]})
    found = audit(Facts(configuration=config), NOW).section("long_retention").rows
    assert [r["kept"] for r in found] == ([listed] if listed else [])


def test_a_metric_reads_every_stream_its_events_are_routed_to() -> None:
    config = parse_configuration(
        {
            "streams": [
                {"name": "all", "events": ["*"]},
                {"name": "signin", "events": ["signin.*"]},
                {"name": "exact", "events": ["signin.open"]},
            ]
        }
    )
    metric = _metric("name: m\ntitle: M\ntype: funnel\nparams: {steps: [signin.open, other]}\n")
    found = readers(Facts(metrics=(metric,), configuration=config))
    assert {stream: [r.name for r in rs] for stream, rs in found.items()} == {
        "all": ["m"],
        "signin": ["m"],
        "exact": ["m"],
    }
