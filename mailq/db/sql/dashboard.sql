-- name: dashboard_oldest_due
-- The waiting email that has been due longest, over kinds $1: the first due row of each
-- (kind, priority) in emails_due_idx (the claim's own index, read the way the claim reads it).
SELECT d.id, d.kind, d.run_at, extract(epoch FROM now() - d.run_at)::float8 AS age_s
FROM unnest($1::text[]) AS k(kind)
CROSS JOIN generate_series(0, 9) AS lvl(priority)
CROSS JOIN LATERAL (
    SELECT e.id, e.kind, e.run_at FROM mailq.emails AS e
    WHERE e.status = 'waiting' AND e.kind = k.kind AND e.priority = lvl.priority
      AND e.run_at <= now()
    ORDER BY e.run_at, e.id
    LIMIT 1
) AS d
ORDER BY d.run_at, d.id
LIMIT 1;

-- name: dashboard_kinds_waiting
-- Kinds that have waiting emails (a skip scan of emails_due_idx, one probe per kind).
WITH RECURSIVE kinds AS (
    (SELECT e.kind FROM mailq.emails AS e WHERE e.status = 'waiting' ORDER BY e.kind LIMIT 1)
    UNION ALL
    SELECT n.kind FROM kinds AS k
    CROSS JOIN LATERAL (
        SELECT e.kind FROM mailq.emails AS e
        WHERE e.status = 'waiting' AND e.kind > k.kind ORDER BY e.kind LIMIT 1
    ) AS n
)
SELECT kind FROM kinds;

-- name: dashboard_rate_minutes
-- The attempt-rate rollup from minute $1 on (mailq.attempt_rates, one row per closed minute).
SELECT minute, sent, retry, failed, lost
FROM mailq.attempt_rates
WHERE minute >= $1::timestamptz
ORDER BY minute;

-- name: dashboard_rate_fill
-- Count the attempts of minutes [$1, $2) once, by outcome, into mailq.attempt_rates (a
-- minute without attempts gets its row of zeros). The attempts are found by time through
-- attempts_finished_brin; minutes already counted are left as they are.
INSERT INTO mailq.attempt_rates AS r (minute, sent, retry, failed, lost)
SELECT m.minute, coalesce(c.sent, 0), coalesce(c.retry, 0), coalesce(c.failed, 0),
       coalesce(c.lost, 0)
FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 minute',
                     interval '1 minute') AS m(minute)
LEFT JOIN (
    SELECT date_trunc('minute', a.finished_at) AS minute,
           count(*) FILTER (WHERE a.outcome = 'sent') AS sent,
           count(*) FILTER (WHERE a.outcome = 'retry') AS retry,
           count(*) FILTER (WHERE a.outcome = 'failed') AS failed,
           count(*) FILTER (WHERE a.outcome = 'lost') AS lost
    FROM mailq.attempts AS a
    WHERE a.finished_at >= $1::timestamptz AND a.finished_at < $2::timestamptz
    GROUP BY 1
) AS c ON c.minute = m.minute
ON CONFLICT (minute) DO NOTHING;

-- name: dashboard_rate_live
-- Attempts since minute $1 (the minutes not closed yet), per minute and outcome.
SELECT date_trunc('minute', a.finished_at) AS minute,
       count(*) FILTER (WHERE a.outcome = 'sent') AS sent,
       count(*) FILTER (WHERE a.outcome = 'retry') AS retry,
       count(*) FILTER (WHERE a.outcome = 'failed') AS failed,
       count(*) FILTER (WHERE a.outcome = 'lost') AS lost
FROM mailq.attempts AS a
WHERE a.finished_at >= $1::timestamptz
GROUP BY 1
ORDER BY 1;

-- name: dashboard_rate_prune
-- Forget rollup minutes before $1.
DELETE FROM mailq.attempt_rates WHERE minute < $1::timestamptz;

-- name: dashboard_now
-- The database's clock (the rollup's minutes are closed by it, not by the web server's).
SELECT now() AS now;

-- name: dashboard_email_max_id
-- The newest email's id (0 without emails): where a search walks down from.
SELECT coalesce(max(id), 0)::bigint AS id FROM mailq.emails;

