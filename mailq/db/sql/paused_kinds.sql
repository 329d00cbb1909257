-- name: kind_pause
-- Pause kind $1 (no worker claims it until resumed); true when it was not paused already.
INSERT INTO mailq.paused_kinds (kind, paused_by)
VALUES ($1::text, $2::text)
ON CONFLICT (kind) DO NOTHING
RETURNING true AS paused;

-- name: kind_resume
-- Resume kind $1 and wake the workers, whose next claim takes its due emails; true when it
-- was paused.
WITH resumed AS (
    DELETE FROM mailq.paused_kinds WHERE kind = $1::text RETURNING kind
)
SELECT pg_notify('mailq_emails', '0') IS NOT NULL AS resumed FROM resumed;

-- name: kind_list_paused
-- Every paused kind, oldest pause first.
SELECT kind, paused_at, paused_by FROM mailq.paused_kinds ORDER BY paused_at, kind;
