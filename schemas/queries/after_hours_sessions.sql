-- Sessions started outside business hours: before 08:00 or from 18:00 UTC on
-- weekdays, or at any time on Saturday or Sunday. Shift the hours for your
-- time zone, or convert with AT TIME ZONE in Athena.
-- day_of_week is ISO: Monday 1 ... Sunday 7.
-- Parameters, in order:
--   1. first day, 'yyyy-MM-dd' (inclusive)
--   2. last day, 'yyyy-MM-dd' (inclusive)
SELECT session_id, owner, target, start_date, end_date, reason
FROM ssm_sessions
WHERE dt BETWEEN ? AND ?
  AND (hour(start_date) < 8 OR hour(start_date) >= 18 OR day_of_week(start_date) IN (6, 7))
ORDER BY start_date, session_id;
