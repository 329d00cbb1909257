-- name: email_insert
-- Insert emails given as parallel arrays (one element per email); ids in input order. $11
-- holds the display names of `to` (null where none was given).
INSERT INTO mailq.emails
    (kind, priority, run_at, send_at, max_attempts, to_address, message_id, content, metadata,
     to_name, expires_at)
SELECT r.kind, r.priority, coalesce(r.send_at, coalesce($10::timestamptz, now())), r.send_at,
       r.max_attempts, r.to_address, r.message_id, r.content::jsonb, r.metadata::jsonb,
       r.to_name, r.expires_at
FROM unnest($1::text[], $2::smallint[], $3::timestamptz[], $4::integer[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::integer[], $11::text[], $12::timestamptz[])
     AS r(kind, priority, send_at, max_attempts, to_address, message_id, content, metadata, ord,
          to_name, expires_at)
ORDER BY r.ord
RETURNING id;

-- name: email_reserve_ids
-- Take $1 ids from the emails sequence, so a COPY can write rows whose ids the caller knows.
-- The sequence is looked up once (a sub-select), not once per id.
SELECT nextval((SELECT pg_get_serial_sequence('mailq.emails', 'id'))::regclass)::bigint AS id,
       now() AS now
FROM generate_series(1, $1::integer);

-- name: email_reserve_id_array
-- email_reserve_ids as one row: the $1 ids as an array, and now().
SELECT array_agg(nextval((SELECT pg_get_serial_sequence('mailq.emails', 'id'))::regclass))
       AS ids,
       now() AS now
FROM generate_series(1, $1::integer);

-- name: email_claim_due
-- Claim up to $2[i] due emails of kind $1[i], $5 in all, for worker $3 sending through
-- backend $6: lowest priority number, then earliest due, then lowest id first. Each
-- (kind, priority) scan starts after the key ($7[j], $8[j]), j = (i - 1) * 10 + priority + 1
-- (null or missing: from the start), which the worker remembers from its earlier claims
-- (mailq.worker.claim_starts): the claim index keeps the entry of every claimed email until
-- vacuum removes it, and while a long transaction holds vacuum back, a scan from the start
-- would walk all of them, one heap visit each.
WITH wanted AS (
    -- A kind an operator paused (mailq.paused_kinds) is not claimed at all, nor anything
    -- while the worker's backend has its circuit breaker open (mailq.backend_breakers).
    SELECT w.kind, w.n, w.i FROM unnest($1::text[], $2::integer[]) WITH ORDINALITY AS w(kind, n, i)
    WHERE w.n > 0
      AND NOT EXISTS (SELECT 1 FROM mailq.paused_kinds AS p WHERE p.kind = w.kind)
      AND NOT EXISTS (SELECT 1 FROM mailq.backend_breakers AS b
                      WHERE b.backend = $6::text AND b.state = 'open')
),
picked AS MATERIALIZED (
    -- MATERIALIZED is the optimisation fence: the locking subquery runs once, before the
    -- UPDATE, so the UPDATE changes exactly the rows this statement locked.
    -- Priorities are walked one level at a time (0..9), each a bounded range scan of
    -- emails_due_idx from its start key that stops at the first row not yet due. Ordering
    -- by (priority, run_at) in one scan would instead walk every scheduled-for-later row of
    -- a priority level before reaching the next one. The outer LIMIT stops pulling (and
    -- locking) once n rows are found, so lower levels are not even visited.
    SELECT p.id
    FROM wanted AS w
    CROSS JOIN LATERAL (
        SELECT d.id
        FROM generate_series(0, 9) AS lvl(priority)
        CROSS JOIN LATERAL (
            SELECT e.id FROM mailq.emails AS e
            WHERE e.status = 'waiting' AND e.kind = w.kind AND e.priority = lvl.priority
              AND e.run_at <= coalesce($4::timestamptz, now())
              -- The start key: a row comparison, so it is where the index scan begins.
              AND (e.run_at, e.id)
                  > (coalesce(($7::timestamptz[])[(w.i - 1) * 10 + lvl.priority + 1],
                              '-infinity'::timestamptz),
                     coalesce(($8::bigint[])[(w.i - 1) * 10 + lvl.priority + 1], 0))
            ORDER BY e.run_at, e.id
            LIMIT w.n
            -- SKIP LOCKED: rows another worker is claiming right now are not waited for.
            FOR UPDATE SKIP LOCKED
        ) AS d
        LIMIT w.n
    ) AS p
    -- Kinds come in the order given (welcome first); the total caps the whole claim.
    LIMIT $5::integer
)
UPDATE mailq.emails AS e
SET status = 'sending',
    attempts = e.attempts + 1,
    worker_id = $3::uuid,
    claimed_at = coalesce($4::timestamptz, now())
FROM picked
WHERE e.id = picked.id
RETURNING e.id, e.kind, e.priority, e.attempts, e.max_attempts, e.to_address, e.to_name,
          e.message_id,
          -- A campaign's emails store only the recipient's context; the shared content is
          -- stored once on the campaign and merged here (the recipient's keys win), with the
          -- campaign's name (the phrase of List-Id).
          CASE WHEN e.campaign_id IS NULL THEN e.content::text
               ELSE ((SELECT c.content || jsonb_build_object('campaign_name', c.name)
                      FROM mailq.campaigns AS c WHERE c.id = e.campaign_id)
                     || e.content)::text
          END AS content,
          e.claimed_at, e.campaign_id,
          -- Suppressed since it was queued: the worker cancels it instead of sending.
          (SELECT s.reason FROM mailq.suppressions AS s
           WHERE s.address = lower(e.to_address)
             AND (s.expires_at IS NULL OR s.expires_at > now())) AS suppressed,
          -- Its deadlines (mailq.deadlines) count from here.
          e.expires_at, coalesce(e.retried_at, e.send_at, e.created_at) AS first_due_at,
          e.deferrals,
          -- The worker's next start key of this kind and priority.
          e.run_at;

-- name: email_next_due
-- Seconds from now (the database's clock) until the earliest waiting email of kinds $1 is
-- due; negative when one is overdue, null when none wait. Paused kinds do not count (their
-- resume sends a NOTIFY that wakes the workers). Each (kind, priority) is looked at after
-- the start key ($2[j], $3[j]) as in email_claim_due.
SELECT extract(epoch FROM min(n.run_at) - now())::float8 AS due_in
FROM unnest($1::text[]) WITH ORDINALITY AS k(kind, i)
CROSS JOIN generate_series(0, 9) AS lvl(priority)
CROSS JOIN LATERAL (
    SELECT e.run_at FROM mailq.emails AS e
    WHERE e.status = 'waiting' AND e.kind = k.kind AND e.priority = lvl.priority
      AND (e.run_at, e.id)
          > (coalesce(($2::timestamptz[])[(k.i - 1) * 10 + lvl.priority + 1],
                      '-infinity'::timestamptz),
             coalesce(($3::bigint[])[(k.i - 1) * 10 + lvl.priority + 1], 0))
    ORDER BY e.run_at, e.id
    LIMIT 1
) AS n
WHERE NOT EXISTS (SELECT 1 FROM mailq.paused_kinds AS p WHERE p.kind = k.kind);

-- name: email_finish
-- Record a batch of attempt outcomes of worker $9 in one statement: 'sent', 'retry' (due
-- again after retry_in seconds), 'deferred' (the backend failed: waiting again, due where it
-- was unless retry_in says otherwise, not counted toward max_attempts), 'failed', and three
-- that were not attempted, so no attempt is counted or recorded: 'cancelled' (the address is
-- suppressed), 'expired' (ends failed), 'released' (handed back, due where it was). A result
-- is applied only while the email is still in the attempt that produced it (same worker,
-- same attempt number): a worker that lost its lease cannot overwrite a newer attempt.
-- Returns the ids that were applied (those that were not may have been by an earlier try of
-- this batch whose reply was lost: email_outcomes_recorded).
-- $11: the provider's message id of each attempt (ESP backends; null for SMTP).
WITH result AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::timestamptz[],
                         $5::integer[], $6::text[], $7::text[], $8::float8[], $11::text[])
        AS r(id, attempt, outcome, started_at, smtp_code, smtp_reply, error, retry_in,
             provider_message_id)
),
campaign AS MATERIALIZED (
    -- A retry of a campaign email follows its campaign: paused since the claim, it is held
    -- (due in the far future); cancelled, it is cancelled. MATERIALIZED: inlined, the
    -- planner joined it per result row, scanning every result again each time (100 x 100
    -- rows for a batch of 100, a third of the statement's time). Each retried result looks
    -- up its own email and campaign: as a join, a plan cached while mailq.campaigns looked
    -- empty began from the campaigns and read all of their emails on every outcome.
    SELECT r.id,
           (SELECT c.status FROM mailq.campaigns AS c
            WHERE c.id = (SELECT e.campaign_id FROM mailq.emails AS e WHERE e.id = r.id))
               AS campaign_status
    FROM result AS r
    WHERE r.outcome IN ('retry', 'deferred')
),
applied AS (
    UPDATE mailq.emails AS e
    SET status = CASE WHEN r.outcome = 'sent' THEN 'sent'
                      WHEN r.outcome IN ('retry', 'deferred')
                      THEN CASE WHEN c.campaign_status = 'cancelled'
                                THEN 'cancelled' ELSE 'waiting' END
                      WHEN r.outcome = 'released' THEN 'waiting'
                      WHEN r.outcome = 'cancelled' THEN 'cancelled'
                      ELSE 'failed' END,
        attempts = CASE WHEN r.outcome IN ('cancelled', 'expired', 'released')
                        THEN e.attempts - 1 ELSE e.attempts END,
        deferrals = e.deferrals + CASE WHEN r.outcome = 'deferred' THEN 1 ELSE 0 END,
        worker_id = NULL,
        claimed_at = NULL,
        run_at = CASE WHEN r.outcome NOT IN ('retry', 'deferred') THEN e.run_at
                      WHEN c.campaign_status = 'paused'
                      THEN '9999-12-31 00:00:00+00'::timestamptz
                      WHEN r.outcome = 'deferred' AND r.retry_in <= 0 THEN e.run_at
                      ELSE coalesce($10::timestamptz, now()) + make_interval(secs => r.retry_in)
                 END,
        finished_at = CASE WHEN r.outcome = 'released' THEN NULL
                           WHEN r.outcome IN ('retry', 'deferred')
                                AND c.campaign_status IS DISTINCT FROM 'cancelled' THEN NULL
                           ELSE coalesce($10::timestamptz, now()) END,
        last_error = CASE WHEN r.outcome = 'released' THEN e.last_error ELSE r.error END
    FROM result AS r LEFT JOIN campaign AS c ON c.id = r.id
    -- Rows are found by id (primary key) and the fence is checked on each row. The fence is
    -- written with IS NOT DISTINCT FROM (the same as = here: none of these is null on a
    -- sending row) because no index serves it: with `worker_id = $9` the planner looks the
    -- rows up in emails_sending_idx by worker instead, and walks every dead entry this
    -- worker's earlier claims left there since the last vacuum (one per email, 3x slower
    -- after 30,000 emails and growing).
    WHERE e.id = r.id
      AND (e.status, e.attempts, e.worker_id)
          IS NOT DISTINCT FROM ('sending', r.attempt, $9::uuid)
    RETURNING e.id
),
recorded AS (
    INSERT INTO mailq.attempts
        (email_id, attempt, worker_id, started_at, finished_at, outcome, smtp_code, smtp_reply,
         error, provider_message_id)
    SELECT r.id, r.attempt, $9::uuid, r.started_at, coalesce($10::timestamptz, now()),
           r.outcome, r.smtp_code, r.smtp_reply, r.error, r.provider_message_id
    FROM result AS r JOIN applied AS a ON a.id = r.id
    WHERE r.outcome NOT IN ('cancelled', 'expired', 'released')
)
SELECT id FROM applied;

-- name: email_outcomes_recorded
-- Of the outcomes ($1 ids, $2 attempt numbers, $3 outcomes) that email_finish did not apply,
-- those worker $4 had recorded already: an earlier try of the same batch committed but its
-- reply was lost, so the outcome is committed, not lost. A statement of its own, run only
-- when some outcome was not applied: inside email_finish, a plan a connection cached while
-- mailq.attempts was empty scanned all of this worker's attempts on every outcome.
SELECT a.email_id
FROM unnest($1::bigint[], $2::integer[], $3::text[]) AS r(id, attempt, outcome)
JOIN mailq.attempts AS a ON a.email_id = r.id AND a.attempt = r.attempt
WHERE a.worker_id = $4::uuid AND a.outcome = r.outcome;

-- name: email_release
-- Hand back emails that worker $2 claimed but never started: waiting again at once, and
-- the claim does not count as an attempt.
UPDATE mailq.emails AS e
SET status = 'waiting', attempts = e.attempts - 1, worker_id = NULL, claimed_at = NULL
FROM unnest($1::bigint[], $3::integer[]) AS r(id, attempt)
WHERE e.id = r.id AND e.status = 'sending' AND e.worker_id = $2::uuid
  AND e.attempts = r.attempt
RETURNING e.id;

-- name: email_release_orphans
-- After a lost connection, hand back emails that worker $1 claimed without learning of it (the
-- claim committed but its reply was lost): every email it holds but for the ids in $2.
UPDATE mailq.emails AS e
SET status = 'waiting', attempts = e.attempts - 1, worker_id = NULL, claimed_at = NULL
WHERE e.status = 'sending' AND e.worker_id = $1::uuid AND NOT (e.id = ANY($2::bigint[]))
RETURNING e.id;

-- name: email_rescue_expired
-- Take back up to $1 emails claimed by workers whose lease expired more than $3 seconds
-- before $2 (default now; killed, host gone) or whose lease row is gone: every worker but
-- the live ones. Each gets an attempt
-- recorded as 'lost'; it waits again where it was in its queue (its run_at and priority are
-- kept: a `welcome` caught by a crash does not go behind the welcome backlog), or fails when
-- that was its last attempt, or, when SMTP DATA of this attempt had begun (recorded only for
-- kinds whose lost-send policy is `hold`), becomes 'unknown'. The grace covers a worker whose
-- own heartbeat was delayed: the caller (the rescue duty) also takes nothing back unless it
-- has itself been connected for longer than a lease (after the database was unreachable,
-- the workers that were cut off with it register again first).
WITH live AS MATERIALIZED (
    SELECT id FROM mailq.worker_leases
    WHERE lease_expires_at
          >= coalesce($2::timestamptz, now()) - make_interval(secs => coalesce($3::float8, 0))
),
gaps AS (
    -- The ranges of worker ids around the live workers' (uuid4 ids: never the nil or the
    -- all-ones uuid that close the ranges). emails_sending_idx is read in these ranges only,
    -- so the live workers' entries are never walked: while a long transaction holds vacuum
    -- back, they include one dead entry for every email claimed since it began.
    SELECT lag(id) OVER (ORDER BY id) AS above, id AS below FROM live
    UNION ALL
    SELECT (SELECT id FROM live ORDER BY id DESC LIMIT 1), NULL
),
lost AS (
    SELECT e.id, e.attempts, e.worker_id, e.claimed_at,
           coalesce(e.data_started_at >= e.claimed_at, false) AS held
    FROM gaps AS g
    CROSS JOIN LATERAL (
        SELECT e.id, e.attempts, e.worker_id, e.claimed_at, e.data_started_at
        FROM mailq.emails AS e
        WHERE e.status = 'sending'
          AND e.worker_id > coalesce(g.above, '00000000-0000-0000-0000-000000000000'::uuid)
          AND e.worker_id < coalesce(g.below, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
        LIMIT $1::integer
        FOR UPDATE OF e SKIP LOCKED
    ) AS e
    LIMIT $1::integer
),
rescued AS (
    UPDATE mailq.emails AS e
    SET status = CASE WHEN lost.held THEN 'unknown'
                      WHEN e.attempts - e.deferrals >= e.max_attempts THEN 'failed'
                      ELSE 'waiting' END,
        finished_at = CASE WHEN NOT lost.held AND e.attempts - e.deferrals >= e.max_attempts
                           THEN coalesce($2::timestamptz, now()) END,
        worker_id = NULL,
        claimed_at = NULL,
        last_error = CASE WHEN lost.held
            THEN 'unknown: the worker died after SMTP DATA had begun; retry or cancel it'
            ELSE 'lease expired: the worker stopped heartbeating during the attempt' END
    FROM lost
    WHERE e.id = lost.id
    RETURNING e.id
),
recorded AS (
    INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, finished_at, outcome,
                                error)
    SELECT l.id, l.attempts, l.worker_id, l.claimed_at, coalesce($2::timestamptz, now()), 'lost',
           'lease expired: the worker stopped heartbeating during the attempt'
    FROM lost AS l JOIN rescued AS r ON r.id = l.id
)
SELECT id FROM rescued;

