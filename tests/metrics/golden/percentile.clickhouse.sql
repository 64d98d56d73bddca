WITH src AS (
  SELECT
    cityHash64(event_id, name) AS h,
    event_id,
    name,
    client_ts,
    received_ts,
    data
  FROM events
  WHERE
    name = 'api.call'
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN data IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    toDate(client_ts) AS day,
    event_id AS unit,
    NULL AS bd,
    if(JSONType(data, 'duration_ms') IN ('Int64', 'UInt64', 'Double'), toNullable(JSONExtractFloat(data, 'duration_ms')), NULL) AS num
  FROM dd
)
SELECT
  toMonday(ts) AS period,
  bd,
  COUNT(num) AS n,
  quantileExactInclusive(0.5)(num) AS q0,
  quantileExactInclusive(0.9)(num) AS q1,
  quantileExactInclusive(0.9990000000000001)(num) AS q2
FROM ev
GROUP BY
  period,
  bd
