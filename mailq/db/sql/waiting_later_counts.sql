-- name: email_waiting_later_forget
-- Forget the counts of waiting emails due in slots that began over an hour before $1 (null:
-- now): mailq.queue_stats reads only the slots still ahead, and a slot's count stops
-- changing once it has begun. Returns how many rows went.
WITH gone AS (
    DELETE FROM mailq.waiting_later_counts
    WHERE slot < coalesce($1::timestamptz, now()) - interval '1 hour'
    RETURNING 1
)
SELECT count(*)::bigint FROM gone;