-- name: dashboard_email_id_at
-- The first id whose email was created at or after $1, ids up to $2 (the newest; $2 + 1 if
-- none), by bisection over the primary key in one statement (ids are handed out in creation
-- order): about 25 steps of two one-row lookups. Each step looks at the first email at or
-- above the middle of [low, high): created before $1, the answer is above it; else it is at
-- most the middle.
WITH RECURSIVE bisect (low, high) AS (
    SELECT 1::bigint, $2::bigint + 1
    UNION ALL
    SELECT CASE WHEN f.created_at < $1::timestamptz THEN f.id + 1 ELSE b.low END,
           CASE WHEN f.created_at < $1::timestamptz THEN b.high ELSE (b.low + b.high) / 2 END
    FROM bisect AS b
    CROSS JOIN LATERAL (
        SELECT (SELECT e.id FROM mailq.emails AS e
                WHERE e.id >= (b.low + b.high) / 2 ORDER BY e.id LIMIT 1) AS id
    ) AS m
    CROSS JOIN LATERAL (
        SELECT m.id, (SELECT e.created_at FROM mailq.emails AS e WHERE e.id = m.id) AS created_at
    ) AS f
    WHERE b.low < b.high
)
SELECT low FROM bisect WHERE low >= high;

-- name: dashboard_email_walk
-- Emails with ids in [$10, $9), newest first, $12 at most, that match every filter given
-- (each null when not): kind $1, public state $2, address $3 (lower-case), recipient domain
-- $4, campaign $5, metadata containing $6, created in [$7, $8), stored status among $11.
-- A bounded range of the primary key: the page says which ids it searched, and the next
-- page goes on below them. (No index on mailq.emails serves a search: the claim path would
-- pay for it on every email.)
SELECT e.id, e.kind, mailq.email_state(e.status, e.run_at, e.attempts) AS state,
       e.to_address, e.campaign_id, e.attempts, e.max_attempts, e.last_error, e.run_at,
       e.created_at, e.finished_at
FROM mailq.emails AS e
WHERE e.id < $9::bigint AND e.id >= $10::bigint
  AND ($1::text IS NULL OR e.kind = $1::text)
  AND ($2::text IS NULL OR mailq.email_state(e.status, e.run_at, e.attempts) = $2::text)
  AND ($3::text IS NULL OR lower(e.to_address) = $3::text)
  AND ($4::text IS NULL OR lower(split_part(e.to_address, '@', 2)) = $4::text)
  AND ($5::bigint IS NULL OR e.campaign_id = $5::bigint)
  AND ($6::jsonb IS NULL OR e.metadata @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR e.created_at >= $7::timestamptz)
  AND ($8::timestamptz IS NULL OR e.created_at < $8::timestamptz)
  -- (`|| ''` keeps the planner on the primary key: through the partial index of the
  -- waiting emails it would read all of them to sort them by id.)
  AND ($11::text[] IS NULL OR e.status || '' = ANY($11::text[]))
ORDER BY e.id DESC
LIMIT $12::integer;

-- name: dashboard_email_cancellable
-- Up to $9 emails a cancel can take that match the filters of dashboard_email_walk: waiting
-- or unknown, so only the partial indexes of the unfinished emails are read.
SELECT e.id
FROM mailq.emails AS e
WHERE e.status IN ('waiting', 'unknown')
  AND ($1::text IS NULL OR e.kind = $1::text)
  AND ($2::text IS NULL OR mailq.email_state(e.status, e.run_at, e.attempts) = $2::text)
  AND ($3::text IS NULL OR lower(e.to_address) = $3::text)
  AND ($4::text IS NULL OR lower(split_part(e.to_address, '@', 2)) = $4::text)
  AND ($5::bigint IS NULL OR e.campaign_id = $5::bigint)
  AND ($6::jsonb IS NULL OR e.metadata @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR e.created_at >= $7::timestamptz)
  AND ($8::timestamptz IS NULL OR e.created_at < $8::timestamptz)
ORDER BY e.id
LIMIT $9::integer;

-- name: dashboard_email_retryable
-- Up to $9 emails a retry can take that match the filters of dashboard_email_walk: failed or
-- unknown (emails_failed_idx, emails_unknown_idx).
SELECT e.id
FROM mailq.emails AS e
WHERE (e.status = 'failed' OR e.status = 'unknown')
  AND ($1::text IS NULL OR e.kind = $1::text)
  AND ($2::text IS NULL OR mailq.email_state(e.status, e.run_at, e.attempts) = $2::text)
  AND ($3::text IS NULL OR lower(e.to_address) = $3::text)
  AND ($4::text IS NULL OR lower(split_part(e.to_address, '@', 2)) = $4::text)
  AND ($5::bigint IS NULL OR e.campaign_id = $5::bigint)
  AND ($6::jsonb IS NULL OR e.metadata @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR e.created_at >= $7::timestamptz)
  AND ($8::timestamptz IS NULL OR e.created_at < $8::timestamptz)
