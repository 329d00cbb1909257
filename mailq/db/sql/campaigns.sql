-- name: campaign_insert
-- Create a campaign; its recipients are added after, in the same transaction.
INSERT INTO mailq.campaigns (name, kind, send_at, priority, max_attempts, content, expires_at)
VALUES ($1::text, $2::text, $3::timestamptz, $4::smallint, $5::integer, $6::jsonb,
        $7::timestamptz)
RETURNING id, name, kind, status, send_at, priority, max_attempts, content::text AS content,
          created_at, updated_at, expires_at;

-- name: campaign_lock
-- Inside a transaction: one campaign, locked against concurrent pause/resume/cancel/adds.
SELECT id, name, kind, status, send_at, priority, max_attempts, content::text AS content,
       created_at, updated_at, expires_at
FROM mailq.campaigns
WHERE id = $1::bigint
FOR UPDATE;

-- name: campaign_get
-- One campaign.
SELECT id, name, kind, status, send_at, priority, max_attempts, content::text AS content,
       created_at, updated_at, expires_at
FROM mailq.campaigns
WHERE id = $1::bigint;

-- name: campaign_list
-- Campaigns, newest first, $1 at most, older than id $2 when given (keyset paging).
SELECT id, name, kind, status, send_at, priority, max_attempts, content::text AS content,
       created_at, updated_at, expires_at
FROM mailq.campaigns
WHERE $2::bigint IS NULL OR id < $2::bigint
ORDER BY id DESC
LIMIT $1::integer;

-- name: campaign_set_status
-- Set a campaign's status (active, paused, cancelled).
UPDATE mailq.campaigns
SET status = $2::text, updated_at = now()
WHERE id = $1::bigint
RETURNING id;

-- name: campaign_progress
-- Emails of one campaign by public state (the mailq.campaign_progress view).
SELECT state, count FROM mailq.campaign_progress WHERE campaign_id = $1::bigint ORDER BY state;

-- name: campaign_progress_open
-- Progress by public state of the newest $1 campaigns that are paused or still have emails
-- not finished (found through the partial index emails_campaign_open_idx).
SELECT p.campaign_id, p.name, p.kind, p.campaign_status, p.send_at, p.state, p.count
FROM mailq.campaign_progress AS p
WHERE p.campaign_id IN (
    SELECT c.id
    FROM mailq.campaigns AS c
    WHERE c.status = 'paused'
       OR EXISTS (SELECT 1 FROM mailq.emails AS e
                  WHERE e.campaign_id = c.id AND e.status IN ('waiting', 'sending', 'unknown'))
    ORDER BY c.id DESC
    LIMIT $1::integer
)
ORDER BY p.campaign_id, p.state;
