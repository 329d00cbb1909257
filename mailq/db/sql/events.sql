-- name: event_match_email
-- The email an event names: by id $1 (a VERP token or a provider tag), else by our
-- Message-ID $2 among sent emails (emails_message_id_sent_btree), else by the provider's message
-- id $3 recorded on an attempt. Its kind, campaign and recipient come with it.
SELECT m.id, m.kind, m.campaign_id, m.to_address
FROM (
    (SELECT e.id, e.kind, e.campaign_id, e.to_address, 1 AS rank
     FROM mailq.emails AS e WHERE e.id = $1::bigint)
    UNION ALL
    (SELECT e.id, e.kind, e.campaign_id, e.to_address, 2
     FROM mailq.emails AS e
     WHERE $2::text IS NOT NULL AND e.message_id COLLATE "C" = $2::text AND e.status = 'sent'
     LIMIT 1)
    UNION ALL
    (SELECT e.id, e.kind, e.campaign_id, e.to_address, 3
     FROM mailq.attempts AS a JOIN mailq.emails AS e ON e.id = a.email_id
     WHERE $3::text IS NOT NULL AND a.provider_message_id = $3::text
     LIMIT 1)
) AS m
ORDER BY m.rank
LIMIT 1;

-- name: event_insert
-- Record one event; nothing when an event with the same dedup_key is there already (the same
-- webhook or DSN delivered twice). Returns the new row's id.
INSERT INTO mailq.events
    (email_id, kind, campaign_id, type, subtype, sender_side, provider, recipient, status_code,
     diagnostic, feedback_type, provider_message_id, message_id, dedup_key, occurred_at,
     received_at)
VALUES ($1::bigint, $2::text, $3::bigint, $4::text, $5::text, $6::boolean, $7::text, $8::text,
        $9::text, $10::text, $11::text, $12::text, $13::text, $14::text, $15::timestamptz,
        coalesce($16::timestamptz, now()))
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id, received_at;

-- name: event_count_soft
-- Soft bounces of recipient $1 (any case) received since $2, refusals about the sender apart
-- (events_soft_recipient_idx).
SELECT count(*)::integer AS n
FROM mailq.events
WHERE lower(recipient) = lower($1::text) AND received_at >= $2::timestamptz
  AND type = 'bounced' AND subtype = 'soft' AND NOT sender_side;

-- name: event_list_for_email
-- The events of email $1, oldest first.
SELECT id, type, subtype, sender_side, provider, recipient, status_code, diagnostic,
       feedback_type, occurred_at, received_at
FROM mailq.events
WHERE email_id = $1::bigint
ORDER BY received_at, id
LIMIT 1000;

-- name: event_list
-- Up to $3 events of type $1 (null: any) received at or after $2 (null: ever), after event id
-- $4 (keyset paging), in arrival order (events_received_idx).
SELECT id, email_id, kind, campaign_id, type, subtype, sender_side, provider, recipient,
       status_code, diagnostic, feedback_type, provider_message_id, message_id, occurred_at,
       received_at
FROM mailq.events
WHERE ($1::text IS NULL OR type = $1::text)
  AND received_at >= coalesce($2::timestamptz, '-infinity')
  AND id > coalesce($4::bigint, 0)
ORDER BY received_at, id
LIMIT $3::integer;

-- name: event_rates
-- Sent, delivered, bounced and complained per kind (events of the last $1 days) and per
-- campaign that sent or heard back, with the ratios (mailq.bounce_rates).
SELECT scope, kind, campaign_id, sent, delivered, hard_bounced, soft_bounced, rejected,
       complained, unsubscribed, deferred, hard_bounce_rate, complaint_rate
FROM mailq.bounce_rates($1::integer)
WHERE scope = 'kind' OR sent > 0
   OR delivered + hard_bounced + soft_bounced + rejected + complained + unsubscribed
      + deferred > 0
ORDER BY scope DESC, kind, campaign_id;

-- name: event_rates_campaign
-- The same counts for campaign $1 alone, over its life (event_counts and campaign_counts by
-- their primary keys).
SELECT coalesce((SELECT sum(k.n) FROM mailq.campaign_counts AS k
                 WHERE k.campaign_id = $1::bigint AND k.status = 'sent'), 0)::bigint AS sent,
       coalesce(sum(n) FILTER (WHERE outcome = 'delivered'), 0)::bigint AS delivered,
       coalesce(sum(n) FILTER (WHERE outcome = 'hard_bounced'), 0)::bigint AS hard_bounced,
       coalesce(sum(n) FILTER (WHERE outcome = 'soft_bounced'), 0)::bigint AS soft_bounced,
       coalesce(sum(n) FILTER (WHERE outcome = 'rejected'), 0)::bigint AS rejected,
       coalesce(sum(n) FILTER (WHERE outcome = 'complained'), 0)::bigint AS complained,
       coalesce(sum(n) FILTER (WHERE outcome = 'unsubscribed'), 0)::bigint AS unsubscribed,
       coalesce(sum(n) FILTER (WHERE outcome = 'deferred'), 0)::bigint AS deferred
FROM mailq.event_counts
WHERE kind = (SELECT c.kind FROM mailq.campaigns AS c WHERE c.id = $1::bigint)
  AND campaign_id = $1::bigint;

-- name: event_campaign_counts
-- What campaign $1's breaker judges: its emails sent, its hard bounces plus refusals about
-- the sender, its complaints.
SELECT coalesce((SELECT sum(k.n) FROM mailq.campaign_counts AS k
                 WHERE k.campaign_id = $1::bigint AND k.status = 'sent'), 0)::bigint AS sent,
       coalesce(sum(x.n) FILTER (WHERE x.outcome IN ('hard_bounced', 'rejected')), 0)::bigint
           AS hard_bounced,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'complained'), 0)::bigint AS complained
FROM mailq.event_counts AS x
WHERE x.campaign_id = $1::bigint;

-- name: event_kind_counts
-- What kind $1's breaker judges: its emails sent (mailq.finished_counts), its hard bounces plus
-- refusals about the sender and its complaints of the last $2 days.
SELECT coalesce((SELECT sum(f.n) FROM mailq.finished_counts AS f
                 WHERE f.kind = $1::text AND f.status = 'sent'), 0)::bigint AS sent,
       coalesce(sum(x.n) FILTER (WHERE x.outcome IN ('hard_bounced', 'rejected')), 0)::bigint
           AS hard_bounced,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'complained'), 0)::bigint AS complained
FROM mailq.event_counts AS x
WHERE x.kind = $1::text AND x.day >= current_date - $2::integer;
