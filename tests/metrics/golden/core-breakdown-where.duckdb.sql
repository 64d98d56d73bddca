WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts,
    app_environment,
    data,
    session_seq,
    user_id
  FROM events
  WHERE
    name IN ('create', 'login')
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
    NULLIF(json_extract_string(data, '$."site"'), '') AS bd
  FROM dd
  WHERE
    (
      NULLIF(app_environment, '') IS NULL OR NULLIF(app_environment, '') <> 'test'
    )
    AND NULLIF(json_extract_string(data, '$."plan"'), '') IN ('free', 'pro')
    AND CAST(session_seq AS TEXT) = '3'
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
    name = 'create'
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
    name = 'login'
  GROUP BY
    period,
    bd
  UNION ALL
  SELECT
    'seen' AS kind,
    CAST(NULL AS DATE) AS period,
    CAST(NULL AS TEXT) AS action,
    bd,
    CAST(0 AS BIGINT) AS units
  FROM ev
  GROUP BY
    bd
) AS parts
