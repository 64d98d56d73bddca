WITH src AS (
  SELECT
    cityHash64(event_id, name) AS h,
    event_id,
    name,
    client_ts,
    received_ts,
    user_id
  FROM events
  WHERE
    name IN ('signup', 'login', 'create')
    AND client_ts < toDateTime64('2026-04-01', 6, 'UTC')
), rep AS (
  SELECT
    h
  FROM src
  GROUP BY
    h
  HAVING
    COUNT(*) > 1
), dd AS (
  SELECT
    *
  FROM src
  WHERE
    NOT (
      h IN (
        SELECT
          h
        FROM rep
      )
    )
  UNION ALL
  SELECT
    *
  FROM src
  WHERE
    h IN (
      SELECT
        h
      FROM rep
    )
  QUALIFY
    ROW_NUMBER() OVER (
      PARTITION BY event_id, name
      ORDER BY received_ts, client_ts, 0 + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    toDate(client_ts) AS day,
    nullIf(user_id, '') AS unit,
    NULL AS bd
  FROM dd
), firsts AS (
  SELECT
    unit,
    ts,
    day,
    bd
  FROM ev
  WHERE
    name = 'signup' AND NOT (
      unit IS NULL
    )
  QUALIFY
    ROW_NUMBER() OVER (PARTITION BY unit ORDER BY ts, event_id) = 1
), members AS (
  SELECT
    unit,
    toMonday(ts) AS cohort,
    bd
  FROM firsts
  WHERE
    day >= toDate('2026-01-01') AND day <= toDate('2026-03-31')
), returns AS (
  SELECT DISTINCT
    unit,
    toMonday(ts) AS back
  FROM ev
  WHERE
    name IN ('login', 'create') AND NOT (
      unit IS NULL
    )
)
SELECT
  *
FROM (
  SELECT
    cohort,
    bd,
    CAST(0 AS Nullable(Int64)) AS k,
    COUNT(*) AS units
  FROM members
  GROUP BY
    cohort,
    bd
  UNION ALL
  SELECT
    m.cohort AS cohort,
    m.bd AS bd,
    CAST(intDiv(dateDiff('day', m.cohort, r.back), 7) AS Nullable(Int64)) AS k,
    COUNT(DISTINCT m.unit) AS units
  FROM members AS m
  JOIN returns AS r
    ON r.unit = m.unit
  WHERE
    r.back > m.cohort AND intDiv(dateDiff('day', m.cohort, r.back), 7) <= 4
  GROUP BY
    m.cohort,
    m.bd,
    intDiv(dateDiff('day', m.cohort, r.back), 7)
) AS counts
