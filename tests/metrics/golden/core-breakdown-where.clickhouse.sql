WITH src AS (
  SELECT
    cityHash64(event_id, name) AS h,
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN app_environment IS NULL THEN 1 ELSE 0 END + CASE WHEN data IS NULL THEN 1 ELSE 0 END + CASE WHEN session_seq IS NULL THEN 1 ELSE 0 END + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    toDate(client_ts) AS day,
    nullIf(user_id, '') AS unit,
    multiIf(JSONType(data, 'site') = 'String', nullIf(JSONExtractString(data, 'site'), ''), JSONType(data, 'site') = 'Null', NULL, nullIf(JSONExtractRaw(data, 'site'), '')) AS bd
  FROM dd
  WHERE
    (
      nullIf(app_environment, '') IS NULL OR nullIf(app_environment, '') <> 'test'
    )
    AND multiIf(JSONType(data, 'plan') = 'String', nullIf(JSONExtractString(data, 'plan'), ''), JSONType(data, 'plan') = 'Null', NULL, nullIf(JSONExtractRaw(data, 'plan'), '')) IN ('free', 'pro')
    AND CAST(session_seq AS Nullable(String)) = '3'
)
SELECT
  *
FROM (
  SELECT
    'did' AS kind,
    toMonday(ts) AS period,
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
    toMonday(ts) AS period,
    CAST(NULL AS Nullable(String)) AS action,
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
    CAST(NULL AS Nullable(DATE)) AS period,
    CAST(NULL AS Nullable(String)) AS action,
    bd,
    CAST(0 AS Nullable(Int64)) AS units
  FROM ev
  GROUP BY
    bd
) AS parts
