WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts,
    app_instance
  FROM events
  WHERE
    name = 'login'
    AND toDate(client_ts) >= toDate('2026-01-01')
    AND toDate(client_ts) <= toDate('2026-03-31')
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
    toDate(client_ts) AS day,
    nullIf(app_instance, '') AS unit,
    NULL AS bd
  FROM dd
)
SELECT
  toStartOfMonth(ts) AS period,
  bd,
  COUNT(DISTINCT unit) AS active_users
FROM ev
GROUP BY
  period,
  bd
