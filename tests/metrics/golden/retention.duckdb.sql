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
    name IN ('signup', 'login', 'create')
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
), firsts AS (
  SELECT
    unit,
    ts,
    day,
    bd
  FROM ev
  WHERE
    name = 'signup' AND NOT unit IS NULL
  QUALIFY
    ROW_NUMBER() OVER (PARTITION BY unit ORDER BY ts, event_id) = 1
), members AS (
  SELECT
    unit,
    (DATE '1970-01-05' + 7 * CAST(fdiv(epoch_us(ts) - 345600000000, 604800000000) AS INTEGER)) AS cohort,
    bd
  FROM firsts
  WHERE
    day >= DATE '2026-01-01' AND day <= DATE '2026-03-31'
), returns AS (
  SELECT DISTINCT
    unit,
    (DATE '1970-01-05' + 7 * CAST(fdiv(epoch_us(ts) - 345600000000, 604800000000) AS INTEGER)) AS back
  FROM ev
  WHERE
    name IN ('login', 'create') AND NOT unit IS NULL
)
SELECT
  *
FROM (
  SELECT
    cohort,
    bd,
    CAST(0 AS BIGINT) AS k,
    COUNT(*) AS units
  FROM members
  GROUP BY
    cohort,
    bd
  UNION ALL
  SELECT
    m.cohort AS cohort,
    m.bd AS bd,
    CAST((date_diff('day', m.cohort, r.back) // 7) AS BIGINT) AS k,
    COUNT(DISTINCT m.unit) AS units
  FROM members AS m
  JOIN returns AS r
    ON r.unit = m.unit
  WHERE
    r.back > m.cohort AND (date_diff('day', m.cohort, r.back) // 7) <= 4
  GROUP BY
    m.cohort,
    m.bd,
    (date_diff('day', m.cohort, r.back) // 7)
) AS counts