ORDER BY e.id
LIMIT $9::integer;

-- name: dashboard_email_lock
-- Inside a transaction: lock those of emails $1 whose stored status is among $2, skipping
-- any a worker holds right now; a bulk action then changes exactly these.
SELECT e.id FROM mailq.emails AS e
WHERE e.id = ANY($1::bigint[]) AND e.status = ANY($2::text[])
ORDER BY e.id
FOR UPDATE SKIP LOCKED;

-- name: dashboard_email_detail
-- One email as its page shows it: stored and public state, the content as a worker would
-- build it (a campaign's shared content merged in, the recipient's keys winning).
SELECT e.id, e.kind, e.status, mailq.email_state(e.status, e.run_at, e.attempts) AS state,
       e.priority, e.run_at, e.send_at, e.attempts, e.max_attempts, e.worker_id, e.claimed_at,
       e.to_address, e.message_id, e.metadata::text AS metadata, e.last_error, e.created_at,
       e.finished_at, e.campaign_id, e.data_started_at,
       CASE WHEN e.campaign_id IS NULL THEN e.content::text
            ELSE ((SELECT c.content FROM mailq.campaigns AS c WHERE c.id = e.campaign_id)
                  || e.content)::text
       END AS content,
       (SELECT s.reason FROM mailq.suppressions AS s
        WHERE s.address = lower(e.to_address)) AS suppressed
FROM mailq.emails AS e
WHERE e.id = $1::bigint;

-- name: dashboard_unknown_list
-- Unknown emails (the `hold` triage), oldest first, after id $1, $2 at most
-- (emails_unknown_idx).
SELECT e.id, e.kind, e.to_address, e.attempts, e.last_error, e.data_started_at, e.created_at,
       e.campaign_id, e.message_id
FROM mailq.emails AS e
WHERE e.status = 'unknown' AND e.id > $1::bigint
ORDER BY e.id
LIMIT $2::integer;

-- name: dashboard_failure_groups
-- The latest $2 emails that failed since $1 (emails_failed_idx, newest first), each with
-- its last attempt's reply, counted by reply code and recipient domain.
WITH failed AS (
    SELECT e.id, e.to_address, e.finished_at
    FROM mailq.emails AS e
    WHERE e.status = 'failed' AND e.finished_at >= $1::timestamptz
    ORDER BY e.finished_at DESC
    LIMIT $2::integer
)
SELECT a.smtp_code, lower(split_part(f.to_address, '@', 2)) AS domain, count(*)::bigint AS n,
       max(f.finished_at) AS latest, min(a.smtp_reply) AS reply, min(a.error) AS error
FROM failed AS f
LEFT JOIN LATERAL (
    SELECT t.smtp_code, t.smtp_reply, t.error FROM mailq.attempts AS t
    WHERE t.email_id = f.id ORDER BY t.attempt DESC LIMIT 1
) AS a ON true
GROUP BY 1, 2;

-- name: dashboard_failure_group_emails
-- The emails of one failure group: failed since $1 (the latest $2), whose last reply
-- code is $3 (null: any; $5 true: those without a code) and whose recipient domain is $4
-- (null: any).
WITH failed AS (
    SELECT e.id, e.to_address
    FROM mailq.emails AS e
    WHERE e.status = 'failed' AND e.finished_at >= $1::timestamptz
    ORDER BY e.finished_at DESC
    LIMIT $2::integer
)
SELECT f.id, f.to_address
FROM failed AS f
LEFT JOIN LATERAL (
    SELECT t.smtp_code FROM mailq.attempts AS t
    WHERE t.email_id = f.id ORDER BY t.attempt DESC LIMIT 1
) AS a ON true
WHERE ($4::text IS NULL OR lower(split_part(f.to_address, '@', 2)) = $4::text)
  AND (CASE WHEN $5::boolean THEN a.smtp_code IS NULL
            ELSE $3::integer IS NULL OR a.smtp_code = $3::integer END)
ORDER BY f.id;

-- name: dashboard_rate_buckets
-- Every rate-limit bucket with its tokens refilled up to now (read without a lock).
SELECT b.name, b.rate, b.burst, b.reserve,
       least(b.burst, b.tokens + b.rate * greatest(0, extract(epoch FROM now() - b.updated_at)))
           AS tokens
