-- name: bench_jobs_create
-- The bare loop's table: what a minimal SKIP LOCKED queue needs, with a payload the size of
-- an email's content, so that the ceiling moves the same bytes mailq does.
CREATE TABLE public.bench_jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status       text        NOT NULL DEFAULT 'waiting',
    priority     smallint    NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    payload      jsonb       NOT NULL,
    claimed_at   timestamptz,
    finished_at  timestamptz,
    handled      integer     NOT NULL DEFAULT 0
);
CREATE INDEX bench_jobs_due_idx ON public.bench_jobs (priority, run_at, id)
    WHERE status = 'waiting'

-- name: bench_jobs_fill
-- Queue $1 jobs, each with payload $2.
INSERT INTO public.bench_jobs (payload)
SELECT $2::jsonb FROM generate_series(1, $1::integer)

-- name: bench_jobs_claim
-- Claim up to $1 due jobs (the same MATERIALIZED + SKIP LOCKED shape as mailq's claim).
WITH picked AS MATERIALIZED (
    SELECT id FROM public.bench_jobs
    WHERE status = 'waiting' AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT $1::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE public.bench_jobs AS j
SET status = 'running', claimed_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.payload::text AS payload

-- name: bench_jobs_done
-- Mark a batch of claimed jobs done in one statement; `handled` counts how often each was.
UPDATE public.bench_jobs
SET status = 'done', finished_at = now(), handled = handled + 1
WHERE id = ANY($1::bigint[]) AND status = 'running'

-- name: bench_jobs_result
-- What a bare drain did: rows done, rows done more than once, rows never done, and the last
-- finish and first claim (database clock).
SELECT count(*) FILTER (WHERE status = 'done') AS done,
       count(*) FILTER (WHERE handled > 1) AS duplicates,
       count(*) FILTER (WHERE status <> 'done') AS lost,
       max(finished_at) AS last_finished,
       min(claimed_at) AS first_claimed
FROM public.bench_jobs

-- name: bench_jobs_copy_probe
-- Rows in the bare table (after a bare COPY).
SELECT count(*) FROM public.bench_jobs

-- name: bench_emails_finished
-- Emails finished so far (sent, failed or cancelled), from the trigger-kept counters: cheap
-- enough to poll while workers drain.
SELECT coalesce(sum(n), 0)::bigint FROM mailq.finished_counts

-- name: bench_emails_result
-- What a mailq drain did, from the attempts table (one row per attempt of each email):
-- emails sent, emails attempted more than once, emails never sent, and the first attempt's
-- start (the worker's clock) and the last finish (the database's clock).
SELECT (SELECT count(*) FROM mailq.emails WHERE status = 'sent') AS done,
       (SELECT count(*) FROM (
            SELECT email_id FROM mailq.attempts GROUP BY email_id HAVING count(*) > 1
        ) AS twice) AS duplicates,
       (SELECT count(*) FROM mailq.emails AS e
        WHERE NOT EXISTS (
            SELECT 1 FROM mailq.attempts AS a WHERE a.email_id = e.id AND a.outcome = 'sent'
        )) AS lost,
       (SELECT max(finished_at) FROM mailq.attempts) AS last_finished,
       (SELECT min(started_at) FROM mailq.attempts) AS first_claimed

-- name: bench_emails_started
-- When each email's sent attempt started (the worker's clock), for the wake-up latency.
SELECT email_id, started_at FROM mailq.attempts WHERE outcome = 'sent'

-- name: bench_workers_registered
-- Workers whose lease is registered (they listen and are about to claim).
SELECT count(*) FROM mailq.worker_leases

-- name: bench_server_facts
-- The server the figures come from.
SELECT version() AS version, current_setting('server_version') AS server_version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('max_connections') AS max_connections

-- name: bench_backend_pids
-- The server processes serving this database (other than the bench's own connection).
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()

-- name: bench_wal_lsn
-- Where the server's WAL is now (the whole cluster's: other databases' writes count too).
SELECT pg_current_wal_lsn()::text

-- name: bench_wal_since
-- WAL bytes written by the cluster since $1 (a bench_wal_lsn).
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8

-- name: peer_pgqueuer_remaining
-- PgQueuer jobs not yet finished (a job's row is deleted when its outcome is logged).
SELECT count(*) FROM public.pgqueuer

-- name: peer_pgqueuer_last_finished
-- When the last PgQueuer job finished (its log row, database clock).
SELECT max(created) FROM public.pgqueuer_log WHERE status = 'successful'

-- name: peer_procrastinate_remaining
-- Procrastinate jobs not yet finished.
SELECT count(*) FROM public.procrastinate_jobs WHERE status IN ('todo', 'doing')

-- name: peer_procrastinate_last_finished
-- When the last Procrastinate job succeeded (its event, database clock).
SELECT max(at) FROM public.procrastinate_events WHERE type = 'succeeded'

-- name: bench_emails_max_id
-- The highest email id so far (0 when none): a drain counts only the emails above it.
SELECT coalesce(max(id), 0) FROM mailq.emails

-- name: bench_emails_result_since
-- bench_emails_result for the emails with an id above $1 only (the history measure's
-- database already holds millions of finished emails).
SELECT (SELECT count(*) FROM mailq.emails WHERE status = 'sent' AND id > $1) AS done,
       (SELECT count(*) FROM (
            SELECT email_id FROM mailq.attempts WHERE email_id > $1
            GROUP BY email_id HAVING count(*) > 1
        ) AS twice) AS duplicates,
       (SELECT count(*) FROM mailq.emails AS e
        WHERE e.id > $1 AND NOT EXISTS (
            SELECT 1 FROM mailq.attempts AS a WHERE a.email_id = e.id AND a.outcome = 'sent'
        )) AS lost,
       (SELECT max(finished_at) FROM mailq.attempts WHERE email_id > $1) AS last_finished,
       (SELECT min(started_at) FROM mailq.attempts WHERE email_id > $1) AS first_claimed

-- name: bench_history_emails
-- $1 finished (sent) welcome emails, content $2: the history a queue that has run for a
-- while keeps. They finished within the last 12 days, 10 a second (10,000,000 span 11.6
-- days), inside the default retention (14 days): the workers' prune duty leaves them be.
-- Their Message-IDs are mailq's (mailq.addresses): the clock in 13 hex digits, then 19
-- more, so that the drained emails' ids go into the index where real ones would.
INSERT INTO mailq.emails (kind, status, priority, run_at, attempts, max_attempts, to_address,
                          message_id, content, created_at, finished_at)
SELECT 'welcome', 'sent', 0, t, 1, 5, 'user' || g || '@example.com',
       '<' || lpad(to_hex((extract(epoch FROM t) * 1000000)::bigint), 13, '0')
           || substr(md5(g::text), 1, 19) || '@example.com>',
       $2::jsonb, t, t
FROM generate_series(1, $1::bigint) AS g
CROSS JOIN LATERAL (SELECT now() - interval '12 days' + g * interval '100 ms') AS x(t)

-- name: bench_history_attempts
-- The sent attempt of every finished email.
INSERT INTO mailq.attempts (email_id, attempt, started_at, finished_at, outcome, smtp_code,
                            smtp_reply)
SELECT id, 1, finished_at, finished_at, 'sent', 250, '2.0.0 Ok'
FROM mailq.emails WHERE status = 'sent'

-- name: bench_history_analyze
-- Fresh statistics after the bulk insert (autovacuum would get there later).
ANALYZE

-- name: bench_history_checkpoint
-- The filled history written out before any drain is measured: without it the first drain
-- ran beside the write-back of the ~10 GB just filled (asynchronous commit), 0.82x-0.83x
-- where the next rounds were 0.98x-1.13x.
CHECKPOINT

-- name: bench_emails_finished_since
-- Emails with an id above $1 finished so far (a range of the primary key: cheap to poll
-- next to millions of older finished emails).
SELECT count(*) FROM mailq.emails WHERE id > $1 AND finished_at IS NOT NULL

-- name: bench_history_async_commit
-- The history is written once per run, not measured: its commit need not wait for the disk.
SET synchronous_commit = off

-- name: bench_dashboard_waiting
-- $1 waiting emails (welcome and search_engine, due from an hour ago to an hour ahead),
-- content $2: the backlog the dashboard's measure looks at next to the history.
INSERT INTO mailq.emails (kind, priority, run_at, to_address, message_id, content)
SELECT (ARRAY['welcome', 'search_engine'])[1 + g % 2], (g % 2) * 5,
       now() + ((g % 120) - 60) * interval '1 minute', 'waiting' || g || '@example.net',
       '<waiting.' || g || '@bench.mailq>', $2::jsonb
FROM generate_series(1, $1::integer) AS g

-- name: bench_dashboard_failed
-- 500 failed emails of the last week (content $1) with their failed attempt, replies from a
-- few codes and domains, and 100 unknown ones.
WITH failed AS (
    INSERT INTO mailq.emails (kind, status, attempts, to_address, message_id, content,
                              created_at, run_at, finished_at, last_error)
    SELECT 'welcome', 'failed', 1, 'gone' || g || '@' || (ARRAY['gmail.com', 'yahoo.com',
           'example.org', 'outlook.com'])[1 + g % 4], '<failed.' || g || '@bench.mailq>',
           $1::jsonb, t, t, t, '550 5.1.1 user unknown'
    FROM generate_series(1, 500) AS g
    CROSS JOIN LATERAL (SELECT now() - g * interval '20 minutes') AS x(t)
    RETURNING id, finished_at
),
attempted AS (
    INSERT INTO mailq.attempts (email_id, attempt, started_at, finished_at, outcome, smtp_code,
                                smtp_reply)
    SELECT id, 1, finished_at, finished_at, 'failed', (ARRAY[550, 552, 554])[1 + id % 3],
           '5.1.1 user unknown'
    FROM failed
)
INSERT INTO mailq.emails (kind, status, attempts, to_address, message_id, content,
                          data_started_at)
SELECT 'welcome', 'unknown', 1, 'doubt' || g || '@example.net', '<unknown.' || g || '@bench>',
       $1::jsonb, now()
FROM generate_series(1, 100) AS g

-- name: bench_dashboard_campaign
-- A campaign of 10,000 recipients, 6,000 of them sent; returns its id.
WITH campaign AS (
    INSERT INTO mailq.campaigns (name, kind, send_at, priority, max_attempts, content)
    VALUES ('bench launch', 'search_engine', now() - interval '1 hour', 5, 8,
            '{"from": "news@bench.mailq", "subject": "Hello", "text": "Hi"}')
    RETURNING id
),
recipients AS (
    INSERT INTO mailq.emails (kind, status, priority, attempts, to_address, message_id,
                              content, campaign_id, finished_at)
    SELECT 'search_engine', CASE WHEN g <= 6000 THEN 'sent' ELSE 'waiting' END, 5,
           CASE WHEN g <= 6000 THEN 1 ELSE 0 END, 'reader' || g || '@example.com',
           '<campaign.' || g || '@bench.mailq>', '{}', c.id,
           CASE WHEN g <= 6000 THEN now() END
    FROM campaign AS c CROSS JOIN generate_series(1, 10000) AS g
)
SELECT id FROM campaign

-- name: bench_dashboard_vacuum_attempts
-- What autovacuum does to the grown attempts table (its BRIN ranges summarised).
VACUUM ANALYZE mailq.attempts

-- name: bench_dashboard_vacuum_emails
-- And to the emails.
VACUUM ANALYZE mailq.emails

-- name: bench_vacuum_feed
-- Queue $2 welcome emails numbered from $1 with content $3, written by the server (the
-- held-back-vacuum measure keeps its backlog topped up without spending the bench's CPU on
-- validation): the columns an enqueue writes, due now.
INSERT INTO mailq.emails (kind, priority, max_attempts, to_address, message_id, content,
                          metadata)
SELECT 'welcome', 0, 5, 'user' || g || '@example.com', '<vacuum.' || g || '@bench.mailq>',
       $3::jsonb, jsonb_build_object('user_id', g)
FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS g

-- name: bench_vacuum_clock
-- The database's clock (phase boundaries are compared with finished_at and query_start).
SELECT clock_timestamp()

-- name: bench_vacuum_pin
-- The forgotten transaction: an xid of its own, held until it ends, pins the xmin horizon
-- of the database (vacuum can remove no row version deleted after it began).
SELECT txid_current()

-- name: bench_vacuum_sent_between
-- Emails sent with finish times in [$1, $2) (the database's clock).
SELECT count(*) FROM mailq.attempts
WHERE outcome = 'sent' AND finished_at >= $1::timestamptz AND finished_at < $2::timestamptz

-- name: bench_vacuum_sent_windows
-- Emails sent per window of $2 seconds from $1, to $3: the drain rate over time.
SELECT floor(extract(epoch FROM finished_at - $1::timestamptz) / $2::float8)::integer AS w,
       count(*) AS sent
FROM mailq.attempts
WHERE outcome = 'sent' AND finished_at >= $1::timestamptz AND finished_at < $3::timestamptz
GROUP BY 1 ORDER BY 1

-- name: bench_vacuum_index_reads
-- Index entries read from the claim index so far (the cumulative statistics; flushed by
-- each backend within a second), and the size of the emails table with its indexes.
SELECT coalesce((SELECT idx_tup_read FROM pg_stat_user_indexes
                 WHERE schemaname = 'mailq' AND indexrelname = 'emails_due_idx'), 0)::bigint
           AS due_index_reads,
       pg_total_relation_size('mailq.emails')::bigint AS emails_bytes

-- name: bench_vacuum_claims_seen
-- The claim statements that have just ended on this database's connections: a connection
-- idle after a claim shows it as its last query, with its start and the moment it ended.
-- (query is cut at track_activity_query_size: compared by its first 20 characters, which
-- no other statement of the workers starts with; $1 is the claim's.)
SELECT pid, query_start,
       extract(epoch FROM state_change - query_start)::float8 * 1000.0 AS ms
FROM pg_stat_activity
WHERE datname = current_database() AND state = 'idle' AND pid <> pg_backend_pid()
  AND left(query, 20) = left($1::text, 20)
