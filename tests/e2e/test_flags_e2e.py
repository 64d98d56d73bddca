"""Feature flags through a real `tally serve`: an admin key applies a ruleset, an app's write key
reads it (ETag, 304) and evaluates flags on the server (values and the X-Tally-Flags header), a
change is used by the very next evaluation, and an invalid ruleset is refused naming the place.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import http_call as call
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.flags.evaluate import parse_ruleset

pytestmark = pytest.mark.e2e

RULESET: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "segments": {"staff": {"attribute": "email", "op": "regex", "value": "@example\\.org$"}},
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [{"id": "staff", "condition": {"segment": "staff"}, "value": True}]
                }
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "experiment": {
                                "variations": [
                                    {"key": "A", "value": "A"},
                                    {"key": "B", "value": "B"},
                                ]
                            },
                        }
                    ]
                }
            },
        },
        "banner": {"type": "json", "default": {"text": "hi"}},
    },
}
STAFF = {"id": "user-42", "email": "ada@example.org"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    data: Path = tmp_path_factory.mktemp("flags") / "data"
    data.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        _, admin = create_key(store, "admin", "ops", actor="test")
        _, write = create_key(store, "write", "shop-web", actor="test", app="shop")
    with ServerProcess(data) as running:
        yield running.url, admin, write


def test_apply_read_and_evaluate(served: tuple[str, str, str]) -> None:
    base, admin, write = served
    status, _, empty = call(base, "GET", "/v1/flags/ruleset?environment=prod", write)
    assert (status, empty["version"], empty["flags"]) == (200, 0, {})

    status, _, applied = call(base, "PUT", "/v1/admin/flags", admin, RULESET)
    assert status == 200, applied
    assert applied["changed"] == ["dev", "prod"]
    version = applied["version"]
    assert (
        parse_ruleset(applied["ruleset"]).to_dict()["flags"]
        == parse_ruleset(RULESET).to_dict()["flags"]
    )

    status, headers, prod = call(base, "GET", "/v1/flags/ruleset?environment=prod", write)
    assert status == 200
    assert prod["version"] == version
    assert prod["environments"] == ["prod"]
    etag = headers["etag"]
    assert etag == f'"flags-prod-{version}"'
    status, _, body = call(base, "GET", "/v1/flags/ruleset?environment=prod", write,
                           headers={"If-None-Match": etag})  # fmt: skip
    assert (status, body) == (304, None)
    compiled = parse_ruleset(prod).compile("prod")

    status, headers, answer = call(base, "POST", "/v1/flags/evaluate", write,
                                   {"environment": "prod", "attributes": STAFF})  # fmt: skip
    assert status == 200, answer
    flags = answer["flags"]
    assert flags["new-signin"] == {"value": True, "reason": "targeted", "rule": "staff"}
    dialog = flags["signin-dialog"]
    local = compiled.evaluate("signin-dialog", STAFF)
    assert (dialog["value"], dialog["variation_key"], dialog["exposure"]) == (
        local.value,
        local.variation_key,
        True,
    )
    assert flags["banner"] == {"value": {"text": "hi"}, "reason": "default"}
    assert headers["x-tally-flags"] == f"new-signin=true,signin-dialog={local.variation_key}"

    status, _, some = call(base, "POST", "/v1/flags/evaluate", write,
                           {"environment": "prod", "flags": ["banner", "nope"]})  # fmt: skip
    assert status == 200
    assert some["flags"]["nope"] == {"value": None, "reason": "unknown"}
    assert set(some["flags"]) == {"banner", "nope"}

    killed = copy.deepcopy(RULESET)
    killed["flags"]["new-signin"]["killed"] = True
    status, _, changed = call(base, "PUT", "/v1/admin/flags", admin, killed)
    assert changed["changed"] == ["dev", "prod"]
    status, headers, after = call(base, "POST", "/v1/flags/evaluate", write,
                                  {"environment": "prod", "attributes": STAFF})  # fmt: skip
    assert after["version"] == changed["version"] > version
    assert after["flags"]["new-signin"] == {"value": False, "reason": "killed"}
    assert headers["x-tally-flags"] == f"signin-dialog={local.variation_key}"
    status, _, _ = call(base, "GET", "/v1/flags/ruleset?environment=prod", write,
                        headers={"If-None-Match": etag})  # fmt: skip
    assert status == 200

    status, _, listed = call(base, "GET", "/v1/admin/flags", admin)
    assert [e["environment"] for e in listed["environments"]] == ["dev", "prod"]
    assert listed["ruleset"]["flags"]["new-signin"]["killed"] is True
    # the same for people (a read key; the dashboard's Flags page), never for an app's write key
    status, _, overview = call(base, "GET", "/v1/flags", admin)
    assert (status, overview) == (200, listed)
    assert call(base, "GET", "/v1/flags", write)[0] == 403
    status, _, log = call(base, "GET", "/v1/admin/audit-log?kind=flags", admin)
    assert {e["name"] for e in log["entries"]} == {"dev", "prod"}


def test_invalid_rulesets_and_requests_are_refused(served: tuple[str, str, str]) -> None:
    base, admin, write = served
    bad = copy.deepcopy(RULESET)
    bad["flags"]["new-signin"]["environments"]["prod"]["rules"][0]["value"] = "yes"
    status, _, refused = call(base, "PUT", "/v1/admin/flags", admin, bad)
    assert status == 400
    assert refused["error"]["code"] == "invalid_definition"
    assert "flags.new-signin.environments.prod.rules[0].value" in refused["error"]["message"]
    yaml_doc = b"flags:\n  x:\n    type: boolean\n    default: 3\n"
    yaml_type = {"Content-Type": "application/yaml"}
    status, _, refused = call(
        base, "PUT", "/v1/admin/flags", admin, raw=yaml_doc, headers=yaml_type
    )
    assert status == 400
    assert refused["error"]["message"].startswith("flags.x.default (line 4)")
    status, _, refused = call(base, "PUT", "/v1/admin/flags", write, RULESET)
    assert status == 403
    status, _, refused = call(base, "GET", "/v1/flags/ruleset?environment=staging", write)
    assert status == 404
    assert (
        "environments are" in refused["error"]["message"]
        or "empty ruleset" in refused["error"]["message"]
    )
    status, _, refused = call(base, "POST", "/v1/flags/evaluate", write, {"attributes": {}})
    assert status == 400
    status, _, refused = call(base, "GET", "/v1/flags/ruleset", write)
    assert status == 400
