"""Metrics benchmark: the engine's analyses against hand-written DuckDB queries, side by side.

On a generated lake (by default 10,000,000 events, 200,000 users with Zipf-like activity, 180
days; the real layout ``lake/events/date=YYYY-MM-DD/*.parquet`` and schema, written by the
lake's own writer), three workloads:

- **core**: weekly core actions with shares;
- **funnel**: the 4-step sign-in funnel with a 1-day window;
- **retention**: a 12-week retention matrix (cohort = week of the first ``user.login``);

each run two ways, side by side in the same process: through the engine
(``registry.build(...).run(DuckDBEngine(lake))``, as a user runs it) and as a hand-written
DuckDB query over the same files implementing the same documented semantics (the practical
limit). Before timing, both results are compared; a difference is reported in red, the workload
is not timed and the run exits with an error. Then one warm-up of each side and ``--repeat``
alternating runs (median wall time, and process CPU time), and each side once more in a fresh
process for its peak RSS. An analysis that does not exist (yet) is reported as missing.

Run: ``make bench`` (or ``.venv/bin/python bench/metrics.py --help``; ``--quick`` for a 1M-event
smoke run). The lake is generated once per parameter set under ``bench/data/`` (not committed)
and reused. Prints a table and writes ``bench/results/metrics-<time>.json`` and
``bench/results/metrics-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from tallystick.metrics.engines import DuckDBEngine
from tallystick.metrics.params import MetricError
from tallystick.metrics.periods import add_periods, periods_between
from tallystick.metrics.registry import build
from tallystick.store.lake import EVENT_SCHEMA, Lake

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / "data"
console = Console()

TARGET: Final = 1.25
START: Final = dt.date(2026, 3, 2)  # a Monday: the lake's weeks are whole
DUPLICATE_SHARE: Final = 0.005

FUNNEL: Final = ("signin.open", "signin.email_entered", "signin.code_verified", "signin.completed")
LOGIN: Final = "user.login"
ACTIONS: Final = (
    "project.commit",
    "dataset.create",
    "notebook.session_start",
    "workflow.run",
    "search.query",
)
CORE_ACTIONS: Final = (LOGIN, *ACTIONS)
SITES: Final = (
    ("uni-heidelberg", "de-DE"),
    ("tu-delft", "nl-NL"),
    ("ucl-london", "en-GB"),
    ("eth-zurich", "de-CH"),
    ("sorbonne", "fr-FR"),
    ("ku-leuven", "nl-BE"),
    ("tu-muenchen", "de-DE"),
    ("uni-wien", "de-AT"),
    ("kth-stockholm", "sv-SE"),
    ("uni-helsinki", "fi-FI"),
    ("uni-bologna", "it-IT"),
    ("tcd-dublin", "en-IE"),
)
# What a signed-in user does after the sign-in, in percent (sums to 100).
SESSION_MIX: Final = (
    ("page.view", 38),
    ("search.query", 17),
    ("project.commit", 13),
    ("workflow.run", 13),
    ("notebook.session_start", 9),
    ("dataset.create", 7),
    ("error.shown", 3),
)
USER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
)

Row = dict[str, Any]

# --------------------------------------------------------------------------------------------
# The lake


@dataclass(frozen=True, slots=True)
class LakeSpec:
    """The parameters of one generated lake (same parameters, same lake)."""

    events: int
    users: int
    days: int
    seed: int

    @property
    def name(self) -> str:
        return f"lake-e{self.events}-u{self.users}-d{self.days}-s{self.seed}"

    @property
    def first_day(self) -> dt.date:
        return START

    @property
    def last_day(self) -> dt.date:
        return START + dt.timedelta(days=self.days - 1)


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


def generator_sql(spec: LakeSpec) -> tuple[str, str]:
    """Two DuckDB statements: the sessions table, then the lake's events in time order.

    Sessions first (one row each; every random choice is ``hash(key, salt, seed)``, so the lake
    depends only on the parameters and DuckDB's hash function), then one row per event of each
    session, then a second copy of 0.5% of them (``events`` counts the copies). Model:

    - user ``floor(users * r^2)`` for a uniform ``r``: Zipf-like activity (the heaviest user has
      ~0.2% of all sessions, the tail one to three); 1% of the users and 35% of the others are
      active from day 0 (spread evenly), the rest start on a random day and come back with an
      exponentially decaying frequency (mean lifetime 20 to 320 days);
    - 6% of the sessions are anonymous (``user_id`` NULL, or ``""`` for a tenth of them): page
      views, searches, sometimes an opened sign-in dialog;
    - 20% of the signed-in sessions go through the sign-in dialog (open, e-mail, code, completed:
      80%, 80% and 96.5% continue) with log-normal step times of seconds to minutes; 8% of the
      code steps come 1 to 20 hours later, 3% 22 to 40 hours later (beyond a 1-day window);
      ``user.login`` follows a completed dialog, or starts half the other sessions directly;
    - then a geometric number (mean 5.5) of page views and core actions, 0 to 60 s apart, and
      ``session.end``; times of day peak at noon UTC, with microseconds;
    - ``received_ts`` 80 ms (log-normal) after ``client_ts``, hours for 1% (offline clients); a
      copy (same ``event_id`` and ``name``) is received 3 s to 15 min later.
    """
    users, days, seed = spec.users, spec.days, spec.seed
    copies = round(spec.events * DUPLICATE_SHARE)
    distinct = spec.events - copies
    prime = next(p for p in (1_000_003, 1_000_033, 1_000_037) if math.gcd(p, distinct) == 1)
    day_us = 86_400_000_000
    start_us = int(dt.datetime.combine(START, dt.time(), dt.UTC).timestamp()) * 1_000_000
    end_us = start_us + days * day_us
    sessions = max(distinct // 4, 1000)  # more than needed; a prefix is kept
    mix = [name for name, percent in SESSION_MIX for _ in range(percent)]
    assert len(mix) == 100
    site_names = _list([s for s, _ in SITES])
    locales = _list([loc for _, loc in SITES])
    agents = _list(USER_AGENTS)
    n_sites = len(SITES)
    sessions_sql = f"""
SET TimeZone = 'UTC';
CREATE MACRO rnd(a, b) AS (((hash(a, b, {seed}) >> 11)::DOUBLE + 0.5) / 9007199254740992.0);
CREATE MACRO nrm(a, b) AS (sqrt(-2 * ln(rnd(a, b))) * cos(2 * pi() * rnd(a, b + 1)));
CREATE TABLE users AS
SELECT u,
  CASE WHEN u < {users} // 100 OR rnd(u, 1) < 0.35 THEN 0
    ELSE floor({days} * rnd(u, 2))::INT END AS start_day,
  20 + 300 * rnd(u, 3) AS life,
  floor({n_sites} * pow(rnd(u, 4), 1.6))::INT AS site
FROM range({users}) t(u);
CREATE TABLE sess AS
WITH s0 AS (
  SELECT s, rnd(s, 10) < 0.06 AS anon,
    least(floor({users} * pow(rnd(s, 11), 2.0))::BIGINT, {users} - 1) AS u
  FROM range({sessions}) t(s)
), s1 AS (
  SELECT s0.s, s0.anon, s0.u,
    CASE WHEN s0.anon THEN floor({n_sites} * rnd(s, 15))::INT ELSE users.site END AS site,
    CASE
      WHEN s0.anon OR users.start_day = 0 THEN floor({days} * rnd(s, 12))::INT
      WHEN users.start_day + floor(-ln(rnd(s, 13)) * users.life) < {days}
        THEN (users.start_day + floor(-ln(rnd(s, 13)) * users.life))::INT
      ELSE (users.start_day + floor(rnd(s, 14) * ({days} - users.start_day)))::INT
    END AS day
  FROM s0 JOIN users USING (u)
), s2 AS (
  SELECT *,
    CASE
      WHEN anon THEN (rnd(s, 20) < 0.08)::INT
      WHEN rnd(s, 20) >= 0.2 THEN 0
      ELSE 1 + (rnd(s, 21) < 0.8)::INT + (rnd(s, 21) < 0.8 AND rnd(s, 22) < 0.8)::INT
        + (rnd(s, 21) < 0.8 AND rnd(s, 22) < 0.8 AND rnd(s, 23) < 0.965)::INT
    END AS f,
    CASE WHEN anon THEN 1 + floor(-ln(rnd(s, 24)) * 1.5)::INT
      ELSE floor(-ln(rnd(s, 24)) * 6)::INT END AS acts,
    floor({day_us} * (rnd(s, 30) + rnd(s, 31) + rnd(s, 32)) / 3)::BIGINT AS tod,
    floor(2e6 * exp(0.5 * nrm(s, 40)))::BIGINT AS g1,
    floor(6e6 * exp(0.6 * nrm(s, 42)))::BIGINT AS g2,
    CASE
      WHEN day >= {days} - 2 OR rnd(s, 44) < 0.89 THEN floor(45e6 * exp(0.8 * nrm(s, 45)))::BIGINT
      WHEN rnd(s, 44) < 0.97 THEN floor(3600e6 * (1 + 19 * rnd(s, 47)))::BIGINT
      ELSE floor(3600e6 * (22 + 18 * rnd(s, 47)))::BIGINT
    END AS g3,
    floor(1.5e6 * exp(0.45 * nrm(s, 48)))::BIGINT AS g4
  FROM s1
), s3 AS (
  SELECT *,
    (NOT anon AND (f = 4 OR (f = 0 AND rnd(s, 25) < 0.5)))::INT AS l,
    {start_us} + day::BIGINT * {day_us} + tod AS t0
  FROM s2
), s4 AS (
  SELECT *, 2 + f + l + acts AS n,
    t0 + (f >= 1)::INT * g1 + (f >= 2)::INT * g2 + (f >= 3)::INT * g3 + (f >= 4)::INT * g4
      AS base
  FROM s3
)
SELECT * REPLACE (coalesce(before, 0) AS before)
FROM (
  SELECT *,
    -- shift the last day's sessions back so that none ends after the lake's last day
    least(0, {end_us} - 1 - (base + (n - f)::BIGINT * 30000000)) AS shift,
    (sum(n) OVER (ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))::BIGINT
      AS before
  FROM s4
)
WHERE coalesce(before, 0) < {distinct};
"""
    events_sql = f"""
WITH e0 AS (
  SELECT s, anon, u, site, day, f, l, n, t0, base, shift, g1, g2, g3, g4, before,
    unnest(range(least(n, {distinct} - before))) AS k
  FROM sess
), e1 AS (
  SELECT *, before + k AS g,
    shift + CASE
      WHEN k = 0 THEN t0
      WHEN k = 1 AND f >= 1 THEN t0 + g1
      WHEN k = 2 AND f >= 2 THEN t0 + g1 + g2
      WHEN k = 3 AND f >= 3 THEN t0 + g1 + g2 + g3
      WHEN k = 4 AND f >= 4 THEN t0 + g1 + g2 + g3 + g4
      ELSE base + (k - f)::BIGINT * 30000000 + floor(30e6 * rnd(before + k, 71))::BIGINT
    END AS us
  FROM e0
), e2 AS (
  SELECT s, anon, u, site, day, k, g, us,
    CASE
      WHEN k = 0 THEN 'session.start'
      WHEN k <= f THEN {_list(FUNNEL)}[k]
      WHEN k = f + 1 AND l = 1 THEN '{LOGIN}'
      WHEN k = n - 1 THEN 'session.end'
      WHEN anon THEN CASE WHEN rnd(g, 70) < 0.85 THEN 'page.view' ELSE 'search.query' END
      ELSE {_list(mix)}[1 + floor(100 * rnd(g, 70))::INT]
    END AS name,
    unnest(CASE WHEN (g * {prime}) % {distinct} < {copies} THEN [0, 1] ELSE [0] END) AS copy
  FROM e1
), e3 AS (
  SELECT *,
    us + CASE WHEN rnd(g, 72) < 0.01 THEN floor(3600e6 * 12 * rnd(g, 73))::BIGINT
      ELSE floor(80000 * exp(0.9 * nrm(g, 74)))::BIGINT END
      + copy * floor(1e6 * exp(1 + 5.8 * rnd(g, 75)))::BIGINT AS recv_us
  FROM e2
  ORDER BY us, copy
)
SELECT
  -- a version 4 UUID
  (((hash(g, 80, {seed}) & {0xFFFFFFFFFFFF0FFF}) | {0x4000})::UHUGEINT << 64
    | ((hash(g, 81, {seed}) & {0x3FFFFFFFFFFFFFFF}) | {0x8000000000000000})::UHUGEINT
  )::UUID::VARCHAR AS event_id,
  name,
  to_timestamp(us / 1e6) AS client_ts,
  to_timestamp((recv_us - floor((recv_us - us) * 0.3 * rnd(g, 77))::BIGINT) / 1e6) AS sent_ts,
  to_timestamp(recv_us / 1e6) AS received_ts,
  'research-portal' AS app_id,
  CASE WHEN day < {days} // 3 THEN '4.1.0' WHEN day < 2 * {days} // 3 THEN '4.2.1'
    ELSE '4.3.0' END AS app_version,
  'production' AS app_environment,
  {site_names}[site + 1] AS app_instance,
  'tallystick-js' AS client_library,
  '0.4.2' AS client_library_version,
  'web' AS client_platform,
  CASE WHEN NOT anon THEN concat('u-', lpad(u::VARCHAR, 6, '0'))
    WHEN rnd(s, 16) < 0.1 THEN '' END AS user_id,
  CASE WHEN anon THEN concat('a-', hash(s, 17, {seed})) END AS user_anonymous_id,
  NOT anon AS user_is_logged_in,
  concat('s-', hash(s, 18, {seed})) AS session_id,
  (k + 1)::BIGINT AS session_seq,
  CASE WHEN name = 'page.view' THEN concat('pv-', hash(g, 83, {seed})) END AS page_pageview_id,
  concat('https://', {site_names}[site + 1], '.research-portal.eu/', split_part(name, '.', 1))
    AS page_url,
  CASE WHEN k = 0 AND rnd(s, 19) < 0.2 THEN 'https://www.google.com/' END AS page_referrer,
  {agents}[1 + u % {len(USER_AGENTS)}] AS agent_user_agent,
  {locales}[site + 1] AS locale,
  CASE WHEN name LIKE 'signin.%'
    THEN MAP {{'signin-dialog': CASE WHEN s % 2 = 0 THEN 'a' ELSE 'b' END}} END AS experiments,
  CAST(NULL AS VARCHAR) AS sample_unit,
  CAST(NULL AS DOUBLE) AS sample_rate,
  concat('{{"duration_ms":', round(250 * exp(nrm(g, 78)), 1), ',"site":"',
    {site_names}[site + 1], '"}}') AS data,
  1::SMALLINT AS schema_version,
  (us // {day_us})::INT AS day
FROM e3
"""
    return sessions_sql, events_sql


def check_schema(lake: Lake) -> None:
    """Every column of the lake's schema, with its type, in one of the generated files."""
    first = lake.absolute(lake.files()[:1])[0]
    found = pq.read_schema(first)
    want = [(f.name, f.type) for f in EVENT_SCHEMA]
    got = [(f.name, f.type) for f in found]
    if got != want:
        raise SystemExit(f"generated schema differs from EVENT_SCHEMA:\n{got}\n{want}")


def _write_days(lake: Lake, batches: pa.RecordBatchReader) -> None:
    """Write the events (in time order, with a ``day`` column) one file per date, through the
    lake's own writer (zstd Parquet, 256k-row groups, atomic and fsync'd)."""
    pending: list[pa.Table] = []
    current: int | None = None

    def flush() -> None:
        if pending:
            table = pa.concat_tables(pending).drop_columns(["day"]).cast(EVENT_SCHEMA)
            lake.write_events(table, "bench")
            pending.clear()

    for batch in batches:
        table = pa.Table.from_batches([batch])
        days = table.column("day").to_numpy()
        for day in sorted(set(days.tolist())):
            if day != current:
                flush()
                current = day
            rows = (days == day).nonzero()[0]
            pending.append(table.slice(int(rows[0]), int(rows[-1]) - int(rows[0]) + 1))
    flush()


def generate(spec: LakeSpec, root: Path) -> dict[str, Any]:
    """Write the lake of ``spec`` under ``root/lake``; return what was written."""
    tmp = root.with_name(f".{root.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lake").mkdir(parents=True)
    lake = Lake(tmp / "lake")
    began = time.monotonic()
    sessions_sql, events_sql = generator_sql(spec)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
        con.execute(sessions_sql)
        _write_days(lake, con.sql(events_sql).arrow())
    finally:
        con.close()
    shutil.rmtree(tmp / "spill", ignore_errors=True)
    seconds = time.monotonic() - began
    check_schema(lake)
    files = lake.absolute(lake.files())
    con = duckdb.connect(":memory:")
    try:
        listed = ", ".join(f"'{f}'" for f in files)
        total, distinct, anonymous, users, first, last = con.sql(
            "SELECT count(*), count(DISTINCT (event_id, name)), "
            "count(*) FILTER (WHERE coalesce(user_id, '') = ''), count(DISTINCT user_id), "
            "min(client_ts)::VARCHAR, max(client_ts)::VARCHAR "
            f"FROM read_parquet([{listed}])"
        ).fetchall()[0]
        by_name = dict(
            con.sql(
                f"SELECT name, count(*) FROM read_parquet([{listed}]) GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        )
    finally:
        con.close()
    if total != spec.events:
        raise SystemExit(f"generated {total:,} rows instead of {spec.events:,}")
    stats = {
        "spec": asdict(spec),
        "generated": dt.datetime.now(dt.UTC).isoformat(),
        "generation_seconds": round(seconds, 1),
        "rows": total,
        "distinct_events": distinct,
        "copies": total - distinct,
        "anonymous_events": anonymous,
        "users": users,
        "first_client_ts": first,
        "last_client_ts": last,
        "partitions": len(lake.partitions()),
        "files": len(files),
        "bytes": sum(os.path.getsize(f) for f in files),
        "by_name": by_name,
    }
    (tmp / "lake.json").write_text(json.dumps(stats, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return stats


def ensure_lake(spec: LakeSpec, data: Path = DATA) -> tuple[Lake, dict[str, Any], bool]:
    """The lake of ``spec``, generated unless a complete one with the same parameters exists."""
    root = data / spec.name
    meta = root / "lake.json"
    if meta.exists():
        return Lake(root / "lake"), json.loads(meta.read_text()), True
    data.mkdir(parents=True, exist_ok=True)
    console.print(f"generating {spec.name} …")
    stats = generate(spec, root)
    return Lake(root / "lake"), stats, False


# --------------------------------------------------------------------------------------------
# The workloads: the engine's analysis and the hand-written query


_WEEK_US: Final = 604_800_000_000
_MONDAY_US: Final = 345_600_000_000  # 1970-01-05, a Monday, in microseconds since the epoch
_DAY_US: Final = 86_400_000_000
WINDOW_US: Final = _DAY_US  # the funnel's window: 1 day
PERIODS: Final = 12


def _in(names: Sequence[str]) -> str:
    return "(" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + ")"


def _ts(day: dt.date) -> str:
    return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'"


def _week(ts: str) -> str:
    """The UTC week (Monday-based) of a timestamp as a whole number of weeks since 1970-01-05:
    integer arithmetic on the epoch, no calendar (time zone) functions. (``//`` truncates, which
    is the floor for every timestamp after 1970-01-05, as in the generated lake.)"""
    return f"((epoch_us({ts}) - {_MONDAY_US}) // {_WEEK_US})"


def _week_date(week: str) -> str:
    return f"(DATE '1970-01-05' + 7 * {week}::INTEGER)"


def _events(source: str, names: Sequence[str]) -> str:
    """CTEs ending with ``ev``: the events named ``names`` with a unit, one row per
    ``(event_id, name)`` -- the copy with the smallest ``received_ts`` (missing last), then
    ``client_ts``. Columns: ``event_id``, ``name``, ``ts`` (``client_ts``), ``unit`` (the
    non-empty ``user_id``).

    Copies are rare, so the events are de-duplicated in two phases: a hash aggregation on a
    64-bit hash of the key finds the (few) hashes seen more than once; every other row is an
    event's only copy and is kept as it is; the rows with those hashes (true copies, and any
    hash collisions) are then de-duplicated exactly on ``(event_id, name)``. That is exact
    and much cheaper than grouping or windowing every row on the string key."""
    return f"""src AS MATERIALIZED (
  SELECT hash(event_id, name) AS h, event_id, name, received_ts, client_ts, user_id
  FROM {source}
  WHERE name IN {_in(names)}
), copied AS (
  SELECT h FROM src GROUP BY h HAVING count(*) > 1
), kept AS (
  SELECT event_id, name, client_ts, user_id FROM src ANTI JOIN copied USING (h)
  UNION ALL
  SELECT event_id, name, client_ts, user_id
  FROM (SELECT * FROM src SEMI JOIN copied USING (h))
  QUALIFY row_number() OVER (PARTITION BY event_id, name ORDER BY received_ts, client_ts) = 1
), ev AS (
  SELECT event_id, name, client_ts AS ts, NULLIF(user_id, '') AS unit
  FROM kept
  WHERE NULLIF(user_id, '') IS NOT NULL
)"""


def hand_core(source: str, actions: Sequence[str], active: Sequence[str]) -> str:
    """Weekly core actions: distinct units per week and action, and per week over the active
    actions. The files are the range's date partitions, so no row needs a date check."""
    names = list(dict.fromkeys([*actions, *active]))
    return f"""
WITH {_events(source, names)}, weekly AS (
  SELECT DISTINCT {_week("ts")} AS week, name, unit FROM ev
)
SELECT {_week_date("week")} AS period, name AS action, count(*) AS units
FROM weekly WHERE name IN {_in(actions)} GROUP BY week, name
UNION ALL
SELECT {_week_date("week")} AS period, NULL AS action, count(DISTINCT unit) AS units
FROM weekly WHERE name IN {_in(active)} GROUP BY week
"""


def hand_funnel(source: str, steps: Sequence[str], date_from: dt.date, date_to: dt.date) -> str:
    """The funnel with ASOF joins: for each attempt (a step-1 event dated in the range), step k
    is the first event of step k's name at or after step k-1 (``ASOF ... >=``), kept when it
    is within the window of step 1. The step names are distinct, so no event can serve two
    steps. Each unit's counted attempt: the furthest step, then the earliest start."""
    n = len(steps)
    assert len(set(steps)) == n, "the hand-written funnel assumes distinct step names"
    parts = [_events(source, steps)]
    parts.append(
        f"a1 AS (\n  SELECT unit, epoch_us(ts) AS t1 FROM ev\n  WHERE name = '{steps[0]}' "
        f"AND ts >= {_ts(date_from)} AND ts < {_ts(date_to + dt.timedelta(days=1))}\n)"
    )
    for k in range(2, n + 1):
        parts.append(
            f"s{k} AS (SELECT unit, epoch_us(ts) AS t FROM ev WHERE name = '{steps[k - 1]}')"
        )
        parts.append(
            f"a{k} AS (\n  SELECT a.*, CASE WHEN s.t <= a.t1 + {WINDOW_US} THEN s.t END AS t{k}\n"
            f"  FROM a{k - 1} a ASOF LEFT JOIN s{k} s ON a.unit = s.unit AND s.t >= a.t{k - 1}\n)"
        )
    reached = " + ".join(f"(t{k} IS NOT NULL)::INTEGER" for k in range(2, n + 1)) or "0"
    parts.append(
        f"counted AS (\n  SELECT * FROM a{n}\n  QUALIFY row_number() OVER "
        f"(PARTITION BY unit ORDER BY {reached} DESC, t1) = 1\n)"
    )
    columns = ["count(*) AS users_1"]
    for k in range(2, n + 1):
        columns.append(f"count(t{k}) AS users_{k}")
        columns.append(f"median((t{k} - t{k - 1}) / 1000000.0) AS median_{k}")
    return "WITH " + ",\n".join(parts) + "\nSELECT " + ", ".join(columns) + " FROM counted\n"


def hand_retention(
    source: str, cohort_event: str, returns: Sequence[str], date_from: dt.date, periods: int
) -> str:
    """Weekly retention: each unit's first cohort event (its week is the cohort), and the
    distinct (unit, week) pairs of return events; the files end with ``date_to``'s partition."""
    names = list(dict.fromkeys([cohort_event, *returns]))
    return f"""
WITH {_events(source, names)}, members AS (
  SELECT unit, {_week("min(ts)")} AS cohort FROM ev WHERE name = '{cohort_event}'
  GROUP BY unit HAVING min(ts) >= {_ts(date_from)}
), back AS (
  SELECT DISTINCT unit, {_week("ts")} AS week FROM ev WHERE name IN {_in(returns)}
)
SELECT {_week_date("cohort")} AS cohort, 0 AS k, count(*) AS units FROM members GROUP BY cohort
UNION ALL
SELECT {_week_date("m.cohort")} AS cohort, b.week - m.cohort AS k, count(*) AS units
FROM members m JOIN back b USING (unit)
WHERE b.week > m.cohort AND b.week <= m.cohort + {periods}
GROUP BY m.cohort, b.week
"""


def _shape_core(rows: list[Row], analysis: Any) -> list[Row]:
    s = analysis.scope
    did = {(r["period"], r["action"]): r["units"] for r in rows if r["action"] is not None}
    act = {r["period"]: r["units"] for r in rows if r["action"] is None}
    out: list[Row] = []
    for p in periods_between(s.date_from, s.date_to, analysis.grain):
        for a in analysis.actions:
            users, actives = did.get((p, a), 0), act.get(p, 0)
            share = None if actives == 0 else users / actives
            out.append(
                {"period": p, "action": a, "users": users, "active_users": actives, "share": share}
            )
    return out


def _shape_funnel(rows: list[Row], analysis: Any) -> list[Row]:
    got = rows[0] if rows else {}
    n = len(analysis.steps)
    users = [int(got.get(f"users_{k}") or 0) for k in range(1, n + 1)]
    out: list[Row] = []
    for k, name in enumerate(analysis.steps, start=1):
        median = got.get(f"median_{k}") if k > 1 else None
        prev = users[max(k - 2, 0)]
        out.append(
            {
                "step": k,
                "name": name,
                "users": users[k - 1],
                "conversion_from_previous": None if prev == 0 else users[k - 1] / prev,
                "conversion_from_start": None if users[0] == 0 else users[k - 1] / users[0],
                "median_seconds_from_previous": None if median is None else float(median),
            }
        )
    return out


def _shape_retention(rows: list[Row], analysis: Any) -> list[Row]:
    s = analysis.scope
    got = {(r["cohort"], int(r["k"])): int(r["units"]) for r in rows}
    out: list[Row] = []
    for cohort in periods_between(s.date_from, s.date_to, analysis.grain):
        size = got.get((cohort, 0), 0)
        retained: list[int | None] = [size]
        for k in range(1, analysis.periods + 1):
            start = add_periods(cohort, analysis.grain, k)
            retained.append(None if start > s.date_to else got.get((cohort, k), 0))
        rates = [None if r is None or size == 0 else r / size for r in retained]
        out.append({"cohort": cohort, "size": size, "retained": retained, "rates": rates})
    return out


@dataclass(frozen=True, slots=True)
class Workload:
    """One analysis, as registry parameters, and the hand-written query for the same result."""

    name: str
    title: str
    analysis: str
    params: Mapping[str, Any]
    hand_sql: Callable[[str], str]  # the query, reading from the given source relation
    shape: Callable[[list[Row], Any], list[Row]]  # its rows as the analysis's result rows


def workloads(spec: LakeSpec) -> list[Workload]:
    first, last = spec.first_day, spec.last_day
    span = {"from": first.isoformat(), "to": last.isoformat()}
    return [
        Workload(
            "core",
            "weekly core actions with shares",
            "core",
            {**span, "grain": "week", "actions": list(CORE_ACTIONS), "active": list(CORE_ACTIONS)},
            lambda src: hand_core(src, CORE_ACTIONS, CORE_ACTIONS),
            _shape_core,
        ),
        Workload(
            "funnel",
            "4-step funnel, 1-day window",
            "funnel",
            {**span, "steps": list(FUNNEL), "window": "1d"},
            lambda src: hand_funnel(src, FUNNEL, first, last),
            _shape_funnel,
        ),
        Workload(
            "retention",
            f"{PERIODS}-week retention matrix",
            "retention",
            {
                **span,
                "grain": "week",
                "cohort_event": LOGIN,
                "return_events": list(ACTIONS),
                "periods": PERIODS,
            },
            lambda src: hand_retention(src, LOGIN, ACTIONS, first, PERIODS),
            _shape_retention,
        ),
    ]


# --------------------------------------------------------------------------------------------
# Running and timing


def cpu_seconds() -> float:
    """CPU time of this process (all threads, user + system)."""
    t = os.times()
    return t.user + t.system


class Side:
    """One side of a workload, run once per ``run()``; ``sql`` is the SQL it runs."""

    sql: str = ""

    def run(self) -> list[Row]:
        raise NotImplementedError


class EngineSide(Side):
    """The engine: ``registry.build(...).run(DuckDBEngine(lake))``, as a user runs it."""

    def __init__(self, workload: Workload, lake: Lake, threads: int | None) -> None:
        self.analysis = build(workload.analysis, workload.params)
        self.lake, self.threads = lake, threads

    def run(self) -> list[Row]:
        outcome = self.analysis.run(DuckDBEngine(self.lake, threads=self.threads))
        self.sql = outcome.sql
        return outcome.rows


def read_files(workload: Workload, lake: Lake) -> list[str]:
    """The files the engine reads for the workload (the partitions of its read window)."""
    day_from, day_to = build(workload.analysis, workload.params).read_window()
    return [
        path
        for day, paths in sorted(lake.partitions().items())
        if (day_from is None or day >= day_from) and (day_to is None or day <= day_to)
        for path in lake.absolute(paths)
    ]


class HandSide(Side):
    """The hand-written query over the same files (the list is made once, outside the timing);
    its rows are shaped like the analysis's result after the query, for the comparison."""

    def __init__(self, workload: Workload, lake: Lake, threads: int | None) -> None:
        self.workload, self.threads = workload, threads
        self.analysis = build(workload.analysis, workload.params)
        files = ", ".join("'" + f.replace("'", "''") + "'" for f in read_files(workload, lake))
        self.sql = workload.hand_sql(f"read_parquet([{files}])")
        self.database: duckdb.DuckDBPyConnection | None = None

    def query(self) -> pa.Table:
        # One database for the side's lifetime, a cursor per run: the engine does the same
        # (a process-wide in-process DuckDB), so neither side pays for opening a database.
        if self.database is None:
            self.database = duckdb.connect(":memory:")
        con = self.database.cursor()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            return con.sql(self.sql).arrow().read_all()
        finally:
            con.close()

    def run(self) -> list[Row]:
        return self.workload.shape(self.query().to_pylist(), self.analysis)


def make_side(kind: str, workload: Workload, lake: Lake, threads: int | None) -> Side:
    return (EngineSide if kind == "engine" else HandSide)(workload, lake, threads)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b) and type(a) is type(b)


def differences(engine: list[Row], hand: list[Row], limit: int = 5) -> list[str]:
    """Where the engine's rows and the hand-written query's rows differ (empty: identical)."""
    if len(engine) != len(hand):
        return [f"{len(engine)} rows from the engine, {len(hand)} from the hand-written query"]
    out = []
    for i, (e, h) in enumerate(zip(engine, hand, strict=True)):
        if not _same(e, h):
            out.append(f"row {i}: engine {e!r}\n        hand-written {h!r}")
            if len(out) == limit:
                break
    return out


def peak_rss(workload: str, kind: str, spec: LakeSpec, threads: int | None) -> dict[str, float]:
    """Run one side once in a fresh process: its RSS before the run and its peak RSS (MB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", workload, kind]
    cmd += ["--events", str(spec.events), "--users", str(spec.users)]
    cmd += ["--days", str(spec.days), "--seed", str(spec.seed)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _status_mb(key: str) -> float:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), MB.

    ``VmHWM`` is the peak RSS of the current program image; ``getrusage``'s ``ru_maxrss`` would
    also count the parent's pages before ``exec``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(workload_name: str, kind: str, spec: LakeSpec, threads: int | None) -> None:
    """``--child``: run one side once and print its memory as JSON (used for peak RSS)."""
    lake = Lake(DATA / spec.name / "lake")
    workload = next(w for w in workloads(spec) if w.name == workload_name)
    side = make_side(kind, workload, lake, threads)
    before = _status_mb("VmRSS")
    began = time.perf_counter()
    side.run()
    seconds = time.perf_counter() - began
    print(json.dumps({"before_mb": before, "peak_mb": _status_mb("VmHWM"), "seconds": seconds}))


def explain(side: Side, path: Path) -> None:
    """EXPLAIN ANALYZE of a side's SQL into ``path`` (after the side has run once)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        plan = con.sql("EXPLAIN ANALYZE " + side.sql).fetchall()[0][1]
    finally:
        con.close()
    path.write_text(_elide_files(side.sql) + "\n\n" + str(plan))


def _elide_files(sql: str) -> str:
    """The SQL with its (long) list of Parquet files shortened."""
    out, rest = [], sql
    marker = "read_parquet(["
    while True:
        at = rest.lower().find(marker)
        if at < 0:
            out.append(rest)
            return "".join(out)
        end = rest.find("]", at)
        count = rest.count(".parquet'", at, end)
        out.append(rest[: at + len(marker)] + f"<{count} files>")
        rest = rest[end:]


def measure(
    workload: Workload, lake: Lake, spec: LakeSpec, args: argparse.Namespace
) -> dict[str, Any]:
    """Check, then time both sides of one workload; its row of the report."""
    result: dict[str, Any] = {"workload": workload.name, "title": workload.title}
    result["params"] = dict(workload.params)
    try:
        engine = make_side("engine", workload, lake, args.threads)
    except (ImportError, MetricError) as exc:  # the analysis does not exist (yet)
        result["status"] = "missing"
        result["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[yellow]{workload.name}: analysis not available ({exc}); skipped[/]")
        return result
    hand = make_side("hand", workload, lake, args.threads)
    # Warm-up, and the check: both must return the same result.
    console.print(f"{workload.name}: warm-up and check …")
    try:
        engine_rows = engine.run()
    except Exception as exc:  # reported; the run fails at the end
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]{workload.name}: the engine failed: {exc}[/]")
        return result
    hand_rows = hand.run()
    diff = differences(engine_rows, hand_rows)
    result["rows"] = len(engine_rows)
    result["hand_sql"] = _elide_files(hand.sql)
    result["engine_sql"] = _elide_files(engine.sql)
    if diff:
        result["status"] = "mismatch"
        result["differences"] = diff
        console.print(
            f"[red bold]{workload.name}: the engine and the hand-written query differ:[/]"
        )
        for d in diff:
            console.print(f"[red]  {d}[/]")
        return result
    # Timing: alternating, in this process.
    times: dict[str, list[float]] = {"engine": [], "hand": []}
    cpus: dict[str, list[float]] = {"engine": [], "hand": []}
    for i in range(args.repeat):
        console.print(f"{workload.name}: run {i + 1}/{args.repeat} …")
        for kind, side in (("engine", engine), ("hand", hand)):
            cpu, began = cpu_seconds(), time.perf_counter()
            side.run()
            times[kind].append(time.perf_counter() - began)
            cpus[kind].append(cpu_seconds() - cpu)
    for kind in ("engine", "hand"):
        result[kind] = {
            "seconds": statistics.median(times[kind]),
            "cpu_seconds": statistics.median(cpus[kind]),
            "runs": times[kind],
            "cpu_runs": cpus[kind],
        }
    result["ratio"] = result["engine"]["seconds"] / result["hand"]["seconds"]
    result["cpu_ratio"] = result["engine"]["cpu_seconds"] / result["hand"]["cpu_seconds"]
    result["met"] = result["ratio"] <= TARGET
    if not args.no_rss:
        console.print(f"{workload.name}: peak RSS (fresh processes) …")
        for kind in ("engine", "hand"):
            mem = peak_rss(workload.name, kind, spec, args.threads)
            result[kind]["peak_rss_mb"] = mem["peak_mb"]
            result[kind]["rss_before_mb"] = mem["before_mb"]
    if args.explain:
        RESULTS.mkdir(exist_ok=True)
        for kind, side in (("engine", engine), ("hand", hand)):
            explain(side, RESULTS / f"metrics-explain-{workload.name}-{kind}.txt")
    result["status"] = "ok"
    return result


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "load_average": os.getloadavg(),
    }


def report(results: list[dict[str, Any]], spec: LakeSpec, lake_stats: dict[str, Any]) -> None:
    table = Table(
        title=f"metrics benchmark: {lake_stats['rows']:,} events, {lake_stats['users']:,} users, "
        f"{spec.days} days; {os.cpu_count()} cores, DuckDB {duckdb.__version__}",
        caption="median of the timed runs; ratio = engine / hand-written; cpu ratio: the same "
        "with process CPU time; peak RSS of a fresh process running the side once",
    )
    columns = ("workload", "engine s", "hand s", "ratio", f"≤{TARGET}×?", "cpu ratio")
    for column in (*columns, "RSS MB engine", "RSS MB hand"):
        table.add_column(column, justify="left" if column == "workload" else "right", no_wrap=True)
    for r in results:
        if r.get("status") != "ok":
            table.add_row(r["workload"], "", "", "", f"[red]{r.get('status', '?')}[/]")
            continue
        e, h = r["engine"], r["hand"]
        table.add_row(
            r["workload"],
            f"{e['seconds']:.3f}",
            f"{h['seconds']:.3f}",
            f"{r['ratio']:.2f}×",
            "[green]yes[/]" if r["met"] else "[red]no[/]",
            f"{r['cpu_ratio']:.2f}×",
            f"{e['peak_rss_mb']:.0f}" if "peak_rss_mb" in e else "-",
            f"{h['peak_rss_mb']:.0f}" if "peak_rss_mb" in h else "-",
        )
    Console(width=max(console.width, 120)).print(table)
    for r in results:
        console.print(f"  {r['workload']}: {r['title']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="rows in the lake")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1M events, 20k users (smoke run)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (both sides)")
    parser.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes")
    parser.add_argument(
        "--explain", action="store_true", help="write EXPLAIN ANALYZE of both sides to results/"
    )
    parser.add_argument("--generate-only", action="store_true", help="only make the lake")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.events, args.users = 1_000_000, 20_000
    spec = LakeSpec(args.events, args.users, args.days, args.seed)
    if args.child:
        child(args.child[0], args.child[1], spec, args.threads)
        return

    load_before = os.getloadavg()
    lake, lake_stats, cached = ensure_lake(spec)
    console.print(
        f"lake {spec.name}: {lake_stats['rows']:,} rows in {lake_stats['files']} files, "
        f"{lake_stats['bytes'] / 1e6:,.0f} MB"
        + (" (reused)" if cached else f", generated in {lake_stats['generation_seconds']} s")
    )
    if args.generate_only:
        return
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    results = [
        measure(w, lake, spec, args) for w in workloads(spec) if not wanted or w.name in wanted
    ]
    report(results, spec, lake_stats)
    info = machine()
    info["load_average_before"] = load_before
    if max(load_before[0], info["load_average"][0]) > (os.cpu_count() or 1) / 2:
        console.print(
            f"[yellow]the machine was busy (load average {load_before[0]:.1f} before, "
            f"{info['load_average'][0]:.1f} after): timings are noisy[/]"
        )
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": info,
        "args": vars(args),
        "lake": {**lake_stats, "reused": cached, "path": str(lake.root)},
        "target_ratio": TARGET,
        "workloads": results,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"metrics-{stamp}.json", "metrics-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2, default=str))
    if any(r.get("status") in ("mismatch", "error") for r in results):
        sys.exit("the engine failed or disagreed with the hand-written query (see above)")


if __name__ == "__main__":
    main()
