-- Just-in-Time node access sessions, oldest first.
-- Parameters, in order:
--   1. first day, 'yyyy-MM-dd' (inclusive)
--   2. last day, 'yyyy-MM-dd' (inclusive)
SELECT session_id, owner, target, status, start_date, end_date, reason
FROM ssm_sessions
WHERE access_type = 'JustInTime'
  AND dt BETWEEN ? AND ?
ORDER BY start_date, session_id;
