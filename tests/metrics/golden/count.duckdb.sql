WITH src AS (
  SELECT
    hash(event_id, name) AS h,
    event_id,
    name,
    client_ts,
    received_ts,
    user_id
  FROM events
  WHERE
    name = 'page.view'
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    (DATE '1970-01-01' + CAST(fdiv(epoch_us(client_ts), 86400000000) AS INTEGER)) AS day,
    NULLIF(user_id, '') AS unit,
    NULL AS bd
  FROM dd
)
SELECT
  (DATE '1970-01-01' + CAST(fdiv(epoch_us(ts), 86400000000) AS INTEGER)) AS period,
  bd,
  COUNT(*) AS events,
  COUNT(DISTINCT unit) AS units
FROM ev
GROUP BY
  period,
  bd
