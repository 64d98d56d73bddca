"""Experiments through a real `tally serve`: an admin key defines one (PUT), a read key lists and
reads it, starting it puts its rule into the flags ruleset an app's write key fetches and the
server's evaluation assigns variations as the flags engine does, stopping removes the rule;
bad documents are refused naming the field, a read key cannot write, and
``/v1/experiments/{key}/results`` is left to the query API.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import http_call as call
from tallystick.collect.app import is_control_path
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.flags.hashing import assign_variation

pytestmark = pytest.mark.e2e

KEY = "signin-dialog"
EXPERIMENT: dict[str, Any] = {
    "key": KEY,
    "name": "Sign-in dialog: e-mail pre-filled",
    "hypothesis": "Pre-filling the e-mail from the institution's SSO lowers the bounce rate",
    "owner": "ux-lead@research-portal.eu",
    "teams": ["ux", "product"],
    "unit": "user.anonymous_id",
    "variations": [
        {"key": "a", "name": "Control: empty e-mail field"},
        {"key": "b", "name": "E-mail pre-filled"},
    ],
    "metrics": {
        "primary": ["bounce_rate"],
        "secondary": ["signin_completed"],
        "guardrails": ["signin_latency"],
    },
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, str]]:
    data: Path = tmp_path_factory.mktemp("experiments") / "data"
    data.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        _, admin = create_key(store, "admin", "ops", actor="test")
        _, read = create_key(store, "read", "analyst", actor="test")
        _, write = create_key(store, "write", "portal-web", actor="test", app="portal")
    with ServerProcess(data) as running:
        yield running.url, admin, read, write


def test_define_start_assign_stop(served: tuple[str, str, str, str]) -> None:
    base, admin, read, write = served
    status, _, created = call(base, "PUT", f"/v1/admin/experiments/{KEY}", admin, EXPERIMENT)
    assert status == 201, created
    assert created["action"] == "create"
    assert created["experiment"]["experiment"]["status"] == "draft"
    assert created["experiment"]["updated_by"] == "key:1:ops"

    status, _, listed = call(base, "GET", "/v1/experiments", read)
    assert status == 200, listed
    (summary,) = listed["experiments"]
    assert summary["key"] == KEY
    assert summary["status"] == "draft"
    assert summary["unit"] == "user.anonymous_id"
    assert summary["metrics"] == {
        "primary": ["bounce_rate"],
        "secondary": ["signin_completed"],
        "guardrails": ["signin_latency"],
    }
    status, _, one = call(base, "GET", f"/v1/experiments/{KEY}", read)
    assert status == 200, one
    assert one["experiment"]["hypothesis"] == EXPERIMENT["hypothesis"]
    assert one["experiment"]["weights"] == [0.5, 0.5]
    assert one["version"] == created["version"]
    status, _, drafts = call(base, "GET", "/v1/experiments?status=running", read)
    assert drafts == {"experiments": []}

    # nothing in the flags yet
    status, _, ruleset = call(base, "GET", "/v1/flags/ruleset?environment=prod", write)
    assert ruleset["flags"] == {}

    status, _, started = call(base, "POST", f"/v1/admin/experiments/{KEY}/start", admin)
    assert status == 200, started
    assert started["action"] == "start"
    assert started["flags_environments"] == ["dev", "prod"]
    assert started["experiment"]["experiment"]["start"] is not None
    status, headers, ruleset = call(base, "GET", "/v1/flags/ruleset?environment=prod", write)
    assert status == 200
    assert ruleset["version"] == started["version"]
    (rule,) = ruleset["flags"][KEY]["environments"]["prod"]["rules"]
    assert rule["id"] == "experiment-signin-dialog"
    assert rule["experiment"]["hash_attribute"] == "anonymous_id"

    seen = set()
    for i in range(40):
        unit = f"anon-{i}"
        status, headers, answer = call(
            base,
            "POST",
            "/v1/flags/evaluate",
            write,
            {"environment": "prod", "attributes": {"anonymous_id": unit}, "flags": [KEY]},
        )
        assert status == 200, answer
        got = answer["flags"][KEY]
        expected = "ab"[assign_variation(unit, KEY, 2, 1.0, [0.5, 0.5])]
        assert (got["reason"], got["variation_key"], got["value"]) == (
            "experiment",
            expected,
            expected,
        )
        assert got["exposure"] is True
        assert headers["x-tally-flags"] == f"{KEY}={expected}"
        seen.add(expected)
    assert seen == {"a", "b"}

    status, _, stopped = call(base, "POST", f"/v1/admin/experiments/{KEY}/stop", admin)
    assert status == 200, stopped
    assert stopped["action"] == "stop"
    assert stopped["experiment"]["experiment"]["stop"] is not None
    status, _, ruleset = call(base, "GET", "/v1/flags/ruleset?environment=prod", write)
    assert ruleset["flags"][KEY]["environments"]["prod"]["rules"] == []
    request = {"environment": "prod", "attributes": {"anonymous_id": "anon-1"}}
    status, _, answer = call(base, "POST", "/v1/flags/evaluate", write, request)
    assert answer["flags"][KEY] == {"value": "a", "reason": "default"}

    status, _, refused = call(base, "POST", f"/v1/admin/experiments/{KEY}/start", admin)
    assert status == 409
    assert "cannot be restarted" in refused["error"]["message"]

    status, _, log = call(base, "GET", "/v1/admin/audit-log?kind=experiments", admin)
    assert [e["action"] for e in log["entries"]] == ["stop", "start", "create"]

    status, _, deleted = call(base, "DELETE", f"/v1/admin/experiments/{KEY}", admin)
    assert status == 200, deleted
    assert deleted["action"] == "delete"
    status, _, missing = call(base, "GET", f"/v1/experiments/{KEY}", read)
    assert status == 404
    assert f"no experiment {KEY!r}" in missing["error"]["message"]
    assert "PUT /v1/admin/experiments/{key} defines one" in missing["error"]["message"]


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"weights": [0.7, 0.7]}, "weights", "summing to 1"),
        ({"unit": "account"}, "unit", "user.anonymous_id"),
        ({"variations": ["a"]}, "variations", "2 or more"),
        ({"metrics": {"primary": []}}, "metrics.primary", "primary metric"),
        ({"hypothesis": None}, "hypothesis", "needs a hypothesis"),
        ({"colour": "blue"}, "", "unknown key(s) ['colour']"),
        ({"key": "other"}, "key", "cannot be renamed"),
    ],
)
def test_bad_documents_are_refused_naming_the_field(
    served: tuple[str, str, str, str], change: dict[str, Any], where: str, words: str
) -> None:
    base, admin, _, _ = served
    doc = {**copy.deepcopy(EXPERIMENT), "key": "bad-one", **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    status, _, refused = call(base, "PUT", "/v1/admin/experiments/bad-one", admin, doc)
    assert status == 400, refused
    error = refused["error"]
    assert error["code"] == "invalid_definition"
    assert error.get("where", "") == where
    assert words in error["message"]
    status, _, _ = call(base, "GET", "/v1/experiments/bad-one", admin)
    assert status == 404


def test_yaml_documents_and_their_lines(served: tuple[str, str, str, str]) -> None:
    base, admin, _, _ = served
    yaml_type = {"Content-Type": "application/yaml"}
    good = (
        b"hypothesis: Shorter forms convert better\n"
        b"owner: growth@research-portal.eu\n"
        b"unit: session\n"
        b"variations: [long, short]\n"
        b"metrics: {primary: [signin_completed]}\n"
    )
    status, _, created = call(
        base, "PUT", "/v1/admin/experiments/short-form", admin, raw=good, headers=yaml_type
    )
    assert status == 201, created
    assert created["experiment"]["experiment"]["key"] == "short-form"  # from the address
    assert created["experiment"]["experiment"]["unit"] == "session.id"
    bad = good.replace(b"unit: session", b"unit: session\ncoverage: 2")
    status, _, refused = call(
        base, "PUT", "/v1/admin/experiments/short-form", admin, raw=bad, headers=yaml_type
    )
    assert status == 400
    assert refused["error"]["message"].startswith("coverage (line 4)")
    status, _, same = call(
        base, "PUT", "/v1/admin/experiments/short-form", admin, raw=good, headers=yaml_type
    )
    assert (status, same["action"], same["version"]) == (200, "unchanged", None)
    status, _, refused = call(base, "POST", "/v1/admin/experiments/short-form/stop", admin)
    assert status == 409
    assert "draft, not running" in refused["error"]["message"]
    status, _, refused = call(base, "POST", "/v1/admin/experiments/short-fomr/start", admin)
    assert status == 404
    assert "did you mean 'short-form'?" in refused["error"]["message"]
    assert "GET /v1/experiments lists them" in refused["error"]["message"]
    status, _, refused = call(
        base, "POST", "/v1/admin/experiments/short-form/start", admin, {"at": "now"}
    )
    assert status == 400
    assert "takes no settings" in refused["error"]["message"]


def test_who_may_read_and_write(served: tuple[str, str, str, str]) -> None:
    base, admin, read, write = served
    status, _, refused = call(base, "PUT", "/v1/admin/experiments/by-reader", read, EXPERIMENT)
    assert status == 403
    assert "reads only" in refused["error"]["message"]
    for method, path in (
        ("POST", f"/v1/admin/experiments/{KEY}/start"),
        ("POST", f"/v1/admin/experiments/{KEY}/stop"),
        ("DELETE", f"/v1/admin/experiments/{KEY}"),
    ):
        status, _, _ = call(base, method, path, read)
        assert status == 403
    status, _, _ = call(base, "GET", "/v1/experiments", write)
    assert status == 403  # a write key sends events only
    status, _, _ = call(base, "GET", "/v1/experiments", "not-a-key")
    assert status == 401
    status, _, _ = call(base, "GET", "/v1/experiments", admin)
    assert status == 200
    status, _, refused = call(base, "GET", "/v1/experiments?status=paused", read)
    assert status == 400


def test_results_are_the_query_apis() -> None:
    assert is_control_path("/v1/experiments")
    assert is_control_path("/v1/experiments/")
    assert is_control_path("/v1/experiments/signin-dialog")
    assert is_control_path("/v1/admin/experiments/signin-dialog/start")
    assert not is_control_path("/v1/experiments/signin-dialog/results")
    assert not is_control_path("/v1/experiments-archive")
