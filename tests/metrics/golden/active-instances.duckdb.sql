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
    NULLIF(app_instance, '') AS unit,
    NULL AS bd
  FROM dd
)
SELECT
  CAST(date_trunc('month', ts) AS DATE) AS period,
  bd,
  COUNT(DISTINCT unit) AS active_users
FROM ev
GROUP BY
  period,
  bd
