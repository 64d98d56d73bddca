"""What the API answers and takes, as plain data: a stream's status and days to expiry, renewals,
patches and the audit log's parameters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tallystick.admin.views import (
    audit_query,
    expires_in_days,
    ordered_results,
    renewal,
    stream_patch,
    stream_view,
)
from tallystick.collect.requests import Refused
from tallystick.control.definitions import DefinitionError, Stream, parse_stream
from tallystick.control.store import CheckRun

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expires", "days"),
    [
        (None, None),
        ("2026-11-22T12:00:01", 0),
        ("2026-11-23T11:59:59", 0),
        ("2026-11-23T12:00:00", 1),
        ("2026-12-22T00:00:00", 29),
        ("2026-11-22T12:00:00", 0),
        ("2026-11-22T11:59:59", -1),
        ("2026-11-20T12:00:00", -2),
    ],
)
def test_expires_in_days(expires: str | None, days: int | None) -> None:
    stream = Stream("s", expires=None if expires is None else at(expires))
    assert expires_in_days(stream, NOW) == days


def test_stream_view_adds_status_and_times() -> None:
    stream = parse_stream({"name": "s", "enabled": True, "expires": "2026-11-01"})
    created, updated = at("2026-01-01T08:00:00"), at("2026-02-01T09:30:00")
    view = stream_view(stream, NOW, {"s": (created, updated)})
    assert view == {
        "name": "s",
        "events": [],
        "enabled": True,
        "expires": "2026-11-01T00:00:00Z",
        "status": "expired",
        "created_at": "2026-01-01T08:00:00Z",
        "updated_at": "2026-02-01T09:30:00Z",
        "expires_in_days": -22,
    }


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"days": 90}, "2027-02-20T12:00:00+00:00"),
        ({"days": 1}, "2026-11-23T12:00:00+00:00"),
        ({"until": "2027-03-01"}, "2027-03-01T00:00:00+00:00"),
        ({"until": "2027-03-01T08:30:00+01:00"}, "2027-03-01T07:30:00+00:00"),
    ],
)
def test_renewal(body: dict[str, Any], want: str) -> None:
    assert renewal(body, NOW, Stream("s")) == dt.datetime.fromisoformat(want)


@pytest.mark.parametrize(
    ("starts", "expires", "want"),
    [
        (None, None, "2027-02-20T12:00:00+00:00"),  # 90 days
        (None, "2026-01-01", "2027-02-20T12:00:00+00:00"),
        ("2026-10-01", "2026-10-31T12:00:00", "2026-12-22T12:00:00+00:00"),  # its 30-day term
        ("2026-10-01", "2026-10-01T01:00:00", "2026-11-23T12:00:00+00:00"),  # at least a day
    ],
)
def test_renewal_by_default_lasts_its_last_term(
    starts: str | None, expires: str | None, want: str
) -> None:
    stream = Stream(
        "s",
        starts=None if starts is None else at(starts),
        expires=None if expires is None else at(expires),
    )
    assert renewal({}, NOW, stream) == dt.datetime.fromisoformat(want)


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ({"days": 3, "until": "2027-01-01"}, "", "give `until` or `days`, not both"),
        ({"days": 0}, "days", "from 1 to 3660"),
        ({"days": "90"}, "days", "got '90'"),
        ({"days": True}, "days", "got True"),
        ({"until": "2026-11-22"}, "until", "is not in the future"),
        ({"until": "soon"}, "until", "is not a date or time"),
        ({"weeks": 2}, "weeks", "renew takes `until` or `days`"),
    ],
)
def test_bad_renewals(body: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as error:
        renewal(body, NOW, Stream("s"))
    assert error.value.where == where
    assert message in error.value.message


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"owner": "web"}, {"owner": "web"}),
        ({"owner": None, "retention_days": 30}, {"owner": None, "retention_days": 30}),
        ({"name": "s", "enabled": False}, {"enabled": False}),
        ({"status": "collecting", "volume": {}, "enabled": False}, {"enabled": False}),
    ],
)
def test_stream_patch(body: dict[str, Any], want: dict[str, Any]) -> None:
    assert stream_patch(body, "s") == want


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ({}, "", "send the settings to change"),
        ({"status": "disabled"}, "", "send the settings to change"),
        ({"onwer": "x"}, "onwer", "a stream has no setting 'onwer'"),
        ({"name": "t"}, "name", "cannot be renamed"),
    ],
)
def test_bad_patches(body: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as error:
        stream_patch(body, "s")
    assert error.value.where == where
    assert message in error.value.message


@pytest.mark.parametrize(
    ("params", "want"),
    [
        ({}, (None, None, 100)),
        ({"kind": "stream", "name": "web", "limit": "5"}, ("stream", "web", 5)),
        ({"kind": "", "name": "", "limit": ""}, (None, None, 100)),
    ],
)
def test_audit_query(params: dict[str, str], want: tuple[str | None, str | None, int]) -> None:
    assert audit_query(params) == want


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "streams"}, "unknown kind 'streams': use stream, model, setting"),
        ({"limit": "0"}, "from 1 to 1000"),
        ({"limit": "1001"}, "from 1 to 1000"),
        ({"limit": "ten"}, "limit 'ten'"),
    ],
)
def test_bad_audit_queries(params: dict[str, str], message: str) -> None:
    with pytest.raises(Refused) as refused:
        audit_query(params)
    assert message in refused.value.problem.message


def test_failed_results_come_first() -> None:
    def run(target: str, label: str, passed: bool) -> CheckRun:
        return CheckRun("model", target, label, {}, passed, 0 if passed else 1, 10, "m")

    runs = [run("b", "x", True), run("a", "y", True), run("b", "a", False), run("a", "z", False)]
    order = [(r["target"], r["check"]) for r in ordered_results(runs)]
    assert order == [("a", "z"), ("b", "a"), ("a", "y"), ("b", "x")]