-- name: email_still_held
-- Of the emails $2 (attempt numbers $3) that worker $1 claimed, those its attempt still
-- holds: after its lease lapsed, the others were taken back and must not be sent by it.
SELECT e.id, e.attempts AS attempt
FROM unnest($2::bigint[], $3::integer[]) AS r(id, attempt)
JOIN mailq.emails AS e ON e.id = r.id
WHERE e.status = 'sending' AND e.worker_id = $1::uuid AND e.attempts = r.attempt;

-- name: email_mark_data_started
-- Before SMTP DATA of a `hold` kind's email: record durably that DATA began in this attempt.
UPDATE mailq.emails
SET data_started_at = clock_timestamp()
WHERE id = $1::bigint AND status = 'sending' AND worker_id = $2::uuid AND attempts = $3::integer
RETURNING id;

-- name: email_cancel_by_address
-- Cancel the emails to addresses $1 (lower-case) that have not gone out: waiting or unknown.
-- Those of no campaign are found through emails_open_address_idx; a campaign's through
-- emails_campaign_recipient_idx, one look-up per campaign and address (the open-address
-- index leaves campaign emails out, so that a campaign's fan-out does not write it).
UPDATE mailq.emails AS e
SET status = 'cancelled', finished_at = coalesce($3::timestamptz, now()), last_error = $2::text
WHERE e.id IN (
        SELECT o.id FROM mailq.emails AS o
        WHERE lower(o.to_address) = ANY($1::text[]) AND o.status IN ('waiting', 'unknown')
          AND o.campaign_id IS NULL
        UNION ALL
        SELECT o.id
        FROM mailq.campaigns AS c
        CROSS JOIN unnest($1::text[]) AS a(address)
        JOIN mailq.emails AS o
          ON o.campaign_id = c.id AND o.campaign_id IS NOT NULL
             AND lower(o.to_address) = a.address
        WHERE o.status IN ('waiting', 'unknown'))
  AND e.status IN ('waiting', 'unknown')
RETURNING e.id;

-- name: email_cancel
-- Cancel waiting (or unknown) emails by id; returns those that were cancelled.
UPDATE mailq.emails
SET status = 'cancelled', finished_at = coalesce($3::timestamptz, now()), last_error = $2::text
WHERE id = ANY($1::bigint[]) AND status IN ('waiting', 'unknown')
RETURNING id;

-- name: email_retry
-- Make failed, cancelled or unknown emails wait again, due now, with attempts to spare.
-- Its deadlines count again from now: retry_for, expire_after, and an expires_at keeps its
-- span from the time it counted from (an expired email retried gets a new deadline).
UPDATE mailq.emails
SET status = 'waiting', finished_at = NULL, run_at = coalesce($2::timestamptz, now()),
    max_attempts = CASE WHEN max_attempts IS NOT NULL
                        THEN greatest(max_attempts, attempts - deferrals + 1) END,
    last_error = NULL,
    retried_at = coalesce($2::timestamptz, now()),
    expires_at = coalesce($2::timestamptz, now())
                 + (expires_at - coalesce(retried_at, send_at, created_at))
WHERE id = ANY($1::bigint[]) AND status IN ('failed', 'cancelled', 'unknown')
RETURNING id;

-- name: email_get
-- One email with its public state.
SELECT id, kind, mailq.email_state(status, run_at, attempts) AS state, priority, run_at,
       send_at, attempts, max_attempts, to_address, to_name, message_id, content::text AS content,
       metadata::text AS metadata, last_error, created_at, finished_at, worker_id, expires_at
FROM mailq.emails
WHERE id = $1::bigint;

-- name: email_attempts
-- Every attempt of one email, oldest first.
SELECT attempt, worker_id, started_at, finished_at, outcome, smtp_code, smtp_reply, error,
       provider_message_id
FROM mailq.attempts
WHERE email_id = $1::bigint
ORDER BY attempt;

-- name: email_delete_finished
-- Delete up to $2 finished emails (and their attempts) that finished before $1.
WITH doomed AS (
    SELECT id FROM mailq.emails
    WHERE finished_at IS NOT NULL AND finished_at < $1::timestamptz
    ORDER BY finished_at
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
attempts_gone AS (
    DELETE FROM mailq.attempts AS a USING doomed AS d WHERE a.email_id = d.id
)
DELETE FROM mailq.emails AS e USING doomed AS d WHERE e.id = d.id
RETURNING e.id;

-- name: email_count_by_state
-- Counts by kind and public state (the mailq.queue_stats view).
SELECT kind, state, count, extract(epoch FROM oldest_due_age)::float8 AS oldest_due_age_s
FROM mailq.queue_stats
ORDER BY kind, state;

-- name: email_copy
-- The COPY that bulk enqueue writes rows with (ids reserved by email_reserve_ids).
COPY mailq.emails (id, kind, priority, run_at, send_at, max_attempts, to_address, message_id,
                   content, metadata, to_name, expires_at) FROM STDIN

-- name: email_states
-- The public state of each of the emails $1 that exists.
SELECT id, mailq.email_state(status, run_at, attempts) AS state
FROM mailq.emails
WHERE id = ANY($1::bigint[]);

-- name: email_retry_failed
-- Make up to $3 failed emails wait again, due now: of kind $1 (null: any kind) that failed
-- at or after $2 (null: ever) and before $4 (so emails failing again meanwhile are not
-- retried twice by one command). Returns the ids.
UPDATE mailq.emails AS e
SET status = 'waiting', finished_at = NULL, run_at = coalesce($5::timestamptz, now()),
    max_attempts = CASE WHEN e.max_attempts IS NOT NULL
                        THEN greatest(e.max_attempts, e.attempts - e.deferrals + 1) END,
    last_error = NULL,
    -- Deadlines count again from now, as in email_retry.
    retried_at = coalesce($5::timestamptz, now()),
    expires_at = coalesce($5::timestamptz, now())
                 + (e.expires_at - coalesce(e.retried_at, e.send_at, e.created_at))
WHERE e.id IN (
    SELECT f.id FROM mailq.emails AS f
    WHERE f.status = 'failed'
      AND ($1::text IS NULL OR f.kind = $1::text)
      AND f.finished_at >= coalesce($2::timestamptz, '-infinity')
      AND f.finished_at < $4::timestamptz
    ORDER BY f.finished_at
    LIMIT $3::integer
    FOR UPDATE SKIP LOCKED
)
RETURNING e.id;

-- name: email_list_pending
-- Up to $2 waiting emails (of kind $1, or all), the longest overdue first.
SELECT id, kind, state, to_address, priority, due_at,
       extract(epoch FROM overdue_by)::float8 AS overdue_s, attempts, max_attempts, last_error
FROM mailq.pending
WHERE $1::text IS NULL OR kind = $1::text
ORDER BY due_at, id
LIMIT $2::integer;

-- name: email_list_failed
-- Up to $3 failed emails (of kind $1, or all; failed at or after $2, or ever), newest first.
SELECT id, kind, to_address, attempts, last_error, last_smtp_code, last_smtp_reply, failed_at
FROM mailq.failed
WHERE ($1::text IS NULL OR kind = $1::text)
  AND failed_at >= coalesce($2::timestamptz, '-infinity')
ORDER BY failed_at DESC, id DESC
LIMIT $3::integer;

-- name: email_count_finished_before
-- How many finished emails finished before $1 (what a prune would delete).
SELECT count(*) AS n FROM mailq.emails WHERE finished_at IS NOT NULL AND finished_at < $1::timestamptz;

-- name: email_find_by_metadata
-- Up to $2 emails whose metadata contains any of the objects $1 (emails_metadata_idx), or
-- every email when $1 is null, newest first, with ids below $3 (the caller's cursor).
SELECT id, kind, mailq.email_state(status, run_at, attempts) AS state, to_address, to_name,
       message_id, metadata::text AS metadata, attempts, max_attempts, last_error, run_at,
       send_at, created_at, finished_at, expires_at
FROM mailq.emails
WHERE ($1::jsonb[] IS NULL OR (metadata @> ANY($1::jsonb[]) AND metadata <> '{}'::jsonb))
  AND id < coalesce($3::bigint, 9223372036854775807)
ORDER BY id DESC
LIMIT $2::integer;

-- name: email_sent_recently
-- Emails sent in the last $1 seconds, per kind (a range of emails_finished_idx).
SELECT kind, count(*)::bigint AS sent
FROM mailq.emails
WHERE status = 'sent'
  AND finished_at > coalesce($2::timestamptz, now()) - make_interval(secs => $1::float8)
GROUP BY kind;

-- name: email_insert_recipients
-- Add one chunk of campaign $1's recipients (parallel arrays $2 bare addresses, $3
-- Message-IDs, $4 contexts as JSON, $10 display names or nulls) as emails of kind $5,
-- priority $6, max attempts $7, due at $8 (or far future, 9999-12-31, while the campaign is
-- paused), send_at $9, expiring at $11. A recipient already in the campaign is skipped (the
-- unique index); a suppressed one is stored cancelled with the reason. Returns how many were
-- inserted and, of those, how many were suppressed.
WITH inserted AS (
    INSERT INTO mailq.emails
        (kind, priority, run_at, send_at, max_attempts, to_address, message_id, content,
         campaign_id, status, finished_at, last_error, to_name, expires_at)
    SELECT $5::text, $6::smallint, $8::timestamptz, $9::timestamptz, $7::integer, r.address,
           r.message_id, r.content::jsonb, $1::bigint,
           CASE WHEN s.address IS NULL THEN 'waiting' ELSE 'cancelled' END,
           CASE WHEN s.address IS NULL THEN NULL ELSE now() END,
           CASE WHEN s.address IS NULL THEN NULL ELSE 'suppressed: ' || s.reason END,
           r.name, $11::timestamptz
    FROM unnest($2::text[], $3::text[], $4::text[], $10::text[])
         AS r(address, message_id, content, name)
    LEFT JOIN mailq.suppressions AS s
           ON s.address = lower(r.address) AND (s.expires_at IS NULL OR s.expires_at > now())
    ON CONFLICT (campaign_id, lower(to_address)) WHERE campaign_id IS NOT NULL DO NOTHING
    RETURNING status
)
SELECT count(*)::bigint AS added,
       count(*) FILTER (WHERE status = 'cancelled')::bigint AS suppressed
FROM inserted;

-- name: email_recipients_setup
-- Before campaign $1 takes recipients by COPY: whether lower() folds ASCII as Python does
-- (the de-duplication keys are made in Python), and whether the campaign has any email yet.
SELECT lower('ABCDEFGHIJKLMNOPQRSTUVWXYZ') = 'abcdefghijklmnopqrstuvwxyz' AS ascii_lower,
       EXISTS (SELECT 1 FROM mailq.emails WHERE campaign_id = $1::bigint) AS has_emails;

-- name: email_recipients_held
-- Of one chunk of campaign $1's recipients, by lower-case address: those of $2 on the
-- suppression list (with the reason; `present` false), and those of $3 already in the
-- campaign (`present` true, through emails_campaign_recipient_idx). now() is the
-- transaction's, what a suppressed email's finished_at is.
SELECT r.key, s.reason, false AS present, now() AS now
FROM unnest($2::text[]) AS r(key)
JOIN mailq.suppressions AS s
  ON s.address = r.key AND (s.expires_at IS NULL OR s.expires_at > now())
UNION ALL
SELECT r.key, NULL, true, now()
FROM unnest($3::text[]) AS r(key)
WHERE EXISTS (SELECT 1 FROM mailq.emails AS e
              WHERE e.campaign_id = $1::bigint AND lower(e.to_address) = r.key);

-- name: email_copy_recipients
-- The COPY that writes a chunk of a campaign's recipients, already de-duplicated and checked
-- against the suppression list (email_recipients_held).
COPY mailq.emails (kind, priority, run_at, send_at, max_attempts, to_address, message_id,
                   content, campaign_id, status, finished_at, last_error, to_name,
                   expires_at) FROM STDIN

-- name: email_pause_campaign
-- Hold campaign $1's waiting emails: due in the far future (9999-12-31) until resumed.
-- (Not 'infinity': Postgres 15 cannot subtract it, and the wake-up trigger does.)
UPDATE mailq.emails
SET run_at = '9999-12-31 00:00:00+00'::timestamptz
WHERE campaign_id = $1::bigint AND status = 'waiting' AND run_at <> '9999-12-31 00:00:00+00'::timestamptz;

-- name: email_resume_campaign
-- Release campaign $1's held emails: due at its send_at $2, or now if that has passed.
UPDATE mailq.emails
SET run_at = greatest($2::timestamptz, coalesce($3::timestamptz, now()))
WHERE campaign_id = $1::bigint AND status = 'waiting' AND run_at = '9999-12-31 00:00:00+00'::timestamptz;

-- name: email_cancel_campaign
-- Cancel what campaign $1 has not sent: its waiting and unknown emails.
UPDATE mailq.emails
SET status = 'cancelled', finished_at = coalesce($3::timestamptz, now()), last_error = $2::text
WHERE campaign_id = $1::bigint AND status IN ('waiting', 'unknown');

-- name: email_count_due
-- How many emails of each kind $1 are due now, counting at most $2[i] per kind: a worker
-- under a rate limit takes tokens only for emails that are there to claim. Each
-- (kind, priority) is counted after the start key ($3[j], $4[j]) as in email_claim_due.
SELECT w.kind, (
    SELECT count(*) FROM (
        SELECT d.id
        FROM generate_series(0, 9) AS lvl(priority)
        CROSS JOIN LATERAL (
            SELECT e.id FROM mailq.emails AS e
            WHERE e.status = 'waiting' AND e.kind = w.kind AND e.priority = lvl.priority
              AND e.run_at <= now()
              AND (e.run_at, e.id)
                  > (coalesce(($3::timestamptz[])[(w.i - 1) * 10 + lvl.priority + 1],
                              '-infinity'::timestamptz),
                     coalesce(($4::bigint[])[(w.i - 1) * 10 + lvl.priority + 1], 0))
            ORDER BY e.run_at, e.id
            LIMIT w.n
        ) AS d
        LIMIT w.n
    ) AS c
)::integer AS due
FROM unnest($1::text[], $2::integer[]) WITH ORDINALITY AS w(kind, n, i);

-- name: email_mark_sent
-- An operator's verdict on unknown emails $1 (their worker died during SMTP DATA): they did
-- go out. Returns the ids that were marked.
UPDATE mailq.emails
SET status = 'sent', finished_at = coalesce($2::timestamptz, now()), last_error = NULL
WHERE id = ANY($1::bigint[]) AND status = 'unknown'
RETURNING id;
