WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts,
    user_id
  FROM events
  WHERE
    name = 'login'
    AND CAST(client_ts AS DATE) >= DATE '2026-01-01'
    AND CAST(client_ts AS DATE) <= DATE '2026-03-31'
), dd AS (
  SELECT
    *
  FROM src
  QUALIFY
    ROW_NUMBER() OVER (PARTITION BY event_id, name ORDER BY received_ts, client_ts) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    CAST(client_ts AS DATE) AS day,
    NULLIF(user_id, '') AS unit,
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
    CAST(date_trunc('month', ts) AS DATE) AS period,
    bd,
    COUNT(DISTINCT unit) AS units
  FROM ev
  GROUP BY
    period,
    bd
) AS parts
