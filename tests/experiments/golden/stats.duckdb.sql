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
), me AS (
  SELECT
    unit,
    name,
    ts,
    v2,
    w4,
    w5,
    w6,
    w7,
    dw7
  FROM ev
  WHERE
    name IN (
      'sign_in.ok',
      'page.view',
      'purchase',
      'session.bounce',
      'session.start',
      'session.end'
    )
), pu AS (
  SELECT
    f.unit,
    f.variation,
    CAST(MAX(
      CASE
        WHEN e.name = 'sign_in.ok'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y0,
    CAST(MAX(
      CASE
        WHEN e.name = 'sign_in.ok'
        AND e.ts < f.first_ts
        AND e.ts >= (f.first_ts + to_microseconds(-259200000000))
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS x0,
    CAST(SUM(
      CASE
        WHEN e.name = 'page.view'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y1,
    CAST(SUM(
      CASE
        WHEN e.name = 'page.view'
        AND e.ts < f.first_ts
        AND e.ts >= (f.first_ts + to_microseconds(-259200000000))
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS x1,
    CAST(SUM(
      CASE
        WHEN e.name = 'purchase'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN COALESCE(e.v2, 0)
        ELSE 0
      END
    ) AS DOUBLE) AS y2,
    CAST(SUM(
      CASE
        WHEN e.name = 'purchase'
        AND e.ts < f.first_ts
        AND e.ts >= (f.first_ts + to_microseconds(-432000000000))
        THEN COALESCE(e.v2, 0)
        ELSE 0
      END
    ) AS DOUBLE) AS x2,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.bounce'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y3,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.start'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS d3,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.end'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        AND e.w4
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y4,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.end'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS d4,
    CAST(SUM(
      CASE
        WHEN e.name = 'page.view'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        AND e.w5
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y5,
    CAST(SUM(
      CASE
        WHEN e.name = 'page.view'
        AND e.ts < f.first_ts
        AND e.ts >= (f.first_ts + to_microseconds(-259200000000))
        AND e.w5
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS x5,
    CAST(MAX(
      CASE
        WHEN e.name = 'sign_in.ok'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        AND e.w6
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y6,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.end'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        AND e.w7
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS y7,
    CAST(SUM(
      CASE
        WHEN e.name = 'session.start'
        AND e.ts >= f.first_ts
        AND e.ts < TIMESTAMPTZ '2026-03-17 00:00:00.000000+00'
        AND e.dw7
        THEN 1
        ELSE 0
      END
    ) AS DOUBLE) AS d7
  FROM fe AS f
  LEFT JOIN me AS e
    ON e.unit = f.unit
  WHERE
    f.k = 1
  GROUP BY
    f.unit,
    f.variation
)
SELECT
  *
FROM (
  SELECT
    'signin' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y0) AS DOUBLE) AS sum,
    CAST(SUM(y0 * y0) AS DOUBLE) AS sum_squares,
    CAST(NULL AS DOUBLE) AS denominator_sum,
    CAST(NULL AS DOUBLE) AS denominator_sum_squares,
    CAST(NULL AS DOUBLE) AS main_denominator_sum_product,
    CAST(SUM(x0) AS DOUBLE) AS covariate_sum,
    CAST(SUM(x0 * x0) AS DOUBLE) AS covariate_sum_squares,
    CAST(SUM(y0 * x0) AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'pages' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y1) AS DOUBLE) AS sum,
    CAST(SUM(y1 * y1) AS DOUBLE) AS sum_squares,
    CAST(NULL AS DOUBLE) AS denominator_sum,
    CAST(NULL AS DOUBLE) AS denominator_sum_squares,
    CAST(NULL AS DOUBLE) AS main_denominator_sum_product,
    CAST(SUM(x1) AS DOUBLE) AS covariate_sum,
    CAST(SUM(x1 * x1) AS DOUBLE) AS covariate_sum_squares,
    CAST(SUM(y1 * x1) AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'revenue' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y2) AS DOUBLE) AS sum,
    CAST(SUM(y2 * y2) AS DOUBLE) AS sum_squares,
    CAST(NULL AS DOUBLE) AS denominator_sum,
    CAST(NULL AS DOUBLE) AS denominator_sum_squares,
    CAST(NULL AS DOUBLE) AS main_denominator_sum_product,
    CAST(SUM(x2) AS DOUBLE) AS covariate_sum,
    CAST(SUM(x2 * x2) AS DOUBLE) AS covariate_sum_squares,
    CAST(SUM(y2 * x2) AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'bounce' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y3) AS DOUBLE) AS sum,
    CAST(SUM(y3 * y3) AS DOUBLE) AS sum_squares,
    CAST(SUM(d3) AS DOUBLE) AS denominator_sum,
    CAST(SUM(d3 * d3) AS DOUBLE) AS denominator_sum_squares,
    CAST(SUM(y3 * d3) AS DOUBLE) AS main_denominator_sum_product,
    CAST(NULL AS DOUBLE) AS covariate_sum,
    CAST(NULL AS DOUBLE) AS covariate_sum_squares,
    CAST(NULL AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'one_page' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y4) AS DOUBLE) AS sum,
    CAST(SUM(y4 * y4) AS DOUBLE) AS sum_squares,
    CAST(SUM(d4) AS DOUBLE) AS denominator_sum,
    CAST(SUM(d4 * d4) AS DOUBLE) AS denominator_sum_squares,
    CAST(SUM(y4 * d4) AS DOUBLE) AS main_denominator_sum_product,
    CAST(NULL AS DOUBLE) AS covariate_sum,
    CAST(NULL AS DOUBLE) AS covariate_sum_squares,
    CAST(NULL AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'paid_pages' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y5) AS DOUBLE) AS sum,
    CAST(SUM(y5 * y5) AS DOUBLE) AS sum_squares,
    CAST(NULL AS DOUBLE) AS denominator_sum,
    CAST(NULL AS DOUBLE) AS denominator_sum_squares,
    CAST(NULL AS DOUBLE) AS main_denominator_sum_product,
    CAST(SUM(x5) AS DOUBLE) AS covariate_sum,
    CAST(SUM(x5 * x5) AS DOUBLE) AS covariate_sum_squares,
    CAST(SUM(y5 * x5) AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'paid_signin' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y6) AS DOUBLE) AS sum,
    CAST(SUM(y6 * y6) AS DOUBLE) AS sum_squares,
    CAST(NULL AS DOUBLE) AS denominator_sum,
    CAST(NULL AS DOUBLE) AS denominator_sum_squares,
    CAST(NULL AS DOUBLE) AS main_denominator_sum_product,
    CAST(NULL AS DOUBLE) AS covariate_sum,
    CAST(NULL AS DOUBLE) AS covariate_sum_squares,
    CAST(NULL AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
  UNION ALL
  SELECT
    'not_free_bounce' AS metric,
    variation,
    COUNT(*) AS n,
    CAST(SUM(y7) AS DOUBLE) AS sum,
    CAST(SUM(y7 * y7) AS DOUBLE) AS sum_squares,
    CAST(SUM(d7) AS DOUBLE) AS denominator_sum,
    CAST(SUM(d7 * d7) AS DOUBLE) AS denominator_sum_squares,
    CAST(SUM(y7 * d7) AS DOUBLE) AS main_denominator_sum_product,
    CAST(NULL AS DOUBLE) AS covariate_sum,
    CAST(NULL AS DOUBLE) AS covariate_sum_squares,
    CAST(NULL AS DOUBLE) AS main_covariate_sum_product
  FROM pu
  GROUP BY
    variation
) AS s
