"""Privacy at ingestion through the collector: each stream's copy cleaned by its policy.

In-process (the collector app with its lifespan, a real SQLite control plane and the real
loader), as ``tests/collect/test_collector_streams.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import load, make_event
from tallystick.backfill.importer import detect_source, import_file
from tallystick.collect.app import Collector
from tallystick.collect.edge import check_settings
from tallystick.config import ConfigError, Settings
from tallystick.control.definitions import parse_configuration
from tallystick.control.store import ControlStore
from tallystick.privacy.pseudonym import pseudonymize
from tallystick.privacy.secrets import install_secret, keyed_hash
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

EMAIL = "ada.lovelace@example.org"


def rows(lake: Lake, sql: str) -> list[dict[str, Any]]:
    con = connect(lake)
    try:
        result: list[dict[str, Any]] = con.sql(sql).arrow().read_all().to_pylist()
        return result
    finally:
        con.close()


def stored(lake: Lake) -> list[dict[str, Any]]:
    found = rows(lake, "SELECT * FROM raw_events ORDER BY stream, name")
    for row in found:
        row["data"] = json.loads(row["data"] or "{}")
    return found


def configure(settings: Settings, app: Collector, config: dict[str, Any]) -> None:
    with ControlStore.for_settings(settings) as store:
        store.apply(parse_configuration(config), actor="test")
    app.reload_controls()


def personal(name: str = "signup.submit") -> dict[str, Any]:
    return make_event(
        name,
        data={
            "contact": f"write to {EMAIL} please",
            "phones": ["+44 20 7946 0958", "none"],
            "card": "4111 1111 1111 1111",
            "from": "203.0.113.45",
            "count": 3,
        },
        page={"url": "https://app.example.org/signup?email=ada.lovelace%40example.org&step=2"},
    )


def test_personal_data_is_redacted_and_clean_events_are_stored_as_sent(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    clean = make_event("project.commit", data={"files": 3, "version": "4.2.1", "when": "18:36:39"})
    response = collector.post("/v1/events", json=[personal(), clean])
    assert response.status_code == 200, response.text
    load(settings, app)
    by_name = {r["name"]: r for r in stored(lake)}
    data = by_name["signup.submit"]["data"]
    assert data == {
        "contact": "write to [email] please",
        "phones": ["[phone]", "none"],
        "card": "[card]",
        "from": "[ip]",
        "count": 3,
    }
    assert (
        by_name["signup.submit"]["page_url"]
        == "https://app.example.org/signup?email=[email]&step=2"
    )
    assert by_name["project.commit"]["data"] == clean["data"]


def test_each_stream_applies_its_own_policy(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    configure(
        settings,
        app,
        {
            "unrouted_stream": "rest",
            "streams": [
                {"name": "hashed", "events": ["signup.*"], "privacy": {"pii": "hash"}},
                {"name": "as_sent", "events": ["signup.*"], "privacy": {"pii": "off"}},
                {
                    "name": "emails_only",
                    "events": ["signup.*"],
                    "privacy": {"pii": "redact", "detect": ["email"]},
                },
                {"name": "strict", "events": ["strict.*"], "privacy": {"pii": "reject"}},
            ],
        },
    )
    events = [personal(), personal("strict.submit"), make_event("strict.submit")]
    response = collector.post("/v1/events", json=events)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "personal_data")]
    assert "email" in body["errors"][0]["message"]
    assert EMAIL not in response.text
    load(settings, app)
    copies = {r["stream"]: r for r in stored(lake) if r["name"] == "signup.submit"}
    secret = install_secret(settings.data)
    token = keyed_hash(secret, EMAIL)[:16]
    assert copies["hashed"]["data"]["contact"] == f"write to [email:{token}] please"
    assert copies["hashed"]["page_url"].endswith(f"email=[email:{token}]&step=2")
    assert EMAIL in copies["as_sent"]["data"]["contact"]
    assert copies["emails_only"]["data"]["contact"] == "write to [email] please"
    assert copies["emails_only"]["data"]["card"] == "4111 1111 1111 1111"
    strict = [r for r in stored(lake) if r["stream"] == "strict"]
    assert len(strict) == 1
    failed = rows(lake, "SELECT error_code, raw, event_id FROM failed_events")
    assert [f["error_code"] for f in failed] == ["personal_data"]
    assert EMAIL not in failed[0]["raw"]
    assert "[email]" in failed[0]["raw"]
    assert failed[0]["event_id"] == events[1]["event_id"]


def test_refused_requests_and_events_are_redacted_in_the_failed_store(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    bad_json = b'{"name": "x", "data": {"who": "' + EMAIL.encode() + b'"'
    assert collector.post("/v1/events", content=bad_json).status_code == 400
    escaped = '{"event_id": "' + EMAIL.replace("@", "\\u0040") + '", "name": "Bad Name"}'
    response = collector.post("/v1/events", content=escaped.encode())
    assert response.status_code == 400
    invalid_key = make_event(data={EMAIL: 1})
    assert collector.post("/v1/events", json=[invalid_key]).status_code == 400
    load(settings, app)
    failed = rows(lake, "SELECT * FROM failed_events")
    assert len(failed) == 3
    for record in failed:
        for value in record.values():
            assert EMAIL not in str(value)
    assert any("[email]" in str(r["raw"]) for r in failed)


def test_a_stream_may_drop_the_network(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data", min_free_bytes=0)
    app = Collector(settings)
    with TestClient(app, base_url="http://127.0.0.1", client=("203.0.113.45", 40_000)) as client:
        configure(
            settings,
            app,
            {
                "streams": [
                    {"name": "kept", "events": ["*"]},
                    {"name": "dropped", "events": ["*"], "privacy": {"ip": "drop"}},
                ]
            },
        )
        response = client.post("/v1/events", json=[make_event()])
        assert response.status_code == 200, response.text
        load(settings, app)
    networks = {r["stream"]: r["geo_network"] for r in stored(Lake(settings.lake_dir))}
    assert networks == {"kept": "203.0.113.0/24", "dropped": None}


@pytest.fixture
def pseudonymous(tmp_path: Path) -> Iterator[tuple[Collector, TestClient, Settings]]:
    settings = Settings(
        data=tmp_path / "data", min_free_bytes=0, pseudonymize_user_ids=True, pseudonym_key="k1"
    )
    app = Collector(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield app, client, settings


def test_user_ids_are_pseudonymous_before_storage(
    pseudonymous: tuple[Collector, TestClient, Settings],
) -> None:
    app, client, settings = pseudonymous
    events = [make_event(user={"id": "user-7"}), make_event(user={"id": "user-7"})]
    # an export imported again carries pseudonyms already: they are not pseudonymized twice
    again = make_event(user={"id": pseudonymize("user-8", "k0")})
    bad = make_event("Bad Name", user={"id": "user-7"})
    assert client.post("/v1/events", json=[*events, again, bad]).status_code == 207
    load(settings, app)
    lake = Lake(settings.lake_dir)
    assert {r["user_id"] for r in stored(lake)} == {
        pseudonymize("user-7", "k1"),
        pseudonymize("user-8", "k0"),
    }
    (failed,) = rows(lake, "SELECT raw FROM failed_events")
    assert "user-7" not in failed["raw"]
    assert pseudonymize("user-7", "k1") in failed["raw"]


def test_pseudonymous_ids_without_a_key_stop_the_collector(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, pseudonymize_user_ids=True)
    with pytest.raises(ConfigError, match="pseudonym_key"):
        Collector(settings)


def test_imported_events_are_cleaned_as_the_collector_cleans_them(tmp_path: Path) -> None:
    settings = Settings(
        data=tmp_path / "data", pseudonymize_user_ids=True, pseudonym_key="k1", min_free_bytes=0
    )
    good = make_event(user={"id": "user-9"}, data={"contact": EMAIL})
    bad = make_event("Bad Name", data={"contact": EMAIL})
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    lake = Lake(settings.lake_dir)
    report = import_file(detect_source(path), lake, settings)
    assert (report.added, report.failed) == (1, 1)
    (row,) = stored(lake)
    assert row["data"] == {"contact": "[email]"}
    assert row["user_id"] == pseudonymize("user-9", "k1")
    (failed,) = rows(lake, "SELECT raw FROM failed_events")
    assert EMAIL not in failed["raw"]
    rejecting = Settings(data=tmp_path / "other", pii_action="reject", min_free_bytes=0)
    other = Lake(rejecting.lake_dir)
    report = import_file(detect_source(path), other, rejecting)
    assert (report.added, report.failed) == (0, 2)
    assert [p.code for p in report.problems] == ["personal_data", "invalid_field"]


def test_tally_serve_checks_the_privacy_settings_before_it_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pii_action is 'scrub'"):
        check_settings(Settings(data=tmp_path, pii_action="scrub"))
    with pytest.raises(ConfigError, match="ip_policy"):
        check_settings(Settings(data=tmp_path, ip_policy="keep"))
    with pytest.raises(ConfigError, match="TALLYSTICK_PSEUDONYM_KEY"):
        check_settings(Settings(data=tmp_path, pseudonymize_user_ids=True))
    check_settings(Settings(data=tmp_path, pseudonymize_user_ids=True, pseudonym_key="k"))
