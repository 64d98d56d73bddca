"""``tally quarantine add|list|lift``, ``tally purge`` and ``--include-bots`` on a small lake:
the analyses' answers move with the rules and back, purge asks first and deletes for good, and
mistakes exit 2 saying what to write."""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from metrics.lakerows import write_rows
from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
COUNT = ["metrics", "count", "--event", "login", "--from", "2026-03-01", "--to", "2026-03-31"]
COUNT += ["--grain", "month", "--format", "json"]


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "name": "login",
            "client_ts": T0 + dt.timedelta(hours=i),
            "user_id": f"u{i % 3}",
            "session_id": f"s{i % 4}",
            "agent_is_bot": i % 6 == 0,
            "geo_network": f"198.51.{i % 2}.0/24",
        }
        for i in range(24)
    ]


@functools.cache
def _migrated() -> Path:
    """An empty control database at the newest schema, made once (migrating costs seconds)."""
    folder = Path(tempfile.mkdtemp(prefix="quarantine-control-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    ControlStore.open(f"sqlite:///{folder / 'control.db'}").close()
    return folder / "control.db"


@pytest.fixture
def control_only(tmp_path: Path) -> Path:
    """A data directory with a control database and no lake."""
    (tmp_path / "data").mkdir()
    shutil.copyfile(_migrated(), tmp_path / "data" / "control.db")
    return tmp_path / "data"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    settings = Settings(data=tmp_path / "data")
    write_rows(settings.lake_dir, _rows())
    shutil.copyfile(_migrated(), settings.data / "control.db")
    return settings.data


def tally(data: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--data", str(data)])


def events(data: Path, *extra: str) -> int:
    result = tally(data, *COUNT, *extra)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    return int(rows[0]["events"])


def test_bots_are_left_out_unless_included(data: Path) -> None:
    assert events(data) == 20
    assert events(data, "--include-bots") == 24
    assert events(data, "--include-bots", "--engine", "clickhouse") == 24


def test_quarantine_moves_the_answer_and_lifting_moves_it_back(data: Path) -> None:
    added = tally(data, "quarantine", "add", "--user", "u1", "--reason", "load test")
    assert added.exit_code == 0, added.output
    assert "quarantined user.id = u1 (rule 1): 8 events" in " ".join(added.stdout.split())
    assert events(data) == 20 - 8  # u1's 8 events, none a bot's
    assert events(data, "--include-bots") == 16
    windowed = tally(
        data, "quarantine", "add", "--session", "s0", "--to", "2026-03-02", "--reason", "x"
    )
    assert windowed.exit_code == 0, windowed.output
    assert events(data, "--include-bots") == 16 - 3  # s0 on March 2: 0, 4, 8, 12 (4 is u1)
    listed = json.loads(tally(data, "quarantine", "list", "--format", "json").stdout)
    assert [(r["id"], r["matches"], r["events"], r["status"]) for r in listed] == [
        (1, "user.id = u1", 8, "active"),
        (2, "session.id = s0, client_ts before 2026-03-03", 4, "active"),
    ]
    lifted = tally(data, "quarantine", "lift", "1")
    assert lifted.exit_code == 0, lifted.output
    assert "lifted rule 1 (user.id = u1): its events count again" in lifted.stdout
    assert tally(data, "quarantine", "lift", "2").exit_code == 0
    assert events(data) == 20
    assert events(data, "--include-bots") == 24
    everything = json.loads(tally(data, "quarantine", "list", "--all", "--format", "json").stdout)
    assert [r["status"] for r in everything] == ["lifted", "lifted"]
    with ControlStore.for_settings(Settings(data=data)) as store:
        log = store.audit_log(kind="quarantine")
    assert [(e.action, e.actor.startswith("cli:")) for e in log] == [
        ("lift", True),
        ("lift", True),
        ("add", True),
        ("add", True),
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--reason", "x"], "give exactly one of --user ID, --session ID, --ip CIDR or --where"),
        (["--user", "a", "--ip", "10.0.0.0/8", "--reason", "x"], "(got --user, --ip)"),
        (["--user", "a"], "say why the data is quarantined: --reason TEXT"),
        (["--ip", "198.51.0.7", "--reason", "x"], "Quarantine 198.51.0.0/24"),
        (["--where", "plan", "--reason", "x"], "write FIELD=VALUE"),
        (["--where", "app.nope=1", "--reason", "x"], "unknown field 'app.nope'"),
        (["--user", "a", "--from", "tomorrow", "--reason", "x"], "is not a date or time"),
    ],
)
def test_mistakes_exit_2_saying_what_to_write(
    control_only: Path, args: list[str], says: str
) -> None:
    result = tally(control_only, "quarantine", "add", *args)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_unknown_and_lifted_rules_are_named(data: Path) -> None:
    result = tally(data, "quarantine", "lift", "7")
    assert result.exit_code == 1
    assert "no quarantine rule 7" in result.output
    tally(data, "quarantine", "add", "--user", "u1", "--reason", "x")
    assert tally(data, "quarantine", "add", "--user", "u1", "--reason", "y").exit_code == 1
    tally(data, "quarantine", "lift", "1")
    again = tally(data, "quarantine", "lift", "1")
    assert again.exit_code == 1
    assert "was lifted already" in again.output


def _event_rows(data: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in (data / "lake" / "events").rglob("*.parquet"))


def test_purge_asks_then_deletes_for_good(data: Path) -> None:
    nothing = tally(data, "purge")
    assert nothing.exit_code == 0
    assert "Nothing is quarantined" in nothing.stdout
    tally(data, "quarantine", "add", "--ip", "198.51.1.0/24", "--reason", "scraper")

    dry = tally(data, "purge", "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert (planned["dry_run"], planned["events"], planned["event_rows"]) == (True, 12, 12)
    assert planned["ledger_rows"] == 12

    unconfirmed = tally(data, "purge")  # no terminal to ask on
    assert unconfirmed.exit_code == 2
    assert "run it again with --yes to confirm" in unconfirmed.output
    assert _event_rows(data) == 24

    done = tally(data, "purge", "--yes", "--format", "json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["dry_run"], report["events"], report["event_rows"]) == (False, 12, 12)
    assert report["rules"] == [
        {"rule": 1, "matches": "geo.network in 198.51.1.0/24", "events": 12, "reason": "scraper"}
    ]
    assert _event_rows(data) == 12
    listed = json.loads(tally(data, "quarantine", "list", "--format", "json").stdout)
    assert listed[0]["status"] == "active (purged)"
    assert listed[0]["purged_at"] is not None

    assert "Nothing to delete" in tally(data, "purge", "--yes").stdout
    lifted = tally(data, "quarantine", "lift", "1")
    assert "it was purged: the rows it matched then are gone for good" in " ".join(
        lifted.stdout.split()
    )
    assert events(data, "--include-bots") == 12
    with ControlStore.for_settings(Settings(data=data)) as store:
        entry = store.audit_log(kind="quarantine", name="purge")[0]
    assert entry.after is not None
    assert (entry.after["rules"], entry.after["events"]) == ([1], 12)
