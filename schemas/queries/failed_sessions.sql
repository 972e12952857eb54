-- Sessions that failed, oldest first.
-- Parameters, in order:
--   1. first day, 'yyyy-MM-dd' (inclusive)
--   2. last day, 'yyyy-MM-dd' (inclusive)
SELECT session_id, owner, target, document_name, start_date, end_date, reason
FROM ssm_sessions
WHERE status = 'Failed'
  AND dt BETWEEN ? AND ?
ORDER BY start_date, session_id;
