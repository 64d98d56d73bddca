WITH src AS (
  SELECT
    cityHash64(event_id, name) AS h,
    event_id,
    name,
    client_ts,
    received_ts,
    user_id
  FROM events
  WHERE
    name IN ('dialog.open', 'dialog.submit', 'sign_in.ok')
    AND client_ts >= toDateTime64('2026-01-01', 6, 'UTC')
    AND client_ts < toDateTime64('2026-04-02', 6, 'UTC')
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
      ORDER BY received_ts, client_ts, 0 + CASE WHEN user_id IS NULL THEN 1 ELSE 0 END
    ) = 1
), ev AS (
  SELECT
    event_id,
    name,
    client_ts AS ts,
    toDate(client_ts) AS day,
    nullIf(user_id, '') AS unit,
    NULL AS bd
  FROM dd
), g2 AS (
  SELECT
    unit,
    ts
  FROM ev
  WHERE
    name = 'dialog.submit' AND NOT (
      unit IS NULL
    )
), g3 AS (
  SELECT
    unit,
    ts
  FROM ev
  WHERE
    name = 'sign_in.ok' AND NOT (
      unit IS NULL
    )
), r1 AS (
  SELECT
    unit,
    event_id AS id1,
    ts AS t1,
    bd,
    addMicroseconds(ts, 3600000000) AS deadline
  FROM ev
  WHERE
    name = 'dialog.open'
    AND NOT (
      unit IS NULL
    )
    AND day >= toDate('2026-01-01')
    AND day <= toDate('2026-03-31')
), r2 AS (
  SELECT
    r.unit AS unit,
    r.id1 AS id1,
    r.t1 AS t1,
    r.bd AS bd,
    r.deadline AS deadline,
    CASE WHEN s.ts <= r.deadline THEN s.ts END AS t2
  FROM r1 AS r
  ASOF LEFT JOIN g2 AS s
    ON s.unit = r.unit AND s.ts >= r.t1
), r3 AS (
  SELECT
    r.unit AS unit,
    r.id1 AS id1,
    r.t1 AS t1,
    r.bd AS bd,
    r.deadline AS deadline,
    r.t2 AS t2,
    CASE WHEN s.ts <= r.deadline THEN s.ts END AS t3
  FROM r2 AS r
  ASOF LEFT JOIN g3 AS s
    ON s.unit = r.unit AND s.ts >= r.t2
), counted AS (
  SELECT
    bd,
    t1,
    t2,
    t3
  FROM (
    SELECT
      unit,
      bd,
      t1,
      t2,
      t3,
      1 + CASE WHEN NOT (
        t2 IS NULL
      ) THEN 1 ELSE 0 END + CASE WHEN NOT (
        t3 IS NULL
      ) THEN 1 ELSE 0 END AS reached,
      id1
    FROM r3
  ) AS attempts
  QUALIFY
    ROW_NUMBER() OVER (PARTITION BY unit ORDER BY reached DESC, t1, id1) = 1
), agg AS (
  SELECT
    bd,
    COUNT(*) AS users_1,
    COUNT(t2) AS users_2,
    quantileExactInclusive(0.5)(((toUnixTimestamp64Micro(t2) - toUnixTimestamp64Micro(t1)) / 1000000.0)) AS median_2,
    COUNT(t3) AS users_3,
    quantileExactInclusive(0.5)(((toUnixTimestamp64Micro(t3) - toUnixTimestamp64Micro(t2)) / 1000000.0)) AS median_3
  FROM counted
  GROUP BY
    bd
)
SELECT
  *
FROM agg
