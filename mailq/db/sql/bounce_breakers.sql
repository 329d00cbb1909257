-- name: bounce_breaker_get
-- The breaker of scope $1 ('campaign' or 'kind') and key $2: why it tripped, when, and the
-- counts then (after a resume the breaker judges only what came since).
SELECT scope, key, reason, tripped_at, sent, hard_bounced, complained
FROM mailq.bounce_breakers
WHERE scope = $1::text AND key = $2::text;

-- name: bounce_breaker_trip
-- Trip the breaker of scope $1 and key $2 with reason $3 and the counts $4-$6 at that moment.
INSERT INTO mailq.bounce_breakers AS b
    (scope, key, reason, tripped_at, sent, hard_bounced, complained)
VALUES ($1::text, $2::text, $3::text, coalesce($7::timestamptz, now()), $4::bigint, $5::bigint,
        $6::bigint)
ON CONFLICT (scope, key) DO UPDATE
SET reason = excluded.reason, tripped_at = excluded.tripped_at, sent = excluded.sent,
    hard_bounced = excluded.hard_bounced, complained = excluded.complained
RETURNING tripped_at;

-- name: bounce_breaker_list
-- Every tripped breaker, the newest first, with the campaign's status for a campaign.
SELECT b.scope, b.key, b.reason, b.tripped_at, b.sent, b.hard_bounced, b.complained,
       c.status AS campaign_status
FROM mailq.bounce_breakers AS b
LEFT JOIN mailq.campaigns AS c ON b.scope = 'campaign' AND c.id::text = b.key
ORDER BY b.tripped_at DESC
LIMIT 100;
