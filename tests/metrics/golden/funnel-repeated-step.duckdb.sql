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
    name IN ('view', 'cart', 'pay')
    AND client_ts >= TIMESTAMPTZ '2026-01-01 00:00:00+00'
    AND client_ts < TIMESTAMPTZ '2026-04-02 00:00:00+00'
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
), g1 AS (
  SELECT
    unit,
    ts,
    MAX(CASE WHEN rn = 1 THEN event_id END) AS i1,
    MAX(CASE WHEN rn = 2 THEN event_id END) AS i2
  FROM (
    SELECT
      unit,
      ts,
      event_id,
      ROW_NUMBER() OVER (PARTITION BY unit, ts ORDER BY event_id) AS rn
    FROM ev
    WHERE
      name = 'view' AND NOT unit IS NULL
  ) AS ranked
  WHERE
    rn <= 2
  GROUP BY
    unit,
    ts
), g2 AS (
  SELECT
    unit,
    ts,
    MIN(event_id) AS i1
  FROM ev
  WHERE
    name = 'cart' AND NOT unit IS NULL
  GROUP BY
    unit,
    ts
), g3 AS (
  SELECT
    unit,
    ts,
    MIN(event_id) AS i1
  FROM ev
  WHERE
    name = 'pay' AND NOT unit IS NULL
  GROUP BY
    unit,
    ts
), r1 AS (
  SELECT
    unit,
    event_id AS id1,
    ts AS t1,
    bd,
    (ts + to_microseconds(86400000000)) AS deadline
  FROM ev
  WHERE
    name = 'view'
    AND NOT unit IS NULL
    AND day >= DATE '2026-01-01'
    AND day <= DATE '2026-03-31'
), x2 AS (
  SELECT
    unit,
    ts,
    t_next,
    next_id
  FROM (
    SELECT
      unit,
      ts,
      kind,
      MIN(CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS t_next,
      ARG_MIN(CASE WHEN kind = 1 THEN id END, CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS next_id
    FROM (
      SELECT
        unit,
        ts,
        0 AS kind,
        i1 AS id
      FROM g1
      UNION ALL
      SELECT
        unit,
        ts,
        1 AS kind,
        i1 AS id
      FROM g2
    ) AS instants
  ) AS running
  WHERE
    kind = 0
), r2 AS (
  SELECT
    unit,
    id1,
    t1,
    bd,
    deadline,
    CASE WHEN NOT same IS NULL THEN t1 ELSE later_ts END AS t2,
    CASE WHEN NOT same IS NULL THEN same ELSE later_id END AS id2
  FROM (
    SELECT
      r.unit AS unit,
      r.id1 AS id1,
      r.t1 AS t1,
      r.bd AS bd,
      r.deadline AS deadline,
      CASE WHEN NOT g.i1 IS NULL THEN g.i1 END AS same,
      CASE WHEN x.t_next <= r.deadline THEN x.t_next END AS later_ts,
      CASE WHEN x.t_next <= r.deadline THEN x.next_id END AS later_id
    FROM r1 AS r
    LEFT JOIN g2 AS g
      ON g.unit = r.unit AND g.ts = r.t1
    LEFT JOIN x2 AS x
      ON x.unit = r.unit AND x.ts = r.t1
  ) AS m
), x3 AS (
  SELECT
    unit,
    ts,
    t_next,
    next_id
  FROM (
    SELECT
      unit,
      ts,
      kind,
      MIN(CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS t_next,
      ARG_MIN(CASE WHEN kind = 1 THEN id END, CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS next_id
    FROM (
      SELECT
        unit,
        ts,
        0 AS kind,
        i1 AS id
      FROM g2
      UNION ALL
      SELECT
        unit,
        ts,
        1 AS kind,
        i1 AS id
      FROM g1
    ) AS instants
  ) AS running
  WHERE
    kind = 0
), r3 AS (
  SELECT
    unit,
    id1,
    t1,
    bd,
    deadline,
    t2,
    id2,
    CASE WHEN NOT same IS NULL THEN t2 ELSE later_ts END AS t3,
    CASE WHEN NOT same IS NULL THEN same ELSE later_id END AS id3
  FROM (
    SELECT
      r.unit AS unit,
      r.id1 AS id1,
      r.t1 AS t1,
      r.bd AS bd,
      r.deadline AS deadline,
      r.t2 AS t2,
      r.id2 AS id2,
      CASE
        WHEN NOT g.i1 IS NULL AND g.i1 <> r.id1
        THEN g.i1
        WHEN NOT g.i2 IS NULL AND g.i2 <> r.id1
        THEN g.i2
      END AS same,
      CASE WHEN x.t_next <= r.deadline THEN x.t_next END AS later_ts,
      CASE WHEN x.t_next <= r.deadline THEN x.next_id END AS later_id
    FROM r2 AS r
    LEFT JOIN g1 AS g
      ON g.unit = r.unit AND g.ts = r.t2
    LEFT JOIN x3 AS x
      ON x.unit = r.unit AND x.ts = r.t2
  ) AS m
), x4 AS (
  SELECT
    unit,
    ts,
    t_next,
    next_id
  FROM (
    SELECT
      unit,
      ts,
      kind,
      MIN(CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS t_next,
      ARG_MIN(CASE WHEN kind = 1 THEN id END, CASE WHEN kind = 1 THEN ts END) OVER (
        PARTITION BY unit
        ORDER BY ts DESC, kind
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS next_id
    FROM (
      SELECT
        unit,
        ts,
        0 AS kind,
        i1 AS id
      FROM g1
      UNION ALL
      SELECT
        unit,
        ts,
        1 AS kind,
        i1 AS id
      FROM g3
    ) AS instants
  ) AS running
  WHERE
    kind = 0
), r4 AS (
  SELECT
    unit,
    id1,
    t1,
    bd,
    deadline,
    t2,
    id2,
    t3,
    id3,
    CASE WHEN NOT same IS NULL THEN t3 ELSE later_ts END AS t4,
    CASE WHEN NOT same IS NULL THEN same ELSE later_id END AS id4
  FROM (
    SELECT
      r.unit AS unit,
      r.id1 AS id1,
      r.t1 AS t1,
      r.bd AS bd,
      r.deadline AS deadline,
      r.t2 AS t2,
      r.id2 AS id2,
      r.t3 AS t3,
      r.id3 AS id3,
      CASE WHEN NOT g.i1 IS NULL THEN g.i1 END AS same,
      CASE WHEN x.t_next <= r.deadline THEN x.t_next END AS later_ts,
      CASE WHEN x.t_next <= r.deadline THEN x.next_id END AS later_id
    FROM r3 AS r
    LEFT JOIN g3 AS g
      ON g.unit = r.unit AND g.ts = r.t3
    LEFT JOIN x4 AS x
      ON x.unit = r.unit AND x.ts = r.t3
  ) AS m
), counted AS (
  SELECT
    bd,
    t1,
    t2,
    t3,
    t4
  FROM (
    SELECT
      unit,
      bd,
      t1,
      t2,
      t3,
      t4,
      1 + CASE WHEN NOT t2 IS NULL THEN 1 ELSE 0 END + CASE WHEN NOT t3 IS NULL THEN 1 ELSE 0 END + CASE WHEN NOT t4 IS NULL THEN 1 ELSE 0 END AS reached,
      id1
    FROM r4
  ) AS attempts
  QUALIFY
    ROW_NUMBER() OVER (PARTITION BY unit ORDER BY reached DESC, t1, id1) = 1
), agg AS (
  SELECT
    bd,
    COUNT(*) AS users_1,
    COUNT(t2) AS users_2,
    quantile_cont(((epoch_us(t2) - epoch_us(t1)) / 1000000.0), 0.5) AS median_2,
    COUNT(t3) AS users_3,
    quantile_cont(((epoch_us(t3) - epoch_us(t2)) / 1000000.0), 0.5) AS median_3,
    COUNT(t4) AS users_4,
    quantile_cont(((epoch_us(t4) - epoch_us(t3)) / 1000000.0), 0.5) AS median_4
  FROM counted
  GROUP BY
    bd
)
SELECT
  *
FROM agg
