"""``tally streams ...`` and ``tally config export|plan|apply`` against a real control database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

runner = CliRunner(env={"COLUMNS": "250"})


def tally(data: Path, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)], input=stdin)


def stored(data: Path) -> ControlStore:
    return ControlStore.for_settings(Settings(data=data))


def test_create_update_renew_disable_and_the_audit_log(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = tally(data, "streams", "list")
    assert "No streams yet" in result.output
    result = tally(
        data,
        "streams",
        "create",
        "product",
        "--events",
        "project.*,signin.open",
        "--events",
        "search.query",
        "--owner",
        "ana",
        "--sample-rate",
        "0.1",
        "--keep",
        "session,page.url",
        "--curate",
        "app.environment equals test",
        "--curate",
        "data.plan in [free, trial]",
        "--expires",
        "2027-01-01",
        "--retention-days",
        "400",
    )
    assert result.exit_code == 0, result.output
    assert "+ stream product" in result.output
    with stored(data) as store:
        stream = store.stream("product")
    assert stream.events == ("project.*", "signin.open", "search.query")
    assert stream.sample is not None
    assert (stream.sample.unit, stream.sample.rate) == ("session", 0.1)
    assert stream.keep == ("session", "page.url")
    assert stream.as_dict()["curation"] == [
        {"field": "app.environment", "op": "equals", "value": "test"},
        {"field": "data.plan", "op": "in", "value": ["free", "trial"]},
    ]
    assert tally(data, "streams", "update", "product", "--sample-rate", "0.05").exit_code == 0
    assert tally(data, "streams", "update", "product", "--no-curation", "--keep-all").exit_code == 0
    assert tally(data, "streams", "disable", "product").exit_code == 0
    assert tally(data, "streams", "renew", "product", "--days", "30").exit_code == 0
    with stored(data) as store:
        stream = store.stream("product")
        actions = [(e.action, e.as_dict()["changed"]) for e in store.audit_log()]
    assert stream.sample is not None
    assert stream.sample.rate == 0.05
    assert stream.curation == ()
    assert stream.keep is None
    assert not stream.enabled
    assert actions == [
        ("renew", ["expires"]),
        ("disable", ["enabled"]),
        ("update", ["keep", "curation"]),
        ("update", ["sample"]),
        (
            "create",
            [
                "name",
                "owner",
                "events",
                "sample",
                "enabled",
                "expires",
                "keep",
                "curation",
                "retention_days",
            ],
        ),
    ]
    listed = json.loads(tally(data, "streams", "list", "--format", "json").stdout)
    assert listed[0]["status"] == "disabled"
    assert listed[0]["declined_7_days"] == "none"
    log = json.loads(tally(data, "streams", "log", "--format", "json").stdout)
    assert log[0]["actor"].startswith("cli:")
    shown = tally(data, "streams", "show", "product")
    assert "product: disabled" in shown.output
    assert "renew" in shown.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["streams", "create", "s", "--sample-rate", "2"], 2, "sample.rate: a sample rate"),
        (["streams", "create", "s", "--events", "Bad Name"], 2, "cannot route 'Bad Name'"),
        (["streams", "create", "s", "--curate", "app.id equals"], 2, "write FIELD OP VALUE"),
        (["streams", "create", "s", "--keep", "ip"], 2, "'ip' is not a contextual attribute"),
        (["streams", "show", "gone"], 1, "no stream 'gone'"),
        (["streams", "update", "gone", "--owner", "x"], 1, "no stream 'gone'"),
        (["streams", "renew", "gone"], 1, "no stream 'gone'"),
    ],
)
def test_bad_input_is_refused_clearly(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = tally(tmp_path / "d", *args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())


def test_renew_brings_an_expired_stream_back(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert tally(data, "streams", "create", "s", "--expires", "2020-01-01").exit_code == 0
    assert (
        json.loads(tally(data, "streams", "list", "--format", "json").stdout)[0]["status"]
        == "expired"
    )
    assert tally(data, "streams", "renew", "s", "--until", "2020-02-01").exit_code == 2
    assert tally(data, "streams", "renew", "s").exit_code == 0
    assert (
        json.loads(tally(data, "streams", "list", "--format", "json").stdout)[0]["status"]
        == "collecting"
    )


def test_export_then_apply_on_a_fresh_install_reproduces_the_configuration(
    tmp_path: Path,
) -> None:
    first, fresh = tmp_path / "a", tmp_path / "b"
    tally(first, "streams", "create", "product", "--events", "project.*", "--sample-rate", "0.1")
    tally(first, "streams", "create", "auth", "--events", "signin.*", "--expires", "2027-03-01")
    tally(first, "streams", "disable", "auth")
    exported = tally(first, "config", "export")
    assert exported.exit_code == 0
    file = tmp_path / "tally.yaml"
    file.write_text(exported.stdout)
    refused = tally(fresh, "config", "apply", str(file), stdin="n\n")
    assert refused.exit_code == 1
    assert "2 to create" in refused.output
    with stored(fresh) as store:
        assert store.version() == 0  # nothing applied without confirmation
    assert tally(fresh, "config", "apply", str(file), "--yes").exit_code == 0
    with stored(first) as a, stored(fresh) as b:
        assert a.configuration() == b.configuration()
    assert tally(fresh, "config", "export").stdout == exported.stdout
    assert "no changes" in tally(fresh, "config", "plan", str(file)).output


def test_apply_shows_updates_and_deletes_then_applies_them_in_one_version(tmp_path: Path) -> None:
    data = tmp_path / "d"
    tally(data, "streams", "create", "old", "--events", "x.*")
    tally(data, "streams", "create", "product", "--events", "project.*")
    file = tmp_path / "tally.yaml"
    file.write_text(
        "streams:\n  - name: product\n    events: [project.*, signin.*]\n"
        "  - name: new\n    events: [debug.*]\n"
    )
    result = tally(data, "config", "apply", str(file), stdin="y\n")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "+ stream new" in text
    assert "- stream old" in text
    assert "~ stream product" in text
    assert "events: ['project.*'] → ['project.*', 'signin.*']" in text
    with stored(data) as store:
        assert store.version() == 3  # two creates, then one apply
        assert {e.version for e in store.audit_log(limit=3)} == {3}


def test_a_bad_file_is_refused_with_its_line_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    tally(data, "streams", "create", "product", "--events", "project.*")
    file = tmp_path / "tally.yaml"
    file.write_text(
        "streams:\n  - name: product\n    events: [project.*]\n"
        "  - name: auth\n    sample: {unit: session, rate: 7}\n"
    )
    result = tally(data, "config", "apply", str(file), "--yes")
    assert result.exit_code == 2
    assert f"{file}:5: streams[1].sample.rate: a sample rate is a number" in result.output
    assert "nothing was changed" in " ".join(result.output.split())
    with stored(data) as store:
        assert store.version() == 1
    missing = tally(data, "config", "apply", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.output
