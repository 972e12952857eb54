-- All sessions on one target (instance or managed node), oldest first.
-- Parameters, in order:
--   1. target, for example 'i-0123456789abcdef0'
--   2. first day, 'yyyy-MM-dd' (inclusive)
--   3. last day, 'yyyy-MM-dd' (inclusive)
SELECT session_id, owner, status, start_date, end_date, reason
FROM ssm_sessions
WHERE target = ?
  AND dt BETWEEN ? AND ?
ORDER BY start_date, session_id;
