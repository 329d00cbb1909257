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
-- or unknown, so only the partial indexes of the unfinished emails are read (written as OR:
-- one index holds the waiting emails, another the unknown ones, emails_due_idx and
-- emails_unknown_idx; none holds both since campaign emails left emails_open_address_idx).
SELECT e.id
FROM mailq.emails AS e
WHERE (e.status = 'waiting' OR e.status = 'unknown')
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

-- name: dashboard_overview
-- Everything the overview's live regions show, in one statement (one round trip per server-sent
-- update), each list as a JSON array: the database's clock; the counts by kind and state
-- (mailq.queue_stats); the longest-due waiting email of the kinds with waiting ones (the
-- first due row of each kind and priority in emails_due_idx); live workers; paused kinds;
-- the backend breakers; per kind the sent emails and delivery events of the last $1 days
-- (dashboard_event_rates_kinds); the attempt-rate rollup of the day's minutes (from the
-- start of the hour 23 hours ago) and the attempts of the minutes not closed yet (the last
-- two, through attempts_finished_brin); and the newest $2 campaigns that are paused or have
-- emails not finished, by state. A campaign's open emails are its recipients
-- (mailq.campaign_recipient_counts) less its finished ones (mailq.campaign_counts); of them
-- only the sending and unknown ones are read (emails_campaign_open_idx), the rest are
-- `waiting` (`scheduled` before the campaign's send_at): no waiting recipient is read.
WITH counts AS MATERIALIZED (
    SELECT kind, state, count, extract(epoch FROM oldest_due_age)::float8 AS oldest_due_age_s
    FROM mailq.queue_stats
),
oldest AS (
    SELECT d.id, d.kind, d.run_at, extract(epoch FROM now() - d.run_at)::float8 AS age_s
    FROM (SELECT DISTINCT kind FROM counts
          WHERE state IN ('queued', 'scheduled', 'retrying') AND count > 0) AS k
    CROSS JOIN generate_series(0, 9) AS lvl(priority)
    CROSS JOIN LATERAL (
        SELECT e.id, e.kind, e.run_at FROM mailq.emails AS e
        WHERE e.status = 'waiting' AND e.kind = k.kind AND e.priority = lvl.priority
          AND e.run_at <= now()
        ORDER BY e.run_at, e.id
        LIMIT 1
    ) AS d
    ORDER BY d.run_at, d.id
    LIMIT 1
),
sent AS (
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
),
event_rates AS (
    SELECT coalesce(s.kind, e.kind) AS kind, coalesce(s.sent, 0) AS sent,
           coalesce(e.delivered, 0) AS delivered, coalesce(e.hard_bounced, 0) AS hard_bounced,
           coalesce(e.soft_bounced, 0) AS soft_bounced, coalesce(e.rejected, 0) AS rejected,
           coalesce(e.complained, 0) AS complained, coalesce(e.unsubscribed, 0) AS unsubscribed
    FROM sent AS s
    FULL JOIN events AS e ON e.kind = s.kind
    WHERE coalesce(s.sent, 0) > 0 OR e.kind IS NOT NULL
),
open_campaigns AS (
    SELECT c.id, c.name, c.kind, c.status, c.send_at, o.n AS open
    FROM mailq.campaigns AS c
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT sum(r.n) FROM mailq.campaign_recipient_counts AS r
                         WHERE r.campaign_id = c.id), 0)
               - coalesce((SELECT sum(k.n) FROM mailq.campaign_counts AS k
                           WHERE k.campaign_id = c.id), 0) AS n
    ) AS o
    WHERE c.status = 'paused' OR o.n > 0
    ORDER BY c.id DESC
    LIMIT $2::integer
),
campaign_states AS (
    SELECT c.id AS campaign_id, c.name, c.kind, c.status AS campaign_status, c.send_at,
           s.state, s.count
    FROM open_campaigns AS c
    CROSS JOIN LATERAL (
        SELECT (SELECT count(*) FROM mailq.emails AS e
                WHERE e.campaign_id = c.id AND e.status = 'sending') AS sending,
               (SELECT count(*) FROM mailq.emails AS e
                WHERE e.campaign_id = c.id AND e.status = 'unknown') AS unknown
    ) AS f
    CROSS JOIN LATERAL (
        SELECT k.status AS state, sum(k.n)::bigint AS count
        FROM mailq.campaign_counts AS k WHERE k.campaign_id = c.id
        GROUP BY 1
        UNION ALL
        -- Before the campaign's send_at nothing of it was tried: all its waiting emails are
        -- scheduled. After, they are queued or retrying (telling which would read them).
        VALUES ('sending', f.sending), ('unknown', f.unknown),
               (CASE WHEN c.send_at > now() THEN 'scheduled' ELSE 'waiting' END,
                c.open - f.sending - f.unknown)
    ) AS s
)
SELECT now() AS now,
       (SELECT coalesce(json_agg(c ORDER BY c.kind, c.state), '[]') FROM counts AS c)::text
           AS counts,
       (SELECT row_to_json(o) FROM oldest AS o)::text AS oldest,
       (SELECT coalesce(json_agg(w ORDER BY w.started_at), '[]') FROM (
            SELECT id, hostname, pid, kinds, concurrency, started_at, heartbeat_at,
                   extract(epoch FROM heartbeat_age)::float8 AS heartbeat_age_s, in_flight
            FROM mailq.workers) AS w)::text AS workers,
       (SELECT coalesce(json_agg(p ORDER BY p.paused_at, p.kind), '[]') FROM (
            SELECT kind, paused_at, paused_by FROM mailq.paused_kinds) AS p)::text AS paused,
       (SELECT coalesce(json_agg(b ORDER BY b.state = 'open' DESC, b.backend), '[]') FROM (
            SELECT backend, state, opened_at, closed_at, last_error, deferred, probes, backoff_s,
                   extract(epoch FROM probe_at - now())::float8 AS probe_in_s,
                   extract(epoch FROM coalesce(closed_at, now()) - opened_at)::float8
                       AS open_for_s
            FROM mailq.backend_breakers) AS b)::text AS breakers,
       (SELECT coalesce(json_agg(r ORDER BY r.kind), '[]') FROM event_rates AS r)::text
           AS events,
       (SELECT coalesce(json_agg(m ORDER BY m.minute), '[]') FROM (
            SELECT minute, sent, retry, failed, lost FROM mailq.attempt_rates
            WHERE minute >= date_trunc('hour', now(), 'UTC') - interval '23 hours') AS m)::text
           AS rate_minutes,
       (SELECT coalesce(json_agg(l ORDER BY l.minute), '[]') FROM (
            SELECT date_trunc('minute', a.finished_at) AS minute,
                   count(*) FILTER (WHERE a.outcome = 'sent') AS sent,
                   count(*) FILTER (WHERE a.outcome = 'retry') AS retry,
                   count(*) FILTER (WHERE a.outcome = 'failed') AS failed,
                   count(*) FILTER (WHERE a.outcome = 'lost') AS lost
            FROM mailq.attempts AS a
            WHERE a.finished_at >= date_trunc('minute', now() - interval '2 minutes', 'UTC')
            GROUP BY 1) AS l)::text AS rate_live,
       (SELECT coalesce(json_agg(s ORDER BY s.campaign_id, s.state), '[]')
        FROM campaign_states AS s WHERE s.count <> 0)::text AS campaigns;

