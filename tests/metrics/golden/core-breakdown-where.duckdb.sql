WITH src AS (
  SELECT
    hash(event_id, name) AS h,
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
    AND client_ts >= TIMESTAMPTZ '2026-01-01 00:00:00+00'
    AND client_ts < TIMESTAMPTZ '2026-04-01 00:00:00+00'
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
    NOT h IN (
      SELECT
        h
      FROM rep
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN app_environment IS NULL THEN 1 ELSE 0 END + CASE WHEN data IS NULL THEN 1 ELSE 0 END + CASE WHEN session_seq IS NULL THEN 1 ELSE 0 END + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    (DATE '1970-01-01' + CAST(fdiv(epoch_us(client_ts), 86400000000) AS INTEGER)) AS day,
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
    (DATE '1970-01-05' + 7 * CAST(fdiv(epoch_us(ts) - 345600000000, 604800000000) AS INTEGER)) AS period,
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
    (DATE '1970-01-05' + 7 * CAST(fdiv(epoch_us(ts) - 345600000000, 604800000000) AS INTEGER)) AS period,
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