FROM mailq.rate_buckets AS b
ORDER BY b.name;

-- name: dashboard_campaign_sample
-- Note campaign $1's finished count $2, unless it was noted less than $3 seconds ago.
INSERT INTO mailq.campaign_samples (campaign_id, sampled_at, finished)
SELECT $1::bigint, now(), $2::bigint
WHERE NOT EXISTS (
    SELECT 1 FROM mailq.campaign_samples AS s
    WHERE s.campaign_id = $1::bigint AND s.sampled_at > now() - make_interval(secs => $3::float8)
)
ON CONFLICT DO NOTHING;

-- name: dashboard_campaign_rate
-- Campaign $1's oldest sample in the last $2 seconds: the rate is the finished count's
-- growth since then.
SELECT s.finished, extract(epoch FROM now() - s.sampled_at)::float8 AS age_s
FROM mailq.campaign_samples AS s
WHERE s.campaign_id = $1::bigint AND s.sampled_at > now() - make_interval(secs => $2::float8)
ORDER BY s.sampled_at
LIMIT 1;

-- name: dashboard_campaign_sample_prune
-- Forget campaign samples older than $1 seconds.
DELETE FROM mailq.campaign_samples WHERE sampled_at < now() - make_interval(secs => $1::float8);

-- name: dashboard_event_rates_kinds
-- Per kind: its sent emails (mailq.finished_counts: those the retention keeps) and its
-- delivery events of the last $1 days (mailq.event_counts, days counted in UTC), by outcome.
-- Both are trigger-kept counts: nothing here reads an email or an event.
WITH sent AS (
    SELECT f.kind, sum(f.n)::bigint AS sent
    FROM mailq.finished_counts AS f
    WHERE f.status = 'sent'
    GROUP BY 1
),
events AS (
    SELECT x.kind,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'delivered'), 0)::bigint AS delivered,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'hard_bounced'), 0)::bigint AS hard_bounced,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'soft_bounced'), 0)::bigint AS soft_bounced,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'rejected'), 0)::bigint AS rejected,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'complained'), 0)::bigint AS complained,
           coalesce(sum(x.n) FILTER (WHERE x.outcome = 'unsubscribed'), 0)::bigint AS unsubscribed
    FROM mailq.event_counts AS x
    WHERE x.day >= (now() AT TIME ZONE 'UTC')::date - $1::integer
    GROUP BY 1
)
SELECT coalesce(s.kind, e.kind) AS kind, coalesce(s.sent, 0) AS sent,
       coalesce(e.delivered, 0) AS delivered, coalesce(e.hard_bounced, 0) AS hard_bounced,
       coalesce(e.soft_bounced, 0) AS soft_bounced, coalesce(e.rejected, 0) AS rejected,
       coalesce(e.complained, 0) AS complained, coalesce(e.unsubscribed, 0) AS unsubscribed
FROM sent AS s
FULL JOIN events AS e ON e.kind = s.kind
WHERE coalesce(s.sent, 0) > 0 OR e.kind IS NOT NULL
ORDER BY 1;

-- name: dashboard_event_rates_campaign
-- Campaign $1 over its life: its sent emails (mailq.campaign_counts) and its delivery events
-- by outcome (mailq.event_counts, through its primary key: kind, campaign), and why the bounce
-- breaker paused it, if it did.
SELECT c.id AS campaign_id,
       (SELECT coalesce(sum(k.n), 0) FROM mailq.campaign_counts AS k
        WHERE k.campaign_id = c.id AND k.status = 'sent')::bigint AS sent,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'delivered'), 0)::bigint AS delivered,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'hard_bounced'), 0)::bigint AS hard_bounced,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'soft_bounced'), 0)::bigint AS soft_bounced,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'rejected'), 0)::bigint AS rejected,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'complained'), 0)::bigint AS complained,
       coalesce(sum(x.n) FILTER (WHERE x.outcome = 'unsubscribed'), 0)::bigint AS unsubscribed,
       (SELECT b.reason FROM mailq.bounce_breakers AS b
        WHERE b.scope = 'campaign' AND b.key = c.id::text) AS paused_reason
FROM mailq.campaigns AS c
LEFT JOIN mailq.event_counts AS x ON x.kind = c.kind AND x.campaign_id = c.id
WHERE c.id = $1::bigint
GROUP BY c.id;
