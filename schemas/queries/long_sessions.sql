-- Sessions that lasted longer than N hours, longest first. Sessions still
-- open when last observed have no end_date and are not counted.
-- Parameters, in order:
--   1. N, hours (an integer)
--   2. first day, 'yyyy-MM-dd' (inclusive)
--   3. last day, 'yyyy-MM-dd' (inclusive)
SELECT session_id, owner, target, start_date, end_date,
       date_diff('minute', start_date, end_date) AS minutes
FROM ssm_sessions
WHERE end_date IS NOT NULL
  AND date_diff('minute', start_date, end_date) > ? * 60
  AND dt BETWEEN ? AND ?
ORDER BY minutes DESC, session_id;
