WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts,
    user_id
  FROM events
  WHERE
    name IN ('create', 'share', 'login')
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
    'did' AS kind,
    CAST(date_trunc('week', ts) AS DATE) AS period,
    name AS action,
    bd,
    COUNT(DISTINCT unit) AS units
  FROM ev
  WHERE
    name IN ('create', 'share')
  GROUP BY
    period,
    action,
    bd
  UNION ALL
  SELECT
    'act' AS kind,
    CAST(date_trunc('week', ts) AS DATE) AS period,
    CAST(NULL AS TEXT) AS action,
    bd,
    COUNT(DISTINCT unit) AS units
  FROM ev
  WHERE
    name IN ('login', 'create')
  GROUP BY
    period,
    bd
) AS parts