-- name: dashboard_campaign_progress
-- Campaigns $1 by state as dashboard_overview counts them, reading none of their waiting
-- recipients: finished ones from mailq.campaign_counts, sending and unknown ones through
-- emails_campaign_open_idx, the rest of the recipients (mailq.campaign_recipient_counts)
-- `waiting` (`scheduled` before the campaign's send_at).
SELECT c.id AS campaign_id, s.state, s.count
FROM mailq.campaigns AS c
CROSS JOIN LATERAL (
    SELECT (coalesce((SELECT sum(r.n) FROM mailq.campaign_recipient_counts AS r
                      WHERE r.campaign_id = c.id), 0)
            - coalesce((SELECT sum(k.n) FROM mailq.campaign_counts AS k
                        WHERE k.campaign_id = c.id), 0))::bigint AS open,
           (SELECT count(*) FROM mailq.emails AS e
            WHERE e.campaign_id = c.id AND e.status = 'sending') AS sending,
           (SELECT count(*) FROM mailq.emails AS e
            WHERE e.campaign_id = c.id AND e.status = 'unknown') AS unknown
) AS o
CROSS JOIN LATERAL (
    SELECT k.status AS state, sum(k.n)::bigint AS count
    FROM mailq.campaign_counts AS k WHERE k.campaign_id = c.id
    GROUP BY 1
    UNION ALL
    VALUES ('sending', o.sending), ('unknown', o.unknown),
           (CASE WHEN c.send_at > now() THEN 'scheduled' ELSE 'waiting' END,
            o.open - o.sending - o.unknown)
) AS s
WHERE c.id = ANY($1::bigint[]) AND s.count <> 0
ORDER BY 1, 2;
