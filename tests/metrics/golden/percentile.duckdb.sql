WITH src AS (
  SELECT
    event_id,
    name,
    client_ts,
    received_ts,
    data
  FROM events
  WHERE
    name = 'api.call'
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
    NULL AS bd,
    CASE WHEN json_type(data, '$."duration_ms"') IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN CAST(json_extract(data, '$."duration_ms"') AS DOUBLE) END AS num
  FROM dd
)
SELECT
  CAST(date_trunc('week', ts) AS DATE) AS period,
  bd,
  COUNT(num) AS n,
  quantile_cont(num, 0.5) AS q0,
  quantile_cont(num, 0.9) AS q1,
  quantile_cont(num, 0.9990000000000001) AS q2
FROM ev
GROUP BY
  period,
  bd
