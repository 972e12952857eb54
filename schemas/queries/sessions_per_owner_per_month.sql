-- Sessions per owner per month (UTC), busiest first within each month.
-- month is taken from the dt partition, so the query reads only the
-- partitions in range.
-- Parameters, in order:
--   1. first day, 'yyyy-MM-dd' (inclusive)
--   2. last day, 'yyyy-MM-dd' (inclusive)
SELECT substr(dt, 1, 7) AS month, owner, count(*) AS sessions
FROM ssm_sessions
WHERE dt BETWEEN ? AND ?
GROUP BY substr(dt, 1, 7), owner
ORDER BY month, sessions DESC, owner;
