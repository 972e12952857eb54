-- Owners who opened sessions on more than N distinct targets in one UTC day:
-- a sign of lateral movement or of automation running as a person.
-- Parameters, in order:
--   1. first day, 'yyyy-MM-dd' (inclusive)
--   2. last day, 'yyyy-MM-dd' (inclusive)
--   3. N, targets (an integer)
SELECT dt AS day, owner, count(DISTINCT target) AS targets, count(*) AS sessions
FROM ssm_sessions
WHERE dt BETWEEN ? AND ?
GROUP BY dt, owner
HAVING count(DISTINCT target) > ?
ORDER BY day, targets DESC, owner;
