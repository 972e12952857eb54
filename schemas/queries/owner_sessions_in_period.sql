-- All sessions of one owner in a period, oldest first.
-- Parameters, in order:
--   1. owner ARN, for example 'arn:aws:iam::123456789012:user/alice'
--   2. first day, 'yyyy-MM-dd' (inclusive)
--   3. last day, 'yyyy-MM-dd' (inclusive)
-- Athena: EXECUTE with USING, or replace each ? with a quoted value.
SELECT session_id, account_id, region, target, status, start_date, end_date, reason
FROM ssm_sessions
WHERE owner = ?
  AND dt BETWEEN ? AND ?
ORDER BY start_date, session_id;
