WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts
  FROM events
  WHERE
    name IN ('app.error', 'page.view')
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
    event_id AS unit,
    NULL AS bd
  FROM dd
)
SELECT
  CAST(date_trunc('week', ts) AS DATE) AS period,
  bd,
  COUNT(DISTINCT CASE WHEN name = 'app.error' THEN unit END) AS num,
  COUNT(DISTINCT CASE WHEN name = 'page.view' THEN unit END) AS den
FROM ev
GROUP BY
  period,
  bd
