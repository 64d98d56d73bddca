WITH src AS (
  SELECT
    hash(event_id, name) AS h,
    event_id,
    name,
    client_ts,
    received_ts,
    experiments,
    data,
    user_id
  FROM events
  WHERE
    name IN (
      'experiment.exposure',
      'sign_in.ok',
      'page.view',
      'purchase',
      'session.bounce',
      'session.start',
      'session.end'
    )
    AND client_ts >= TIMESTAMPTZ '2026-03-05 00:00:00+00'
    AND client_ts < TIMESTAMPTZ '2026-03-18 00:00:00+00'
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN experiments IS NULL THEN 1 ELSE 0 END + CASE WHEN data IS NULL THEN 1 ELSE 0 END + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    (DATE '1970-01-01' + CAST(fdiv(epoch_us(client_ts), 86400000000) AS INTEGER)) AS day,
    NULLIF(user_id, '') AS unit,
    NULL AS bd,
    COALESCE(
      NULLIF(experiments['signin-dialog'], ''),
      CASE
        WHEN NULLIF(json_extract_string(data, '$."experiment"'), '') = 'signin-dialog'
        THEN NULLIF(json_extract_string(data, '$."variation"'), '')
      END
    ) AS xv,
    CASE WHEN json_type(data, '$."amount"') IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN CAST(json_extract(data, '$."amount"') AS DOUBLE) END AS v2,
    NULLIF(json_extract_string(data, '$."pageviews"'), '') = '1' AS w4,
    NULLIF(json_extract_string(data, '$."plan"'), '') IN ('pro', 'team') AS w5,
    NULLIF(json_extract_string(data, '$."plan"'), '') = 'pro' AS w6,
    (
      NULLIF(json_extract_string(data, '$."plan"'), '') IS NULL
      OR NULLIF(json_extract_string(data, '$."plan"'), '') <> 'free'
    )
    AND NULLIF(json_extract_string(data, '$."pageviews"'), '') IN ('1', '2') AS w7,
    (
      NULLIF(json_extract_string(data, '$."plan"'), '') IS NULL
      OR NULLIF(json_extract_string(data, '$."plan"'), '') <> 'free'
    )
    AND (
      NULLIF(json_extract_string(data, '$."plan"'), '') IS NULL
      OR NULLIF(json_extract_string(data, '$."plan"'), '') <> 'team'
    ) AS dw7
  FROM dd
), fe AS (
  SELECT
    unit,
    MIN(ts) AS first_ts,
    MIN(xv) AS variation,
    COUNT(DISTINCT xv) AS k
  FROM ev
  WHERE
    name = 'experiment.exposure'
    AND NOT unit IS NULL
    AND NOT xv IS NULL
    AND ts >= TIMESTAMPTZ '2026-03-10 00:00:00.000000+00'
    AND ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
  GROUP BY
    unit
)
SELECT
  (DATE '1970-01-01' + CAST(fdiv(epoch_us(first_ts), 86400000000) AS INTEGER)) AS day,
  variation,
  COUNT(*) AS units
FROM fe
WHERE
  k = 1
GROUP BY
  day,
  variation
