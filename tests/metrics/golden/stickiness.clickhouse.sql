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
    name = 'login'
    AND client_ts >= toDateTime64('2026-01-01', 6, 'UTC')
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
)
SELECT
  *
FROM (
  SELECT
    'day' AS kind,
    day AS period,
    bd,
    COUNT(DISTINCT unit) AS units
  FROM ev
  GROUP BY
    day,
    bd
  UNION ALL
  SELECT
    'month' AS kind,
    toStartOfMonth(ts) AS period,
    bd,
    COUNT(DISTINCT unit) AS units
  FROM ev
  GROUP BY
    period,
    bd
) AS parts
